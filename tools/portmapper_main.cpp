// nodus-portmapper: the per-host name -> port registry nodes start on demand (like epmd).
#include <CLI/CLI.hpp>

#include "../src/dist/portmapper.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "nodus-portmapper: maps node names to ports on this host. Nodes start it when none is\n"
      "running; it outlives them and forgets a node when its connection closes."};
  nodus::dist::PortmapperOptions o;
  long idle = 0;
  app.add_option("--port", o.port, "TCP port (default: $NODUS_PORTMAPPER_PORT, else 4370)");
  app.add_option("--bind", o.bind, "address to listen on")->capture_default_str();
  app.add_option("--idle-exit", idle, "exit after this many seconds without any node (0: never)");
  CLI11_PARSE(app, argc, argv);
  o.idle_exit = std::chrono::seconds(idle);
  return nodus::dist::run_portmapper(o);
}
