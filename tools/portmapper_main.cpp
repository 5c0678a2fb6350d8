// nodus-portmapper: the per-host name -> port registry nodes start on demand (like epmd).
#include <CLI/CLI.hpp>

#include "nodus/portmapper.hpp"
#include "nodus/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "nodus-portmapper: maps node names to ports on this host. Nodes start it when none is\n"
      "running; it outlives them and forgets a node when its connection closes."};
  app.set_version_flag("--version", std::string("nodus-portmapper ") + nodus::version(), "print the version and exit");
  nodus::dist::PortmapperOptions o;
  long idle = 0;
  app.add_option("--port", o.port, "TCP port (default: $NODUS_PORTMAPPER_PORT, else 4370)");
  app.add_option("--bind", o.bind,
                 "IPv4 address to listen on (repeatable; 0.0.0.0: all). Registrations are taken from "
                 "this host's loopback only, whatever the address")
      ->capture_default_str();
  long request_ms = 5000;
  app.add_option("--request-timeout", request_ms, "ms a connection has to send a whole request")
      ->capture_default_str()->check(CLI::Range(100L, 600000L));
  app.add_option("--max-pending", o.max_pending, "connections that have not registered, at most")
      ->capture_default_str()->check(CLI::Range(std::size_t(1), std::size_t(1) << 20));
  app.add_option("--max-pending-per-address", o.max_pending_per_address,
                 "connections that have not registered from one address, at most")
      ->capture_default_str()->check(CLI::Range(std::size_t(1), std::size_t(1) << 20));
  app.add_option("--idle-exit", idle, "exit after this many seconds without any node (0: never)");
  CLI11_PARSE(app, argc, argv);
  o.idle_exit = std::chrono::seconds(idle);
  o.request_timeout = std::chrono::milliseconds(request_ms);
  return nodus::dist::run_portmapper(o);
}
