// The command-line flags every nodus program shares (nodus, chat, your own nodes), with CLI11:
//
//   CLI::App app{"my node"};
//   nodus::cli::NodeFlags flags;
//   nodus::cli::add_node_flags(app, flags);
//   CLI11_PARSE(app, argc, argv);
//   nodus::Node node(nodus::cli::node_options(flags));   // throws std::invalid_argument
//
// --sname NAME@HOST, --cookie C, --ticktime MS, --port P (listen port, default ephemeral),
// --peer NAME@HOST=tcp://ADDR:PORT[,key=PUB] (repeatable static peer list), --no-portmapper,
// --curve-key FILE --curve-allow DIR_OR_FILE (CURVE mode, docs/security.md),
// --dist-buffer BYTES (the send budget per peer, docs/runtime.md), --name NAME@FQDN (instead of
// --sname), --handshake-timeout MS, --max-handshakes N, --max-handshakes-per-address N,
// --max-network-atoms N (what the network can make a node hold, docs/security.md), --gateway
// tcp://ADDR:PORT and its limits (docs/gateway.md).
// Header-only; needs CLI11 (Debian: libcli11-dev).
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/node.hpp"

namespace nodus::cli {

struct NodeFlags {
  std::string sname;
  std::string cookie;
  long ticktime_ms = 60000;
  std::uint16_t port = 0;
  std::vector<std::string> peers;
  bool no_portmapper = false;
  std::string curve_key;
  std::string curve_allow;
  std::size_t dist_buffer = NodeOptions{}.dist_buffer;
  long handshake_timeout_ms = NodeOptions{}.handshake_timeout.count();
  std::size_t max_handshakes = NodeOptions{}.max_handshakes;
  std::size_t max_handshakes_per_address = NodeOptions{}.max_handshakes_per_address;
  std::size_t max_network_atoms = NodeOptions{}.max_network_atoms;
  std::string gateway;  ///< --gateway tcp://ADDR:PORT
  std::string metrics;  ///< --metrics ADDR:PORT
  GatewayOptions gw;
};

inline void add_node_flags(CLI::App& app, NodeFlags& f, bool sname_required = true) {
  auto* names = app.add_option_group("Node name", "one of them");
  names->add_option("--sname", f.sname, "this node's name, name@host (host: a short host name or localhost)");
  names->add_option("--name", f.sname,
                    "this node's name with a fully qualified host or an address: name@host.example.com or "
                    "name@192.0.2.10 (as Erlang's -name)");
  if (sname_required) {
    names->require_option(1);
  } else {
    names->require_option(0, 1);
  }
  app.add_option("--cookie", f.cookie, "shared secret (default: $NODUS_COOKIE, else ~/.nodus.cookie)");
  app.add_option("--ticktime", f.ticktime_ms, "ms of silence before a peer is declared down")
      ->capture_default_str()
      ->check(CLI::Range(100L, 3600L * 1000L));
  app.add_option("--port", f.port, "TCP port to listen on (default: any free port)");
  app.add_option("--peer", f.peers,
                 "static peer NAME@HOST=tcp://ADDR:PORT[,key=FILE.pub|Z85], found without the port mapper "
                 "(repeatable; key: its CURVE public key, also accepted from it)");
  app.add_flag("--no-portmapper", f.no_portmapper,
               "do not register with or start the port mapper; find peers only through --peer");
  auto* key = app.add_option("--curve-key", f.curve_key,
                             "CURVE mode: this node's secret key file (nodus keygen); every connection is "
                             "encrypted and only --curve-allow keys are accepted");
  auto* allow = app.add_option("--curve-allow", f.curve_allow,
                               "CURVE mode: a .pub file or a directory of them: the nodes to accept");
  key->needs(allow);
  allow->needs(key);
  app.add_option("--dist-buffer", f.dist_buffer,
                 "bytes queued for one peer before processes sending to it are suspended (Erlang's "
                 "dist_buf_busy_limit)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(4096), std::size_t(1) << 34));
  app.add_option("--handshake-timeout", f.handshake_timeout_ms,
                 "ms an accepted connection has to complete its handshake, whatever it sends")
      ->capture_default_str()
      ->check(CLI::Range(100L, 600000L));
  app.add_option("--max-handshakes", f.max_handshakes, "accepted connections in their handshake at once, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 20));
  app.add_option("--max-handshakes-per-address", f.max_handshakes_per_address,
                 "accepted connections in their handshake from one IP address, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 20));
  app.add_option("--max-network-atoms", f.max_network_atoms,
                 "new atoms this node takes from the network in all; a peer sending more is disconnected")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(0), std::size_t(1) << 24));
  app.add_option("--metrics", f.metrics,
                 "serve the node's counters for Prometheus at http://ADDR:PORT/metrics (docs/observability.md); "
                 "port 0 picks a free one")
      ->type_name("ADDR:PORT");
  app.add_option("--gateway", f.gateway,
                 "also open a gateway for ZeroMQ clients (JSON requests, docs/gateway.md) on tcp://ADDR:PORT "
                 "(port 0: any; the log says which)");
  app.add_flag("--gateway-allow-remote", f.gw.allow_remote,
               "cookie mode: let the gateway bind off loopback (it warns; CURVE mode needs no such flag)");
  app.add_option("--gateway-max-clients", f.gw.max_clients, "gateway clients at once, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 16));
  app.add_option("--gateway-max-request", f.gw.max_request, "bytes of one gateway request, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(64), std::size_t(1) << 30));
  app.add_option("--gateway-max-queue", f.gw.max_queue, "pushed messages waiting for one gateway client, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1) << 24));
}

/// The NodeOptions the flags describe; std::invalid_argument for a malformed --peer.
inline NodeOptions node_options(const NodeFlags& f) {
  NodeOptions o;
  o.name = f.sname;
  o.cookie = f.cookie;
  o.ticktime = std::chrono::milliseconds(f.ticktime_ms);
  o.listen_port = f.port;
  o.use_portmapper = !f.no_portmapper;
  o.dist_buffer = f.dist_buffer;
  o.handshake_timeout = std::chrono::milliseconds(f.handshake_timeout_ms);
  o.max_handshakes = f.max_handshakes;
  o.max_handshakes_per_address = f.max_handshakes_per_address;
  o.max_network_atoms = f.max_network_atoms;
  if (!f.curve_key.empty()) o.curve = load_curve(f.curve_key, f.curve_allow);
  o.metrics = f.metrics;
  if (!f.gateway.empty()) {
    o.gateway = f.gw;
    o.gateway->bind = f.gateway;
  }
  for (const auto& p : f.peers) {
    const auto eq = p.find('=');
    const std::string name = p.substr(0, eq);
    std::string ep = eq == std::string::npos ? "" : p.substr(eq + 1);
    std::string key;
    if (const auto comma = ep.find(",key="); comma != std::string::npos) {
      key = ep.substr(comma + 5);
      ep.resize(comma);
    }
    if (eq == std::string::npos || name.find('@') == std::string::npos || ep.rfind("tcp://", 0) != 0 ||
        ep.rfind(':') <= 5) {
      throw std::invalid_argument("bad --peer '" + p + "': expected NAME@HOST=tcp://ADDR:PORT[,key=FILE.pub]");
    }
    if (!key.empty()) {
      if (!o.curve) throw std::invalid_argument("--peer '" + p + "' names a CURVE key, but CURVE mode is off (--curve-key)");
      o.curve->allowed.emplace_back(read_public_key(key), name);
    }
    o.peers.emplace_back(name, ep);
  }
  return o;
}

}  // namespace nodus::cli
