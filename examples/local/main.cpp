// A tour of nodus's local runtime: the lesson's `{hi, pid}` -> `sup?` exchange, a crash seen
// through a link and a monitor, and output through the group leader.
#include <chrono>
#include <cstdio>
#include <string>
#include <stdexcept>
#include <string_view>

#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

// Kate.say_name: prints through the group leader of whoever spawned it.
Proc say_name() {
  io::puts("Hi, my name is Kate");
  co_return;
}

// Waits for {hi, From} and answers sup?.
Proc reply_sup() {
  Term msg = co_await receive<Term>([](const Term& t) { return t.is_tuple(2, "hi") && t[1].is_pid(); });
  send(msg[1].as_pid(), atom("sup?"));
}

Proc crasher() {
  co_await sleep_for(10ms);
  throw std::runtime_error("chicken not found");
}

int usage(int rc) {
  std::puts("usage: nodus-local-demo [--help]\n"
            "Runs a short tour of nodus's local process runtime and prints what happens.");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) return usage(std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h" ? 0 : 2);
  Runtime rt;
  Mailbox shell;  // this thread acts as the shell's process

  io::puts("> spawn(say_name)");
  auto [kate, ref] = spawn_monitor(say_name);
  shell.receive<Down>([&](const Down& d) { return d.ref == ref; }, 5s);

  io::puts("> pid = spawn(reply_sup); send(pid, {hi, self()}); flush()");
  Pid pid = spawn(reply_sup);
  send(pid, tuple(atom("hi"), self()));
  if (auto m = shell.receive_any(5s)) io::puts(m->to_string());

  io::puts("> trap_exit(true); spawn_link(crasher)");
  shell.trap_exit(true);
  Pid c = spawn_link(crasher);
  if (auto e = shell.receive<ExitMsg>(5s)) {
    io::puts(Term(tuple(atom("EXIT"), e->from, e->reason)).to_string());
  }
  (void)c;
  io::puts("processes alive: " + std::to_string(rt.process_count()));
  return 0;
}
