// ping_pong: the lesson's second step from C++. On alex, start Kate.reply_sup on kate, send it
// {hi, self()}, and flush the mailbox: `'sup?'` arrives from kate.
//
//   chat --sname kate@localhost --cookie c &                                   # kate
//   ping_pong --sname alex@localhost --cookie c --to kate@localhost             # alex
//
// iex(alex@localhost)> pid = Node.spawn_link :kate@localhost, fn -> receive do {:hi, p} -> send p, :sup? end end
// iex(alex@localhost)> send(pid, {:hi, self()})
// iex(alex@localhost)> flush()
// :sup?
#include <CLI/CLI.hpp>
#include <cstdio>

#include "nodus/cli.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  CLI::App app{"ping_pong: {hi, self()} to Kate.reply_sup on another node, then flush ('sup?')"};
  cli::NodeFlags flags;
  cli::add_node_flags(app, flags);
  std::string to = "kate@localhost";
  app.add_option("--to", to, "the node running the chat example")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    Runtime rt;
    Node node(cli::node_options(flags));
    Mailbox mb;  // this thread is alex's shell process
    Pid pid = spawn_or_throw(atom(to), "Kate.reply_sup", Term::list({}), {.link = true});
    std::printf("%s\n", to_string(pid).c_str());
    send(pid, tuple(atom("hi"), self()));
    std::printf("%s\n", tuple(atom("hi"), self()).to_string().c_str());
    // flush(): wait briefly for the answer to arrive, then print everything in the mailbox
    if (!mb.receive<Term>([](const Term& t) { return t.is_atom("sup?"); }, 5s)) {
      std::fprintf(stderr, "error: no answer from %s\n", to.c_str());
      return 1;
    }
    std::printf("'sup?'\n");
    mb.flush_print();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
