// The lesson's node (../shared/seed): `chat --sname kate@localhost --cookie C` registers the
// functions other nodes spawn by name, Kate.say_name and Kate.reply_sup, and serves until
// SIGINT/SIGTERM. (The Chat application with its Task.Supervisor comes with the OTP layer.)
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "nodus/cli.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;

namespace {

// Kate.say_name: `IO.puts "Hi, my name is Kate"`, printed where the caller's group leader is.
Proc say_name(Term) {
  io::puts("Hi, my name is Kate");
  co_return;
}

// Kate.reply_sup: receive {hi, Pid} -> send Pid 'sup?'.
Proc reply_sup(Term) {
  Term m = co_await receive<Term>([](const Term& t) { return t.is_tuple(2, "hi") && t[1].is_pid(); });
  send(m[1].as_pid(), atom("sup?"));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chat: a node of the lesson (alex, kate, moebi)"};
  cli::NodeFlags flags;
  cli::add_node_flags(app, flags);
  CLI11_PARSE(app, argc, argv);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts: sigwait gets them

  Runtime rt;
  try {
    Node node(cli::node_options(flags));
    register_function("Kate.say_name", say_name);
    register_function("Kate.reply_sup", reply_sup);
    int sig = 0;
    sigwait(&stop, &sig);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
