// Process basics: spawn forms, self, registered names, group leader, yield, nested coroutines.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace nodus;
using namespace nodus::test;

namespace {
struct Go {};
struct Ping {
  Pid from;
  int n;
};
struct Pong {
  int n;
};

Proc echo() {
  for (;;) {
    Ping p = co_await receive<Ping>();
    send(p.from, Pong{p.n});
  }
}

Async<int> ask(Pid server, int n) {
  send(server, Ping{self(), n});
  Pong p = co_await receive<Pong>();
  co_return p.n * 10;
}

Async<> fail_inside() {
  co_await yield();
  throw std::logic_error("deep");
}
}  // namespace

TEST_CASE("self() inside a process and on a Mailbox thread", "[process]") {
  Runtime rt;
  CHECK(self().is_null());
  {
    Mailbox mb;
    CHECK(self() == mb.pid());
    Pid p = spawn([](Pid to) -> Proc {
      send(to, self());
      co_return;
    }, self());
    auto got = mb.receive<Term>(kWait);
    REQUIRE(got);
    CHECK(got->as_pid() == p);
    CHECK(p.is_local());
    CHECK(to_string(p).rfind("<0.", 0) == 0);
  }
  CHECK(self().is_null());
}

TEST_CASE("capturing lambdas keep their captures for the life of the process", "[process]") {
  Runtime rt;
  Mailbox mb;
  auto text = std::make_shared<std::string>("captured");
  Pid to = self();
  Pid p = spawn([text, to]() -> Proc {
    co_await receive<Go>();
    send(to, *text);
  });
  text.reset();
  send(p, Go{});
  auto got = mb.receive<Term>(kWait);
  REQUIRE(got);
  CHECK(got->as_binary() == "captured");
}

TEST_CASE("Async<T>: nested coroutines receive and return values, exceptions propagate", "[process]") {
  Runtime rt;
  Mailbox mb;
  Pid server = spawn(echo);
  auto [p, r] = spawn_monitor([](Pid server, Pid to) -> Proc {
    int a = co_await ask(server, 4);
    send(to, a);
    co_await fail_inside();
  }, server, self());
  auto got = mb.receive<Term>(kWait);
  REQUIRE(got);
  CHECK(got->as_int() == 40);
  CHECK(wait_down(mb, r).reason.to_string() == "{exception, \"std::logic_error\", \"deep\"}");
  (void)p;
}

TEST_CASE("registered names: register, whereis, send by name, freed on exit", "[process][registry]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn(echo);
  CHECK(register_name(atom("echo"), p));
  CHECK_FALSE(register_name(atom("echo"), mb.pid()));  // taken
  CHECK_FALSE(register_name(atom("other"), p));        // a process has at most one name
  REQUIRE(whereis(atom("echo")));
  CHECK(*whereis(atom("echo")) == p);
  CHECK(send(atom("echo"), Ping{self(), 3}));
  auto pong = mb.receive<Pong>(kWait);
  REQUIRE(pong);
  CHECK(pong->n == 3);
  CHECK_FALSE(send(atom("nobody"), Go{}));
  Ref r = monitor(p);
  exit(p, atom("kill"));
  wait_down(mb, r);
  CHECK_FALSE(whereis(atom("echo")).has_value());
  CHECK_FALSE(register_name(atom("echo"), p));  // dead pid
  CHECK(register_name(atom("echo"), mb.pid()));
  CHECK(unregister_name(atom("echo")));
  CHECK_FALSE(whereis(atom("echo")).has_value());
  CHECK_FALSE(unregister_name(atom("echo")));
}

TEST_CASE("io::puts goes to the group leader, inherited by spawned processes", "[process][io]") {
  Runtime rt;
  Mailbox mb;
  // this thread plays the group leader of a small tree
  Pid parent = spawn_opt({.group_leader = self()}, [](Pid) -> Proc {
    io::puts("from parent");
    spawn([]() -> Proc {
      io::puts("from child");
      co_return;
    });
    co_return;
  }, self());
  (void)parent;
  std::vector<std::string> lines;
  for (int i = 0; i < 2; ++i) {
    auto r = mb.receive<io::Request>(kWait);
    REQUIRE(r);
    lines.push_back(r->text);
  }
  std::sort(lines.begin(), lines.end());
  CHECK(lines == std::vector<std::string>{"from child\n", "from parent\n"});
  CHECK(group_leader() == *whereis(atom("user")));  // the Mailbox's own group leader
}

TEST_CASE("yield lets other processes run on a busy scheduler", "[process]") {
  Runtime rt({.schedulers = 1});
  Mailbox mb;
  static std::atomic<bool> stop{false};
  stop = false;
  Pid spinner = spawn([]() -> Proc {
    while (!stop.load()) co_await yield();
  });
  Pid p = spawn([](Pid to) -> Proc {
    send(to, atom("ran"));
    co_return;
  }, self());
  auto r = mb.receive<Term>(kWait);
  CHECK(r.has_value());
  stop = true;
  wait_exit(mb, spinner);
  (void)p;
}

TEST_CASE("ten thousand processes in a ring pass a token around", "[process]") {
  Runtime rt;
  Mailbox mb;
  constexpr int n = 10000;
  Pid next = self();
  for (int i = 0; i < n; ++i) {
    next = spawn([](Pid next) -> Proc {
      Term t = co_await receive<Term>();
      send(next, t.as_int() + 1);
    }, next);
  }
  send(next, 0);
  auto r = mb.receive<Term>(20s);
  REQUIRE(r);
  CHECK(r->as_int() == n);
}

TEST_CASE("pids of dead processes do not resolve, even after slot reuse", "[process]") {
  Runtime rt;
  Mailbox mb;
  std::vector<Pid> dead;
  for (int i = 0; i < 6000; ++i) {
    auto [p, r] = spawn_monitor([]() -> Proc { co_return; });
    dead.push_back(p);
    wait_down(mb, r);
  }
  for (int i = 0; i < 6000; ++i) spawn(echo);
  for (const Pid& p : dead) CHECK_FALSE(is_process_alive(p));
  send(dead.front(), Ping{self(), 1});
  CHECK_FALSE(mb.receive<Pong>(20ms).has_value());
}
