// The port mapper: like epmd, a small registry on a well-known TCP port of each host that maps
// node names to the port of their ROUTER. A node's entry lives exactly as long as the TCP
// connection that registered it. Text protocol, one line per request (docs/PROTOCOL.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nodus::dist {

/// Port of the port mapper: $NODUS_PORTMAPPER_PORT, else 4370.
std::uint16_t portmapper_port();

struct PortmapperOptions {
  std::uint16_t port = 0;             ///< 0: portmapper_port()
  std::string bind = "127.0.0.1";
  std::chrono::seconds idle_exit{0};  ///< exit after this long with no names (0: never)
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
  std::optional<std::uint32_t> register_node(const std::string& name, std::uint16_t node_port,
                                             const std::string& curve_key, std::string* error);
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
/// 127.0.0.1:`port`, and waits until it does. False with `error` set if it cannot.
bool ensure_portmapper(std::uint16_t port, std::string* error);

}  // namespace nodus::dist
