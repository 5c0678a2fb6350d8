// Supervisor: strategies, restart types, intensity, escalation, shutdown order, dynamic children.
#include <catch2/catch.hpp>

#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::supervisor;
using namespace std::chrono_literals;

namespace {

// Reports {started, Id, Pid}; `crash` throws, `stop` ends normally, `bye` exits with shutdown.
// With `trap`, a shutdown from the supervisor is reported as {stopped, Id} before ending.
Proc member(Pid report, std::string id, bool trap) {
  if (trap) trap_exit(true);
  send(report, tuple(atom("started"), id, self()));
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ExitMsg>()) {
      send(report, tuple(atom("stopped"), id));
      exit_self(m.get<ExitMsg>().reason);
    }
    if (!m.is<Term>()) continue;
    const Term& t = m.get<Term>();
    if (t.is_atom("crash")) throw std::runtime_error("boom");
    if (t.is_atom("stop")) co_return;
    if (t.is_atom("bye")) exit_self(atom("shutdown"));
  }
}

// Ignores the supervisor's shutdown (traps exits, never ends by itself).
Proc stubborn(Pid report) {
  trap_exit(true);
  send(report, tuple(atom("started"), "stubborn", self()));
  for (;;) co_await receive<ExitMsg>();
}

ChildSpec child(Pid report, std::string id, Restart r = Restart::permanent, bool trap = false) {
  ChildSpec c = worker(id, member, report, id, trap);
  c.restart = r;
  return c;
}

struct Fixture {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;

  // the next {started, Id, Pid}
  Pid started(const std::string& id) {
    auto t = mb.receive<Term>([&](const Term& t) { return t.is_tuple(3, "started") && t[1] == Term(id); }, 10s);
    REQUIRE(t);
    return (*t)[2].as_pid();
  }
  bool restarted(const std::string& id, std::chrono::milliseconds wait = 300ms) {
    return mb.receive<Term>([&](const Term& t) { return t.is_tuple(3, "started") && t[1] == Term(id); }, wait).has_value();
  }
  Pid pid_of(const Pid& sup, const std::string& id) {
    Term kids = which_children(mb, sup);
    for (std::size_t i = 0; i < kids.size(); ++i) {
      if (kids[i][0] == Term(id)) return kids[i][1].is_pid() ? kids[i][1].as_pid() : Pid{};
    }
    return Pid{};
  }
};

}  // namespace

TEST_CASE_METHOD(Fixture, "one_for_one restarts only the child that died", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({}, {child(me, "a"), child(me, "b"), child(me, "c")}).value();
  Pid a = started("a"), b = started("b"), c = started("c");
  exit(b, atom("kill"));
  Pid b2 = started("b");
  CHECK(b2 != b);
  CHECK(pid_of(sup, "a") == a);
  CHECK(pid_of(sup, "b") == b2);
  CHECK(pid_of(sup, "c") == c);
  CHECK_FALSE(restarted("a"));
}

TEST_CASE_METHOD(Fixture, "one_for_all restarts every child", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({.strategy = Strategy::one_for_all}, {child(me, "a", Restart::permanent, true), child(me, "b"), child(me, "c", Restart::permanent, true)}).value();
  Pid a = started("a");
  started("b");
  Pid c = started("c");
  send(pid_of(sup, "b"), atom("crash"));
  // the others are shut down, last started first, then all start again in order
  auto s1 = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "stopped"); }, 10s);
  auto s2 = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "stopped"); }, 10s);
  REQUIRE(s1);
  REQUIRE(s2);
  CHECK((*s1)[1] == Term("c"));
  CHECK((*s2)[1] == Term("a"));
  CHECK(started("a") != a);
  started("b");
  CHECK(started("c") != c);
}

TEST_CASE_METHOD(Fixture, "rest_for_one restarts the child and those started after it", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({.strategy = Strategy::rest_for_one}, {child(me, "a"), child(me, "b"), child(me, "c")}).value();
  Pid a = started("a"), b = started("b"), c = started("c");
  exit(b, atom("kill"));
  CHECK(started("b") != b);
  CHECK(started("c") != c);
  CHECK_FALSE(restarted("a"));
  CHECK(pid_of(sup, "a") == a);
}

TEST_CASE_METHOD(Fixture, "restart types: permanent, transient, temporary", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({}, {child(me, "p", Restart::permanent), child(me, "t", Restart::transient),
                       child(me, "x", Restart::temporary)}).value();
  Pid p = started("p"), t = started("t"), x = started("x");
  send(p, atom("stop"));  // normal exit: a permanent child comes back anyway
  CHECK(restarted("p", 10s));
  send(t, atom("stop"));  // normal: a transient child stays down
  CHECK_FALSE(restarted("t"));
  CHECK(pid_of(sup, "t").is_null());
  CHECK(restart_child(mb, sup, "t").to_string().rfind("{ok, <", 0) == 0);
  t = started("t");
  send(t, atom("bye"));  // exit shutdown counts as normal too
  CHECK_FALSE(restarted("t"));
  CHECK(restart_child(mb, sup, "t").is_tuple(2, "ok"));
  t = started("t");
  send(t, atom("crash"));  // abnormal: restarted
  CHECK(restarted("t", 10s));
  exit(x, atom("kill"));  // temporary: never restarted, and forgotten
  CHECK_FALSE(restarted("x"));
  Term kids = which_children(mb, sup);
  CHECK(kids.size() == 2);
}

TEST_CASE_METHOD(Fixture, "intensity: 3 crashes in 5 s are tolerated, a 4th takes the supervisor down", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({}, {child(me, "w")}).value();
  const Ref watch = monitor(sup);
  Pid w = started("w");
  for (int i = 0; i < 3; ++i) {
    send(w, atom("crash"));
    w = started("w");
  }
  CHECK(is_process_alive(sup));
  CHECK_FALSE(mb.receive<Down>(100ms).has_value());
  send(w, atom("crash"));
  auto d = mb.receive<Down>(10s);
  REQUIRE(d);
  CHECK(d->ref == watch);
  CHECK(d->reason == Term(atom("shutdown")));
  CHECK_FALSE(is_process_alive(w));
}

TEST_CASE_METHOD(Fixture, "escalation: a child supervisor that gives up is restarted by its parent", "[otp][supervisor]") {
  Pid me = self();
  Pid top = start({}, {supervisor_child("inner", {.max_restarts = 1}, {child(me, "w")}), child(me, "other")}).value();
  Pid w = started("w");
  Pid other = started("other");
  Pid inner = pid_of(top, "inner");
  send(w, atom("crash"));
  w = started("w");  // one restart: within the inner intensity
  send(w, atom("crash"));  // the second: inner gives up, top restarts it (and so w)
  Pid w3 = started("w");
  CHECK(w3 != w);
  Pid inner2 = pid_of(top, "inner");
  CHECK(inner2 != inner);
  CHECK(!inner2.is_null());
  CHECK_FALSE(is_process_alive(inner));
  CHECK(pid_of(top, "other") == other);  // one_for_one at the top
  Term counts = count_children(mb, top);
  CHECK(counts.to_string() == "[{specs, 2}, {active, 2}, {supervisors, 1}, {workers, 1}]");
}

TEST_CASE_METHOD(Fixture, "shutdown stops children in reverse start order; stubborn ones are killed", "[otp][supervisor]") {
  Pid me = self();
  ChildSpec slow{"stubborn", [me] { return spawn_link(stubborn, me); }};
  slow.shutdown = 200ms;
  trap_exit(true);  // mb is the linked parent; keep it alive when the supervisor ends
  Pid sup = start({}, {child(me, "a", Restart::permanent, true), child(me, "b", Restart::permanent, true), slow,
                       child(me, "c", Restart::permanent, true)},
                  {.link = true}).value();
  started("a");
  started("b");
  Pid st = started("stubborn");
  started("c");
  const Ref ws = monitor(st);
  exit(sup, atom("shutdown"));  // from the parent: an orderly shutdown
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    auto s = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "stopped"); }, 10s);
    REQUIRE(s);
    order.push_back(std::string((*s)[1].as_binary()));
  }
  CHECK(order == std::vector<std::string>{"c", "b", "a"});
  auto d = mb.receive<Down>([&](const Down& d) { return d.ref == ws; }, 10s);
  REQUIRE(d);
  CHECK(d->reason == Term(atom("killed")));  // it ignored shutdown for 200 ms
  auto e = mb.receive<ExitMsg>(10s);
  REQUIRE(e);
  CHECK(e->from == sup);
}

TEST_CASE_METHOD(Fixture, "dynamic children: start, terminate, restart, delete, count", "[otp][supervisor]") {
  Pid me = self();
  Pid sup = start({}, {}, {.name = atom("dyn_sup")}).value();
  Term r = start_child(mb, atom("dyn_sup"), child(me, "d1"));
  REQUIRE(r.is_tuple(2, "ok"));
  CHECK(started("d1") == r[1].as_pid());
  CHECK(start_child(mb, sup, child(me, "d1")).to_string().find("already_started") != std::string::npos);
  CHECK(delete_child(mb, sup, "d1").to_string() == "{error, running}");
  CHECK(terminate_child(mb, sup, "d1") == Term(atom("ok")));
  CHECK_FALSE(is_process_alive(r[1].as_pid()));
  CHECK(pid_of(sup, "d1").is_null());
  CHECK(count_children(mb, sup).to_string() == "[{specs, 1}, {active, 0}, {supervisors, 0}, {workers, 1}]");
  CHECK(restart_child(mb, sup, "d1").is_tuple(2, "ok"));
  started("d1");
  CHECK(terminate_child(mb, sup, "d1") == Term(atom("ok")));
  CHECK(delete_child(mb, sup, "d1") == Term(atom("ok")));
  CHECK(delete_child(mb, sup, "d1").to_string() == "{error, not_found}");
  CHECK(which_children(mb, sup).to_string() == "[]");
  ChildSpec bad{"bad", []() -> Pid { throw std::runtime_error("cannot start"); }};
  CHECK(start_child(mb, sup, bad).to_string().find("cannot start") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "a child that cannot start at first stops the supervisor with the reason", "[otp][supervisor]") {
  Pid me = self();
  ChildSpec bad{"bad", []() -> Pid { throw std::runtime_error("no way"); }};
  // start waits for the children: the failure is its result, as OTP's {error, Reason}
  auto r = start({}, {child(me, "a", Restart::permanent, true), bad});
  REQUIRE(!r);
  CHECK(r.error().reason.is_tuple(2, "shutdown"));
  CHECK(r.error().reason.to_string().find("failed_to_start_child") != std::string::npos);
  CHECK(r.error().text.find("no way") != std::string::npos);
  auto s = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "stopped"); }, 10s);
  REQUIRE(s);  // the child started before it was shut down
  CHECK((*s)[1] == Term("a"));
}

TEST_CASE_METHOD(Fixture, "which_children lists the newest child first, as OTP's does", "[otp][supervisor]") {
  // Erlang 25: children a, b, c -> [c, b, a]; after start_child(d) -> [d, c, b, a]
  Pid me = self();
  Pid sup = start({}, {child(me, "a"), child(me, "b"), child(me, "c")}).value();
  auto ids = [&] {
    const Term kids = which_children(mb, sup);
    std::string out;
    for (std::size_t i = 0; i < kids.size(); ++i) out += kids[i][0].as_binary();
    return out;
  };
  CHECK(ids() == "cba");
  CHECK(start_child(mb, sup, child(me, "d")).is_tuple(2, "ok"));
  CHECK(ids() == "dcba");
}

TEST_CASE("DynamicSupervisor: children on demand, max_children, extra_arguments, terminate by pid, restarts",
          "[otp][supervisor]") {
  Runtime rt;
  Mailbox mb;
  auto sup = dynamic_supervisor::start({.max_children = 2, .extra_arguments = Term::list({Term("extra")})});
  REQUIRE(sup);
  const Pid report = mb.pid();
  ChildSpec spec{"ignored", nullptr};
  spec.start_with = [report](const Term& extra) {
    return spawn_link(member, report, extra[0].as_binary(), false);  // the id it reports: the extra argument
  };
  auto started = [&]() {
    auto m = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "started"); }, 5s);
    REQUIRE(m);
    CHECK((*m)[1] == Term("extra"));
    return (*m)[2].as_pid();
  };
  Term a = dynamic_supervisor::start_child(mb, *sup, spec);
  REQUIRE(a.is_tuple(2, "ok"));
  const Pid p1 = started();
  CHECK(a[1].as_pid() == p1);
  Term b = dynamic_supervisor::start_child(mb, *sup, spec);
  REQUIRE(b.is_tuple(2, "ok"));
  const Pid p2 = started();
  CHECK(dynamic_supervisor::start_child(mb, *sup, spec).to_string() == "{error, max_children}");
  CHECK(which_children(mb, *sup) ==
        Term::list({tuple(atom("undefined"), p2, atom("worker")), tuple(atom("undefined"), p1, atom("worker"))}));
  // terminate by pid: stopped and forgotten, which makes room
  CHECK(dynamic_supervisor::terminate_child(mb, *sup, p1) == Term(atom("ok")));
  CHECK_FALSE(is_process_alive(p1));
  CHECK(dynamic_supervisor::terminate_child(mb, *sup, p1).to_string() == "{error, not_found}");
  REQUIRE(dynamic_supervisor::start_child(mb, *sup, spec).is_tuple(2, "ok"));
  const Pid p3 = started();
  // a permanent child that crashes is restarted (with the extra arguments again)
  send(p2, atom("crash"));
  const Pid p4 = started();
  CHECK(p4 != p2);
  CHECK(count_children(mb, *sup).to_string() == "[{specs, 2}, {active, 2}, {supervisors, 0}, {workers, 2}]");
  CHECK(dynamic_supervisor::start_child(mb, *sup, spec).to_string() == "{error, max_children}");
  CHECK(supervisor::stop(mb, *sup));
  CHECK_FALSE(is_process_alive(p3));
  CHECK_FALSE(is_process_alive(p4));
  CHECK(dynamic_supervisor::start(
            {.extra_arguments = Term(atom("not_a_list"))}).error().code == Errc::badarg);
}
