// The command-line flags every nodus program shares (nodus, chat, your own nodes), with CLI11:
//
//   CLI::App app{"my node"};
//   nodus::cli::NodeFlags flags;
//   nodus::cli::add_node_flags(app, flags);
//   CLI11_PARSE(app, argc, argv);
//   nodus::Node node(nodus::cli::node_options(flags));   // throws std::invalid_argument
//
// --sname NAME@HOST, --cookie C, --ticktime MS, --port P (listen port, default ephemeral),
// --peer NAME@HOST=tcp://ADDR:PORT (repeatable static peer list), --no-portmapper.
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
};

inline void add_node_flags(CLI::App& app, NodeFlags& f, bool sname_required = true) {
  auto* o = app.add_option("--sname", f.sname, "this node's name, name@host");
  if (sname_required) o->required();
  app.add_option("--cookie", f.cookie, "shared secret (default: $NODUS_COOKIE, else ~/.nodus.cookie)");
  app.add_option("--ticktime", f.ticktime_ms, "ms of silence before a peer is declared down")
      ->capture_default_str()
      ->check(CLI::Range(100L, 3600L * 1000L));
  app.add_option("--port", f.port, "TCP port to listen on (default: any free port)");
  app.add_option("--peer", f.peers,
                 "static peer NAME@HOST=tcp://ADDR:PORT, found without the port mapper (repeatable)");
  app.add_flag("--no-portmapper", f.no_portmapper,
               "do not register with or start the port mapper; find peers only through --peer");
}

/// The NodeOptions the flags describe; std::invalid_argument for a malformed --peer.
inline NodeOptions node_options(const NodeFlags& f) {
  NodeOptions o;
  o.name = f.sname;
  o.cookie = f.cookie;
  o.ticktime = std::chrono::milliseconds(f.ticktime_ms);
  o.listen_port = f.port;
  o.use_portmapper = !f.no_portmapper;
  for (const auto& p : f.peers) {
    const auto eq = p.find('=');
    const std::string name = p.substr(0, eq);
    const std::string ep = eq == std::string::npos ? "" : p.substr(eq + 1);
    if (eq == std::string::npos || name.find('@') == std::string::npos || ep.rfind("tcp://", 0) != 0 ||
        ep.rfind(':') <= 5) {
      throw std::invalid_argument("bad --peer '" + p + "': expected NAME@HOST=tcp://ADDR:PORT");
    }
    o.peers.emplace_back(name, ep);
  }
  return o;
}

}  // namespace nodus::cli
