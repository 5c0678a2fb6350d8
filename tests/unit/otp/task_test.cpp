// Task and a local Task.Supervisor: await, yield, shutdown, timeouts, crashes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>

#include "../../dist/harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

Async<Term> double_it(Term args) { co_return Term(args[0].as_int() * 2); }
Async<Term> crash(Term) {
  throw std::runtime_error("task failed");
  co_return Term();
}
// waits for `go` (so a test decides when it ends)
Async<Term> gated(Term) {
  co_await receive<Term>([](const Term& t) { return t.is_atom("go"); });
  co_return atom("went");
}

struct Fixture {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  Fixture() {
    task::register_function("Test.double", double_it);
    task::register_function("Test.crash", crash);
    task::register_function("Test.gated", gated);
  }
};

// In a process: a task supervisor call, awaited.
Proc asker(Pid report, Pid sup) {
  // (arguments built outside co_await: GCC 12 rejects a braced list inside a co_await expression)
  const std::string dbl = "Test.double", nope = "Test.nope";
  const Term args = Term::list({21}), none = Term::list({});
  Task t = co_await task_supervisor::async(sup, dbl, args);
  Term r = co_await task::await(t);
  send(report, tuple(atom("result"), r));
  try {
    (void)co_await task_supervisor::async(sup, nope, none);
    send(report, atom("no_error"));
  } catch (const TaskError& e) {
    send(report, tuple(atom("error"), std::string(e.what())));
  }
}

}  // namespace

TEST_CASE_METHOD(Fixture, "task::async / await / yield", "[otp][task]") {
  Task t = task::async([]() -> Async<Term> { co_return atom("done"); });
  CHECK(task::await(mb, t) == Term(atom("done")));
  Task g = task::async([]() -> Async<Term> { co_return co_await gated(Term()); });
  CHECK(task::yield(mb, g, 50ms) == Term(atom("nil")));  // not yet: still running
  send(g.pid, atom("go"));
  CHECK(task::yield(mb, g).to_string() == "{ok, went}");
  Task slow = task::async([]() -> Async<Term> { co_return co_await gated(Term()); });
  try {
    task::await(mb, slow, 50ms);
    FAIL("no timeout");
  } catch (const TaskError& e) {
    CHECK(e.reason == Term(atom("timeout")));
  }
  CHECK(task::shutdown(mb, slow) == Term(atom("nil")));
  CHECK_FALSE(is_process_alive(slow.pid));
}

TEST_CASE_METHOD(Fixture, "a crashing linked task takes its owner down unless it traps exits", "[otp][task]") {
  trap_exit(true);
  Task t = task::async([]() -> Async<Term> { co_return co_await crash(Term()); });
  try {
    task::await(mb, t);
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(e.reason.to_string().find("task failed") != std::string::npos);
  }
  auto e = mb.receive<ExitMsg>(10s);
  REQUIRE(e);
  CHECK(e->from == t.pid);
}

TEST_CASE_METHOD(Fixture, "Task.Supervisor: async, async_nolink, children, terminate_child, start_child", "[otp][task]") {
  Pid sup = task_supervisor::start({.name = atom("Test.TaskSupervisor")}).value();
  Task t = task_supervisor::async(mb, atom("Test.TaskSupervisor"), "Test.double", Term::list({4}));
  CHECK(task::await(mb, t) == Term(8));
  // a crash in a nolink task is a value for yield
  Task c = task_supervisor::async_nolink(mb, sup, "Test.crash", Term::list({}));
  Term y = task::yield(mb, c);
  CHECK(y.is_tuple(2, "exit"));
  CHECK(y[1].to_string().find("task failed") != std::string::npos);
  CHECK(is_process_alive(sup));  // the supervisor does not restart or die
  // unknown function: a clear error
  try {
    task_supervisor::async(mb, sup, "Test.nope", Term::list({}));
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(std::string(e.what()).find("Test.nope is not a task function") != std::string::npos);
  }
  // children and terminate_child
  Term r = task_supervisor::start_child(mb, sup, "Test.gated", Term::list({}));
  REQUIRE(r.is_tuple(2, "ok"));
  const Pid g = r[1].as_pid();
  CHECK(task_supervisor::children(mb, sup) == Term::list({g}));
  const Ref w = monitor(g);
  CHECK(task_supervisor::terminate_child(mb, sup, g) == Term(atom("ok")));
  REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == w; }, 10s));
  CHECK(task_supervisor::children(mb, sup) == Term::list({}));
  CHECK(task_supervisor::terminate_child(mb, sup, g).to_string() == "{error, not_found}");
  // from a process body
  spawn(asker, self(), sup);
  auto res = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "result"); }, 10s);
  REQUIRE(res);
  CHECK((*res)[1] == Term(42));
  auto err = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "error"); }, 10s);
  REQUIRE(err);
  CHECK((*err)[1].as_binary().find("Test.nope") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "a task supervisor in a supervision tree", "[otp][task]") {
  Pid top = supervisor::start({}, {task_supervisor::child_spec(atom("Tree.Tasks"))}).value();
  Task t = task_supervisor::async(mb, atom("Tree.Tasks"), "Test.double", Term::list({5}));
  CHECK(task::await(mb, t) == Term(10));
  const Pid ts = *whereis(atom("Tree.Tasks"));
  exit(ts, atom("kill"));
  // restarted under the same name
  CHECK(nodus::test::eventually([&] {
    auto p = whereis(atom("Tree.Tasks"));
    return p && *p != ts;
  }));
  CHECK(supervisor::which_children(mb, top)[0][1] != Term(ts));
  Task t2 = task_supervisor::async(mb, atom("Tree.Tasks"), "Test.double", Term::list({6}));
  CHECK(task::await(mb, t2) == Term(12));
}

TEST_CASE_METHOD(Fixture, "supervised tasks leave the supervisor however they end; its death ends them", "[otp][task]") {
  Pid sup = task_supervisor::start({.name = atom("Life.Tasks")}).value();
  // many tasks that end normally: none is left a child, no Down is left behind
  for (int i = 0; i < 200; ++i) {
    Task t = task_supervisor::async(mb, sup, "Test.double", Term::list({i}));
    CHECK(task::await(mb, t) == Term(2 * i));
  }
  CHECK(nodus::test::eventually([&] { return task_supervisor::children(mb, sup) == Term::list({}); }));
  CHECK_FALSE(mb.receive<Down>(50ms).has_value());
  // a crashed task and a killed one leave too, and their owners hear why
  Task c = task_supervisor::async_nolink(mb, sup, "Test.crash", Term::list({}));
  CHECK(task::yield(mb, c).is_tuple(2, "exit"));
  Task k = task_supervisor::async_nolink(mb, sup, "Test.gated", Term::list({}));
  CHECK(task_supervisor::children(mb, sup) == Term::list({k.pid}));
  exit(k.pid, atom("kill"));
  const Term y = task::yield(mb, k);
  CHECK(y.to_string() == "{exit, killed}");
  CHECK(nodus::test::eventually([&] { return task_supervisor::children(mb, sup) == Term::list({}); }));
  // a task that answers after the wait ran out still reports through the same monitor
  Task late = task_supervisor::async_nolink(mb, sup, "Test.gated", Term::list({}));
  CHECK(task::yield(mb, late, 20ms) == Term(atom("nil")));
  send(late.pid, atom("go"));
  CHECK(task::await(mb, late) == Term(atom("went")));
  // the supervisor's death takes its running tasks with it (they are still linked to it)
  Task a = task_supervisor::async_nolink(mb, sup, "Test.gated", Term::list({}));
  Task b = task_supervisor::async_nolink(mb, sup, "Test.gated", Term::list({}));
  exit(sup, atom("kill"));
  CHECK(task::yield(mb, a).to_string() == "{exit, killed}");
  CHECK(task::yield(mb, b).to_string() == "{exit, killed}");
  CHECK_FALSE(mb.receive<Down>(50ms).has_value());
}

TEST_CASE_METHOD(Fixture, "a task supervisor's start errors: noproc, undef, a dead supervisor pid", "[otp][task]") {
  try {
    task_supervisor::async(mb, atom("Nobody.Tasks"), "Test.double", Term::list({1}));
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(e.reason == Term(atom("noproc")));
    CHECK(std::string(e.what()) == "no process: nothing is registered as Nobody.Tasks");
  }
  Pid sup = task_supervisor::start({}).value();
  try {
    task_supervisor::async(mb, sup, "Test.nope", Term::list({}));
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(e.reason.is_tuple(2, "undef"));
  }
  exit(sup, atom("kill"));
  CHECK(nodus::test::eventually([&] { return !is_process_alive(sup); }));
  try {
    task_supervisor::async(mb, sup, "Test.double", Term::list({1}));
    FAIL("no error");
  } catch (const TaskError& e) {
    CHECK(e.reason == Term(atom("noproc")));
    CHECK(std::string(e.what()).find("is not alive or not registered") != std::string::npos);
  }
  // failed starts leave no monitor and no message behind
  CHECK_FALSE(mb.receive<Message>(50ms).has_value());
}

TEST_CASE_METHOD(Fixture, "a timed-out await leaves nothing behind: the late result and the Down are dropped",
                 "[otp][task]") {
  for (int round = 0; round < 3; ++round) {
    Task slow = task::async([]() -> Async<Term> { co_return co_await gated(Term()); });
    const Ref watch = monitor(slow.pid);  // (ours: to know when the task is gone)
    try {
      task::await(mb, slow, 30ms);
      FAIL("no timeout");
    } catch (const TaskError& e) {
      CHECK(e.reason == Term(atom("timeout")));
    }
    unlink(slow.pid);
    send(slow.pid, atom("go"));  // it answers now, too late, and ends
    auto down = mb.receive<Down>([&](const Down& d) { return d.ref == watch; }, 10s);
    REQUIRE(down);  // its result came before its Down (one sender): all is in by now
    CHECK_FALSE(mb.receive_any(0ms).has_value());
  }
}

TEST_CASE_METHOD(Fixture, "shutdown after a yield or a timed-out await stops the task and leaves nothing behind",
                 "[otp][task]") {
  for (bool awaited : {false, true}) {
    Task t = task::async([]() -> Async<Term> { co_return co_await gated(Term()); });
    if (awaited) {
      CHECK_THROWS_AS(task::await(mb, t, 20ms), TaskError);
    } else {
      CHECK(task::yield(mb, t, 20ms) == Term(atom("nil")));
    }
    CHECK(task::shutdown(mb, t, 1s) == Term(atom("nil")));
    CHECK_FALSE(is_process_alive(t.pid));
    auto left = mb.receive_any(0ms);
    INFO("left behind: " << (left ? std::string(left->type_name()) + " " + left->to_string() : std::string("nothing")));
    CHECK_FALSE(left.has_value());
  }
}

TEST_CASE_METHOD(Fixture, "task::shutdown with brutal_kill kills at once; without, the task gets shutdown first",
                 "[otp][task]") {
  // a task that traps exits and reports the shutdown it is sent
  auto trapping = [report = mb.pid()]() -> Async<Term> {
    trap_exit(true);
    auto e = co_await receive<ExitMsg>();
    send(report, tuple(atom("got"), e.reason));
    co_await receive<Term>([](const Term& t) { return t.is_atom("never"); });
    co_return Term();
  };
  Task gentle = task::async(trapping);
  CHECK(task::shutdown(mb, gentle, 100ms) == Term(atom("nil")));  // killed after 100 ms
  auto got = mb.receive<Term>(5s);
  REQUIRE(got);
  CHECK(got->to_string() == "{got, shutdown}");
  CHECK_FALSE(is_process_alive(gentle.pid));
  Task brutal = task::async(trapping);
  CHECK(task::shutdown(mb, brutal, task::brutal_kill) == Term(atom("nil")));
  CHECK_FALSE(is_process_alive(brutal.pid));
  CHECK(mb.flush().empty());  // no {got, ...}: it was killed, never asked
  // a task that had already answered: its result
  Task quick = task::async([]() -> Async<Term> { co_return atom("early"); });
  REQUIRE(nodus::test::eventually([&] { return !is_process_alive(quick.pid); }));
  CHECK(task::shutdown(mb, quick, task::brutal_kill).to_string() == "{ok, early}");
}

TEST_CASE_METHOD(Fixture, "Task.start and start_link: nobody awaits; a linked one's crash reaches the caller",
                 "[otp][task]") {
  const Pid report = mb.pid();
  const Pid p = task::start([report]() -> Async<Term> {
    send(report, atom("ran"));
    co_return atom("ignored");
  });
  auto ran = mb.receive<Term>(5s);
  REQUIRE(ran);
  CHECK(ran->is_atom("ran"));
  REQUIRE(nodus::test::eventually([&] { return !is_process_alive(p); }));
  mb.trap_exit(true);
  const Pid l = task::start_link([]() -> Async<Term> {
    exit_self(atom("bad"));
    co_return Term();
  });
  auto e = mb.receive<ExitMsg>(5s);
  REQUIRE(e);
  CHECK(e->from == l);
  CHECK(e->reason == Term(atom("bad")));
  CHECK(mb.flush().empty());  // no result message: nobody awaits a started task
}

TEST_CASE_METHOD(Fixture, "await_many and yield_many", "[otp][task]") {
  std::vector<Task> ts;
  for (long i = 1; i <= 5; ++i) ts.push_back(task::async([i]() -> Async<Term> { co_return Term(i * 10); }));
  CHECK(Term::list(task::await_many(mb, ts)).to_string() == "[10, 20, 30, 40, 50]");
  // one of them exits: await_many fails with its reason (the caller traps, so it lives)
  mb.trap_exit(true);
  std::vector<Task> bad{task::async([]() -> Async<Term> { co_return atom("fine"); }),
                        task::async([]() -> Async<Term> {
                          exit_self(atom("broken"));
                          co_return Term();
                        })};
  try {
    (void)task::await_many(mb, bad);
    FAIL("await_many did not fail");
  } catch (const TaskError& e) {
    CHECK(e.reason == Term(atom("broken")));
    CHECK(e.exit_reason().to_string().find("await_many") != std::string::npos);
  }
  mb.trap_exit(false);
  (void)mb.flush();
  // yield_many: what is done, and nil for what is not
  std::vector<Task> mixed{task::async([]() -> Async<Term> { co_return atom("done"); }),
                          task::async([]() -> Async<Term> { co_return co_await gated(Term()); })};
  REQUIRE(nodus::test::eventually([&] { return !is_process_alive(mixed[0].pid); }));
  CHECK(Term::list(task::yield_many(mb, mixed, 100ms)).to_string() == "[{ok, done}, nil]");
  send(mixed[1].pid, atom("go"));
  std::vector<Task> rest{mixed[1]};
  CHECK(Term::list(task::yield_many(mb, rest)).to_string() == "[{ok, went}]");
  // await_many's timeout: the tasks still running are no longer watched; nothing is left behind
  std::vector<Task> slow{task::async([]() -> Async<Term> { co_return co_await gated(Term()); })};
  try {
    (void)task::await_many(mb, slow, 50ms);
    FAIL("await_many did not time out");
  } catch (const TaskError& e) {
    CHECK(e.reason == Term(atom("timeout")));
  }
  send(slow[0].pid, atom("go"));
  REQUIRE(nodus::test::eventually([&] { return !is_process_alive(slow[0].pid); }));
  CHECK(mb.flush().empty());
}

namespace {
std::atomic<int> g_running{0}, g_most{0};
// doubles its input, staying busy for a while (yields) so that tasks overlap
Async<Term> busy_double(Term x) {
  const int now = ++g_running;
  for (int seen = g_most.load(); now > seen && !g_most.compare_exchange_weak(seen, now);) {
  }
  for (int i = 0; i < 200; ++i) co_await yield();
  --g_running;
  co_return Term(x.as_int() * 2);
}

Proc stream_in_process(Pid report) {
  std::vector<Term> in{1L, 2L, 3L};
  std::vector<Term> out = co_await task::async_stream(in, busy_double, {.max_concurrency = 2});
  send(report, Term::list(std::move(out)));
}
}  // namespace

TEST_CASE_METHOD(Fixture, "async_stream: bounded concurrency, ordered or not, per-task timeouts", "[otp][task]") {
  std::vector<Term> in;
  for (long i = 1; i <= 30; ++i) in.emplace_back(i);
  g_most = 0;
  auto out = task::async_stream(mb, in, busy_double, {.max_concurrency = 3});
  REQUIRE(out.size() == 30);
  for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == tuple(atom("ok"), Term(static_cast<long>(2 * (i + 1)))));
  CHECK(g_most <= 3);
  CHECK(g_most >= 1);
  auto unordered = task::async_stream(mb, in, busy_double, {.max_concurrency = 4, .ordered = false});
  std::vector<long> got;
  for (const Term& t : unordered) got.push_back(t[1].as_int());
  std::sort(got.begin(), got.end());
  REQUIRE(got.size() == 30);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == static_cast<long>(2 * (i + 1)));
  CHECK(g_most <= 4);
  // an item that never finishes: killed, {exit, timeout} (kill_on_timeout), the rest go on
  auto f = [](Term x) -> Async<Term> {
    if (x.as_int() == 2) co_await receive<Term>([](const Term& t) { return t.is_atom("never"); });
    co_return x;
  };
  std::vector<Term> three{1L, 2L, 3L};
  auto killed = task::async_stream(mb, three, f, {.max_concurrency = 3, .timeout = 200ms, .kill_on_timeout = true});
  CHECK(Term::list(killed).to_string() == "[{ok, 1}, {exit, timeout}, {ok, 3}]");
  // by default a timeout fails the whole stream
  CHECK_THROWS_AS(task::async_stream(mb, three, f, {.timeout = 200ms}), TaskError);
  const auto left = mb.flush();
  std::string what;
  for (const auto& m : left) what += m.to_string(200) + "; ";
  INFO("left: " << what);
  CHECK(left.empty());
  // from a process body
  spawn(stream_in_process, mb.pid());
  auto r = mb.receive<Term>(10s);
  REQUIRE(r);
  CHECK(r->to_string() == "[{ok, 2}, {ok, 4}, {ok, 6}]");
}
