// zmq_feed: a pyzmq PUB publishes prices; a nodus process subscribes through a SUB port and
// republishes each price to the members of the process group `prices` (pg), who print it.
//
//   python3 examples/zmq_feed/publisher.py tcp://127.0.0.1:5556 &
//   zmq_feed --prices tcp://127.0.0.1:5556 --members 3 --count 20
//   member 1: ACME 100.37 (#12)
//   ...
#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

#include "nodus/nodus.hpp"
#include "nodus/zmq_port.hpp"

using namespace nodus;
namespace zp = nodus::zmq_port;

namespace {
const Term kGroup = atom("prices");

// A member of `prices`: prints what the feed sends it until told to stop.
Proc member(long i, Pid report) {
  pg::join(kGroup, self()).value();
  send(report, atom("joined"));
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_atom("stop")) co_return;
    if (t.is_tuple(4, "price")) {
      io::puts("member " + std::to_string(i) + ": " + std::string(t[1].as_atom().name()) + " " + t[2].as_binary() +
               " (#" + std::to_string(t[3].as_int()) + ")");
    }
  }
}

// The feed: `count` prices from the SUB port, each to every member of `prices`.
Proc feed(Pid report, std::string ep, long count) {
  zp::Port prices = zp::open(zp::Type::sub, {.connect = {ep}, .subscribe = {"price "}}).value();
  for (long n = 0; n < count;) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    std::istringstream in(m.parts.at(0));
    std::string word, symbol, value;
    long seq = 0;
    if (!(in >> word >> symbol >> value >> seq)) continue;  // (not a price line: skipped)
    for (const Pid& p : pg::get_members(kGroup)) send(p, tuple(atom("price"), atom(symbol), value, seq));
    ++n;
  }
  for (const Pid& p : pg::get_members(kGroup)) send(p, atom("stop"));
  zp::close(prices);
  send(report, atom("done"));
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zmq_feed: prices from a ZeroMQ PUB, through a SUB port, to a process group"};
  std::string ep;
  long members = 3, count = 20;
  app.add_option("--prices", ep, "the publisher's endpoint (a SUB port connects to it)")->required();
  app.add_option("--members", members, "members of the group `prices`")->capture_default_str()->check(CLI::Range(1, 100));
  app.add_option("--count", count, "prices to pass on before stopping")->capture_default_str()->check(CLI::Range(1, 1000000));
  CLI11_PARSE(app, argc, argv);
  try {
    Runtime rt;
    Mailbox mb;
    pg::start().value();
    std::vector<Ref> watch;
    for (long i = 1; i <= members; ++i) {
      auto [pid, ref] = spawn_monitor(member, i, mb.pid());
      watch.push_back(ref);
      (void)pid;
      if (!mb.receive<Term>([](const Term& t) { return t.is_atom("joined"); }, std::chrono::seconds(10))) {
        std::fprintf(stderr, "error: member %ld did not join\n", i);
        return 1;
      }
    }
    spawn(feed, mb.pid(), ep, count);
    (void)mb.receive<Term>([](const Term& t) { return t.is_atom("done"); }, std::chrono::hours(24));
    for (std::size_t i = 0; i < watch.size(); ++i) (void)mb.receive<Down>(std::chrono::seconds(10));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
