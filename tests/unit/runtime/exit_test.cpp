// Failure semantics: links, exit signals, trap_exit, kill, monitors, exception reasons.
#include <atomic>
#include <stdexcept>

#include "helpers.hpp"

using namespace nodus;
using namespace nodus::test;

namespace {
struct Go {};
struct Crash {};
struct ChickenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Proc wait_forever() {
  co_await receive<Go>();
}

Proc crash_on_go() {
  co_await receive<Go>();
  throw ChickenError("no chicken");
}

// Links to `other`, reports, then waits forever.
Proc linker(Pid other, Pid report) {
  link(other);
  send(report, atom("linked"));
  co_await receive<Go>();
}
}  // namespace

TEST_CASE("an escaping exception becomes {exception, Type, What}", "[exit]") {
  Runtime rt;
  Mailbox mb;
  auto [p, ref] = spawn_monitor(crash_on_go);
  send(p, Go{});
  Down d = wait_down(mb, ref);
  CHECK(d.pid == p);
  CHECK(d.reason.to_string() == "{exception, \"(anonymous namespace)::ChickenError\", \"no chicken\"}");
  CHECK_FALSE(is_process_alive(p));
}

TEST_CASE("exit_self(reason) ends the process with that reason; returning is normal", "[exit]") {
  Runtime rt;
  Mailbox mb;
  auto [p1, r1] = spawn_monitor([]() -> Proc {
    exit_self(tuple(atom("shutdown"), 3));
    co_return;
  });
  CHECK(wait_down(mb, r1).reason.to_string() == "{shutdown, 3}");
  auto [p2, r2] = spawn_monitor([]() -> Proc { co_return; });
  CHECK(wait_down(mb, r2).reason.to_string() == "normal");
  (void)p1;
  (void)p2;
}

TEST_CASE("a crash propagates through links to non-trapping processes", "[exit][link]") {
  Runtime rt;
  Mailbox mb;
  Pid victim = spawn(crash_on_go);
  Pid bystander = spawn(linker, victim, self());
  Pid second = spawn(linker, bystander, self());  // a chain: victim - bystander - second
  REQUIRE(mb.receive<Term>(kWait));
  REQUIRE(mb.receive<Term>(kWait));
  Ref m1 = monitor(bystander);
  Ref m2 = monitor(second);
  send(victim, Go{});
  CHECK(wait_down(mb, m1).reason.is_tuple(3, "exception"));
  CHECK(wait_down(mb, m2).reason.is_tuple(3, "exception"));
}

TEST_CASE("spawn_link: trapping parent gets {'EXIT', Pid, Reason}", "[exit][link]") {
  Runtime rt;
  Mailbox mb;
  mb.trap_exit(true);
  Pid c = spawn_link(crash_on_go);
  send(c, Go{});
  auto e = mb.receive<ExitMsg>(kWait);
  REQUIRE(e);
  CHECK(e->from == c);
  CHECK(e->reason.is_tuple(3, "exception"));
  Pid n = spawn_link([]() -> Proc { co_return; });
  auto e2 = mb.receive<ExitMsg>(kWait);
  REQUIRE(e2);
  CHECK(e2->from == n);
  CHECK(e2->reason.to_string() == "normal");
}

TEST_CASE("a normal exit does not take linked processes down", "[exit][link]") {
  Runtime rt;
  Mailbox mb;
  Pid parent = spawn([](Pid to) -> Proc {
    Pid child = spawn_link([]() -> Proc { co_return; });
    Ref r = monitor(child);
    co_await receive<Down>([r](const Down& d) { return d.ref == r; });
    send(to, atom("child_gone"));
    co_await receive<Go>();
    send(to, atom("still_alive"));
  }, self());
  auto a = mb.receive<Term>(kWait);
  REQUIRE(a);
  CHECK(a->to_string() == "child_gone");
  send(parent, Go{});
  auto b = mb.receive<Term>(kWait);
  REQUIRE(b);
  CHECK(b->to_string() == "still_alive");
}

TEST_CASE("the thread mailbox dies with a linked crash unless it traps exits", "[exit][link]") {
  Runtime rt;
  Mailbox mb;
  Pid c = spawn_link(crash_on_go);
  send(c, Go{});
  bool died = false;
  try {
    (void)mb.receive<Go>(kWait);
  } catch (const ProcessExit& e) {
    died = true;
    CHECK(e.reason.is_tuple(3, "exception"));
  }
  CHECK(died);
  CHECK_FALSE(is_process_alive(mb.pid()));
}

TEST_CASE("exit/2: kill is untrappable and reads as killed; others obey trap_exit", "[exit]") {
  Runtime rt;
  Mailbox mb;
  // a trapping process turns exit signals into messages, except kill
  Pid trapper = spawn([](Pid to) -> Proc {
    trap_exit(true);
    send(to, atom("ready"));
    for (;;) {
      ExitMsg e = co_await receive<ExitMsg>();
      send(to, e.reason);
    }
  }, self());
  REQUIRE(mb.receive<Term>(kWait));
  exit(trapper, atom("normal"));
  exit(trapper, atom("custom"));
  auto a = mb.receive<Term>(kWait);
  auto b = mb.receive<Term>(kWait);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->to_string() == "normal");
  CHECK(b->to_string() == "custom");
  Ref r = monitor(trapper);
  exit(trapper, atom("kill"));
  CHECK(wait_down(mb, r).reason.to_string() == "killed");

  // a non-trapping process ignores normal, dies of anything else
  Pid plain = spawn(wait_forever);
  Ref r2 = monitor(plain);
  exit(plain, atom("normal"));
  CHECK(is_process_alive(plain));
  CHECK_FALSE(mb.receive<Down>(30ms).has_value());
  exit(plain, atom("custom"));
  CHECK(wait_down(mb, r2).reason.to_string() == "custom");
}

TEST_CASE("killed propagates to links as a trappable killed", "[exit][link]") {
  Runtime rt;
  Mailbox mb;
  mb.trap_exit(true);
  Pid c = spawn_link(wait_forever);
  exit(c, atom("kill"));
  auto e = mb.receive<ExitMsg>(kWait);
  REQUIRE(e);
  CHECK(e->reason.to_string() == "killed");
}

TEST_CASE("kill ends a process waiting in receive and runs its destructors", "[exit]") {
  Runtime rt;
  Mailbox mb;
  static std::atomic<bool> destroyed{false};
  struct Guard {
    ~Guard() { destroyed = true; }
  };
  auto [p, r] = spawn_monitor([]() -> Proc {
    Guard g;
    co_await receive<Go>();
  });
  exit(p, atom("kill"));
  CHECK(wait_down(mb, r).reason.to_string() == "killed");
  CHECK(destroyed.load());
}

TEST_CASE("exit(self(), normal) ends the caller", "[exit]") {
  Runtime rt;
  Mailbox mb;
  auto [p, r] = spawn_monitor([]() -> Proc {
    exit(self(), atom("normal"));
    co_await receive<Go>();
  });
  CHECK(wait_down(mb, r).reason.to_string() == "normal");
  (void)p;
}

TEST_CASE("links and monitors on a dead pid fire at once with noproc", "[exit][monitor]") {
  Runtime rt;
  Mailbox mb;
  auto [p, r] = spawn_monitor([]() -> Proc { co_return; });
  wait_down(mb, r);
  Ref r2 = monitor(p);
  Down d = wait_down(mb, r2);
  CHECK(d.reason.to_string() == "noproc");
  CHECK(d.pid == p);
  mb.trap_exit(true);
  link(p);
  auto e = mb.receive<ExitMsg>(kWait);
  REQUIRE(e);
  CHECK(e->from == p);
  CHECK(e->reason.to_string() == "noproc");
}

TEST_CASE("demonitor stops the Down; with flush it removes a delivered one", "[monitor]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn(wait_forever);
  Ref r = monitor(p);
  CHECK(demonitor(r));
  CHECK_FALSE(demonitor(r));
  send(p, Go{});
  Ref r2 = monitor(p);  // new monitor, to know when it is gone
  wait_down(mb, r2);
  CHECK_FALSE(mb.receive<Down>(20ms).has_value());  // nothing for r

  Pid q = spawn(wait_forever);
  Ref rq = monitor(q);
  Ref rq2 = monitor(q);
  send(q, Go{});
  wait_down(mb, rq2);  // both Downs are now delivered
  demonitor(rq, true);
  CHECK_FALSE(mb.receive<Down>(20ms).has_value());
}

// demonitor(flush) racing the target's end (it may have taken its watcher entries, or our
// monitoring entry, without its Down having reached us yet): no Down of the ref stays behind
TEST_CASE("demonitor(flush) as the target ends never leaves its Down", "[monitor]") {
  Runtime rt;
  Mailbox mb;
  int left = 0;
  for (int i = 0; i < 20000; ++i) {
    Pid q = spawn(wait_forever);
    Ref r = monitor(q);
    Ref last = monitor(q);  // its Down comes after r's would
    send(q, Go{});
    for (int k = 0; k < i % 7; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
    demonitor(r, true);
    wait_down(mb, last);
    if (mb.receive<Down>([&](const Down& d) { return d.ref == r; }, 0ms)) ++left;
  }
  CHECK(left == 0);
  CHECK(mb.flush().empty());
}

TEST_CASE("unlink stops exit propagation", "[link]") {
  Runtime rt;
  Mailbox mb;
  mb.trap_exit(true);
  Pid c = spawn_link(crash_on_go);
  unlink(c);
  Ref r = monitor(c);
  send(c, Go{});
  wait_down(mb, r);
  CHECK_FALSE(mb.receive<ExitMsg>(20ms).has_value());
}

TEST_CASE("spawn_monitor and monitor deliver the reason of a crash", "[monitor]") {
  Runtime rt;
  Mailbox mb;
  auto [p, r] = spawn_monitor(crash_on_go);
  Ref r2 = monitor(p);
  send(p, Go{});
  CHECK(wait_down(mb, r).reason.is_tuple(3, "exception"));
  CHECK(wait_down(mb, r2).reason.is_tuple(3, "exception"));
}
