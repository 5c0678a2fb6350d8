// OTP pieces across OS-process nodes: pg (process groups), with a node killed mid-operation.
#include <catch2/catch.hpp>

#include <csignal>
#include <iostream>
#include <map>
#include <thread>

#include "harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

// A member process of the peer: joins `group` in the default scope, prints what it is sent.
Proc member(Term group) {
  pg::join(group, self()).value();
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_atom("leave")) {
      pg::leave(group, self()).value();
    } else {
      std::printf("%s got %s\n", to_string(self()).c_str(), t.to_string(200).c_str());
      std::fflush(stdout);
    }
  }
}

// The peer: `--nodus-peer NAME COOKIE`; pg's default scope; stdin `join GROUP` starts a member
// of GROUP, `leave GROUP` makes the newest one leave.
int otp_peer(int argc, char** argv) {
  if (argc < 4) return 2;
  TermSignals term;
  Runtime rt;
  pg::start().value();
  Node node({.name = argv[2], .cookie = argv[3], .ticktime = 1000ms});
  std::thread([] {
    std::map<std::string, Pid> newest;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.rfind("join ", 0) == 0) {
        newest[line.substr(5)] = spawn(member, Term(atom(line.substr(5))));
      } else if (line.rfind("leave ", 0) == 0) {
        send(newest[line.substr(6)], atom("leave"));
      }
    }
  }).detach();
  term.wait();
  return 0;
}
const bool kPeerInstalled = (peer_main = &otp_peer, watchdog_seconds = 280, true);

std::size_t remote_members(const std::vector<Pid>& ms) {
  std::size_t n = 0;
  for (const Pid& p : ms) n += !p.is_local();
  return n;
}

Proc local_member(Term group) {
  pg::join(group, self()).value();
  co_await receive<Term>([](const Term& t) { return t.is_atom("quit"); });
}

}  // namespace

TEST_CASE("pg: groups across nodes; members leave on exit, on leave and when their node is killed",
          "[distributed][pg]") {
  PortMapper pm(NODUS_PORTMAPPER_TOOL);
  REQUIRE(pm.ready());
  Child kate({self_exe(), "--nodus-peer", "kate@localhost", "c"}, "pg-kate" + std::to_string(pm.port()), Child::Pipe{});
  REQUIRE(eventually([&] { return pm.lists("kate"); }));
  Runtime rt;
  pg::start().value();
  Node node({.name = "alex@localhost", .cookie = "c", .ticktime = 1000ms});
  Mailbox mb;
  auto [ref, now] = pg::monitor_scope();
  CHECK(now == Term::map({}));
  const Pid mine = spawn(local_member, Term(atom("room")));
  REQUIRE(eventually([&] { return pg::get_local_members(atom("room")).size() == 1; }));
  REQUIRE(kate.write_stdin("join room\njoin room\n"));
  REQUIRE(node::ping(atom("kate@localhost")));
  // kate's two members arrive here (sync or join), and ours there
  REQUIRE(eventually([&] { return remote_members(pg::get_members(atom("room"))) == 2; }, 20s));
  CHECK(pg::get_local_members(atom("room")) == std::vector<Pid>{mine});
  for (const Pid& p : pg::get_members(atom("room"))) send(p, tuple(atom("say"), "hello room"));
  CHECK(eventually([&] { return count_of(kate.out(), "got {say, \"hello room\"}") == 2; }));
  CHECK(pg::which_groups() == std::vector<Term>{Term(atom("room"))});
  // one of kate's members leaves: a leave event here
  REQUIRE(kate.write_stdin("leave room\n"));
  CHECK(eventually([&] { return remote_members(pg::get_members(atom("room"))) == 1; }, 20s));
  bool saw_leave = false;
  while (auto m = mb.receive<Term>(0ms)) {
    saw_leave = saw_leave || (m->is_tuple() && m->size() == 4 && (*m)[0] == Term(ref) && (*m)[1].is_atom("leave") &&
                              (*m)[2].is_atom("room"));
  }
  CHECK(saw_leave);
  // our member exits: gone here at once
  send(mine, atom("quit"));
  CHECK(eventually([&] { return pg::get_local_members(atom("room")).empty(); }));
  // kate is killed mid-operation: her member leaves when the node goes down
  kate.signal(SIGKILL);
  CHECK(eventually([&] { return pg::get_members(atom("room")).empty(); }, 20s));
  CHECK(pg::which_groups().empty());
  pg::demonitor_scope(ref);
}

TEST_CASE("pg: join refuses another node's pid and a dead one; leave of a non-member is not_joined", "[pg]") {
  Runtime rt;
  pg::start().value();
  auto again = pg::start();
  REQUIRE(!again);
  CHECK(again.error().code == Errc::already_started);
  Mailbox mb;
  CHECK(pg::join(atom("g"), Pid{atom("other@host"), 1, 1, 1}).error().code == Errc::badarg);
  const Pid dead = spawn([]() -> Proc { co_return; });
  REQUIRE(eventually([&] { return !is_process_alive(dead); }));
  CHECK(pg::join(atom("g"), dead).error().code == Errc::badarg);
  CHECK(*pg::leave(atom("g"), mb.pid()) == Term(atom("not_joined")));
  REQUIRE(pg::join(atom("g"), mb.pid()));
  REQUIRE(pg::join(atom("g"), mb.pid()));
  CHECK(pg::get_members(atom("g")).size() == 2);  // once per join, as OTP's
  CHECK(*pg::leave(atom("g"), mb.pid()) == Term(atom("ok")));
  CHECK(pg::get_members(atom("g")).size() == 1);
  CHECK(pg::join(atom("nope_scope"), atom("g"), mb.pid()).error().code == Errc::noproc);
}
