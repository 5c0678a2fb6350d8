// A `nodus shell` node with what the observability scenario needs (tests/dist/observe_test.cpp):
//   Obs.burst N          spawns N processes that end at once
//   Obs.flood NODE NAME N  sends N messages {flood, I} to {NAME, NODE}
//   Obs.hold N           sends N messages to the local `holder`, which never reads them
// and a supervisor ObsSup with one permanent child, registered as obs_worker, that crashes on
// `crash`. Commands come on stdin as for `nodus shell`.
#include <CLI/CLI.hpp>

#include "../../tools/shell.hpp"
#include "nodus/cli.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;

namespace {
Proc quick(Term) { co_return; }

Proc burst(Term args) {
  const std::int64_t n = args[0].as_int();
  for (std::int64_t i = 0; i < n; ++i) spawn(quick, Term());
  co_return;
}

Proc flood(Term args) {
  const Atom node = args[0].as_atom(), name = args[1].as_atom();
  const std::int64_t n = args[2].as_int();
  for (std::int64_t i = 1; i <= n; ++i) send(name, node, tuple(atom("flood"), i));
  co_return;
}

Proc holder() { co_await receive<Term>([](const Term& t) { return t.is_atom("never"); }); }

Proc hold(Term args) {
  const std::int64_t n = args[0].as_int();
  for (std::int64_t i = 1; i <= n; ++i) send(atom("holder"), tuple(atom("held"), i));
  co_return;
}

Proc obs_worker() {
  register_name(atom("obs_worker"), self());
  co_await receive<Term>([](const Term& t) { return t.is_atom("crash"); });
  throw std::runtime_error("crashed on request");
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"observe_node: a nodus shell with the observability scenario's functions"};
  cli::NodeFlags f;
  cli::add_node_flags(app, f);
  CLI11_PARSE(app, argc, argv);
  return tools::run_shell(cli::node_options(f), [] {
    register_function("Obs.burst", burst);
    register_function("Obs.flood", flood);
    register_function("Obs.hold", hold);
    register_name(atom("holder"), spawn(holder));
    supervisor::start({.strategy = supervisor::Strategy::one_for_one, .max_restarts = 10, .max_seconds = std::chrono::seconds(60)},
                      {supervisor::worker("obs_worker", obs_worker)}, {.name = atom("ObsSup")})
        .value();
  });
}
