// The port mapper: like epmd, a small registry on a well-known TCP port of each host that maps
// node names to the port they listen on. A node's entry lives exactly as long as the TCP
// connection that registered it. Text protocol, one line per request (docs/PROTOCOL.md).
// Public for tools that look nodes up (`nodus names` is PortmapperClient::names), run a port
// mapper in a program of their own (run_portmapper), or start one (ensure_portmapper).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::dist {

/// Port of the port mapper: $NODUS_PORTMAPPER_PORT, else 4370.
std::uint16_t portmapper_port();

struct PortmapperOptions {
  std::uint16_t port = 0;             ///< 0: portmapper_port()
  std::vector<std::string> bind{"127.0.0.1"};  ///< IPv4 addresses to listen on
  std::chrono::seconds idle_exit{0};  ///< exit after this long with no names (0: never)
  /// A connection must send a whole request within this (a registration then stays open).
  std::chrono::milliseconds request_timeout{5000};
  /// Connections that have not registered: at most this many, and this many per address.
  std::size_t max_pending = 256;
  std::size_t max_pending_per_address = 64;
  std::size_t max_names = 4096;
  /// REGISTER NAME PORT needs a socket listening on PORT owned by the registering user, and
  /// a registration is dropped once nothing of its user listens there (checked this often).
  bool check_owner = true;
  std::chrono::milliseconds check_interval{2000};
};

/// Runs the port mapper in this thread until SIGTERM/SIGINT (or idle exit). Returns the exit
/// status: 0, or 1 if the port could not be bound (e.g. another port mapper has it).
int run_portmapper(const PortmapperOptions& opts);

struct NodeAddress {
  std::uint16_t port = 0;
  std::uint32_t creation = 0;
  std::string curve_key;  ///< Z85 public key of a CURVE node; empty for a cookie node
};

/// Client side. Every call has a deadline; errors are returned, never thrown.
class PortmapperClient {
 public:
  PortmapperClient(std::string host, std::uint16_t port) : host_(std::move(host)), port_(port) {}
  ~PortmapperClient();
  PortmapperClient(const PortmapperClient&) = delete;

  /// Registers `name` -> `node_port`, keeping the connection open (the registration). Starts
  /// the port mapper daemon if none answers on this host. The creation the mapper assigns is
  /// returned; an error text otherwise ("name_taken", "unreachable: ...").
  /// `listen_addr`: the node's address; unless it is a loopback one, the port mapper listens
  /// there too, so that other hosts find the node.
  std::optional<std::uint32_t> register_node(const std::string& name, std::uint16_t node_port,
                                             const std::string& curve_key, std::string* error,
                                             const std::string& listen_addr = {});
  /// Drops the registration (closes the connection).
  void unregister();
  /// The registration's socket (the node polls it: if it closes, the mapper went away).
  int registration_fd() const { return reg_fd_; }

  std::optional<NodeAddress> lookup(const std::string& name, std::string* error) const;
  std::optional<std::vector<std::string>> names(std::string* error) const;

 private:
  std::string host_;
  std::uint16_t port_;
  int reg_fd_ = -1;
};

/// Starts the port mapper daemon (detached, in its own session) if none answers on
/// 127.0.0.1:`port`, and waits until it does; it listens on 127.0.0.1 and on `listen_addr`
/// (a running one is asked to listen there too). False with `error` set if it cannot.
bool ensure_portmapper(std::uint16_t port, std::string* error, const std::string& listen_addr = {});

}  // namespace nodus::dist

NODUS_API_END
