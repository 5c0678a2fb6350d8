// observe: counters, process listings, mailbox lengths, the system monitor and the built-in
// functions a remote shell calls (here on this node; tests/dist/observe_test.cpp over the wire).
#include <catch2/catch.hpp>

#include <thread>

#include "nodus/nodus.hpp"
#include "nodus/testing.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

using nodus::testing::eventually;  // a condition, waited for with a deadline

Proc ends_with(Term reason) {
  if (reason.is_atom("normal")) co_return;
  if (reason.is_atom("throw")) throw std::runtime_error("boom");
  exit_self(std::move(reason));
}

Proc blocked() { co_await receive<Term>([](const Term& t) { return t.is_atom("never"); }); }

// Waits for `go`, then takes every message and reports how many.
Proc hoarder(Pid report) {
  co_await receive<Term>([](const Term& t) { return t.is_atom("go"); });
  std::size_t n = 1;
  for (;;) {
    auto m = co_await receive_any(0ms);
    if (!m) break;
    ++n;
  }
  send(report, tuple(atom("took"), static_cast<std::int64_t>(n)));
  co_await receive<Term>([](const Term& t) { return t.is_atom("never"); });
}

Proc sink(Pid report, std::int64_t expect) {
  for (std::int64_t i = 0; i < expect; ++i) (void)co_await receive_any();
  send(report, atom("all"));
  co_await receive<Term>([](const Term& t) { return t.is_atom("never"); });
}

Proc spinner(std::atomic<bool>* stop) {
  while (!stop->load()) std::this_thread::yield();  // runs without waiting
  co_return;
}

Proc crasher() {
  co_await receive<Term>([](const Term& t) { return t.is_atom("crash"); });
  throw std::runtime_error("crash");
}

}  // namespace

TEST_CASE("spawns and exits are counted by reason class", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  const observe::Stats before = observe::stats();
  std::vector<Ref> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(monitor(spawn(ends_with, Term(atom("normal")))));
  refs.push_back(monitor(spawn(ends_with, Term(atom("throw")))));
  refs.push_back(monitor(spawn(ends_with, Term(atom("shutdown")))));
  refs.push_back(monitor(spawn(ends_with, tuple(atom("shutdown"), atom("why")))));
  refs.push_back(monitor(spawn(ends_with, Term(atom("weird")))));
  const Pid victim = spawn(blocked);
  refs.push_back(monitor(victim));
  exit(victim, atom("kill"));
  for (const Ref& r : refs) REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == r; }, 10s));
  const observe::Stats after = observe::stats();
  CHECK(after.spawned - before.spawned == 105);
  CHECK(after.exited.normal - before.exited.normal == 100);
  CHECK(after.exited.exception - before.exited.exception == 1);
  CHECK(after.exited.shutdown - before.exited.shutdown == 2);
  CHECK(after.exited.killed - before.exited.killed == 1);
  CHECK(after.exited.other - before.exited.other == 1);
  CHECK(after.processes == before.processes);
  CHECK(after.node == atom("nonode@nohost"));
  REQUIRE(after.schedulers.size() == 2);
  for (const auto& s : after.schedulers) {
    CHECK(s.up_ns > 0);
    CHECK(s.busy_ns <= s.up_ns);
    CHECK(s.utilization() >= 0.0);
    CHECK(s.utilization() <= 1.0);
  }
  CHECK(after.schedulers[0].runs + after.schedulers[1].runs >= 105);
  CHECK(after.atoms > 0);
}

TEST_CASE("a mailbox's length, the top listing and messages handled", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  const Pid h = spawn(hoarder, mb.pid());
  register_name(atom("hoarder"), h);
  for (int i = 0; i < 1000; ++i) send(h, static_cast<std::int64_t>(i));
  REQUIRE(eventually([&] { return observe::process_info(h) && observe::process_info(h)->mailbox == 1000; }));
  // (woken by the last sends, it may be runnable a moment before it looks and waits again)
  REQUIRE(eventually([&] { return observe::process_info(h)->status == "waiting"; }));
  auto info = observe::process_info(h);
  CHECK(info->name == atom("hoarder"));
  CHECK(info->body.find("hoarder") != std::string::npos);
  CHECK(info->mailbox == 1000);
  CHECK(info->handled == 0);
  const auto top = observe::top(observe::SortBy::mailbox, 3);
  REQUIRE(!top.empty());
  CHECK(top[0].pid == h);
  CHECK(top[0].mailbox == 1000);
  // as a Term (what a remote shell gets) and back
  auto back = observe::process_info_from_term(observe::to_term(*info));
  REQUIRE(back);
  CHECK(back->pid == h);
  CHECK(back->mailbox == 1000);
  CHECK(back->name == atom("hoarder"));

  send(h, atom("go"));
  auto took = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "took"); }, 10s);
  REQUIRE(took);
  CHECK((*took)[1].as_int() == 1001);
  REQUIRE(eventually([&] { return observe::process_info(h)->handled == 1001; }));
  CHECK(observe::process_info(h)->mailbox == 0);
  CHECK(observe::top(observe::SortBy::handled, 1)[0].pid == h);
  CHECK_FALSE(observe::process_info(Pid{Atom(), 0, 999999, 1}));
}

TEST_CASE("concurrent senders: the length is repaired once the mailbox is empty", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  constexpr int kThreads = 4, kEach = 20000;
  const Pid s = spawn(sink, mb.pid(), std::int64_t{kThreads} * kEach);
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([s] {
      for (int i = 0; i < kEach; ++i) send(s, std::int64_t{i});
    });
  }
  for (auto& t : senders) t.join();
  REQUIRE(mb.receive<Term>([](const Term& t) { return t.is_atom("all"); }, 30s));
  REQUIRE(eventually([&] { return observe::process_info(s)->status == "waiting"; }));
  auto info = observe::process_info(s);
  CHECK(info->mailbox == 0);
  CHECK(info->handled == std::uint64_t{kThreads} * kEach);
}

TEST_CASE("supervisor restarts and give-ups are counted", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  const observe::Stats before = observe::stats();
  const Pid sup = supervisor::start({.max_restarts = 1, .max_seconds = 60s}, {supervisor::worker("c", crasher)}).value();
  auto child = [&] {
    Pid p;
    eventually([&] {
      Term kids = supervisor::which_children(mb, sup);
      if (kids.size() == 1 && kids[0][1].is_pid()) p = kids[0][1].as_pid();
      return !p.is_null();
    });
    return p;
  };
  const Pid c1 = child();
  REQUIRE(!c1.is_null());
  const Ref r1 = monitor(c1);
  send(c1, atom("crash"));
  REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == r1; }, 10s));
  Pid c2;
  REQUIRE(eventually([&] {
    Term kids = supervisor::which_children(mb, sup);
    if (kids.size() == 1 && kids[0][1].is_pid() && kids[0][1].as_pid() != c1) c2 = kids[0][1].as_pid();
    return !c2.is_null();
  }));
  CHECK(observe::stats().supervisor_restarts - before.supervisor_restarts == 1);
  const Ref rs = monitor(sup);
  send(c2, atom("crash"));  // the second restart in 60 s: past max_restarts = 1
  REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == rs; }, 10s));
  const observe::Stats after = observe::stats();
  CHECK(after.supervisor_restarts - before.supervisor_restarts == 1);
  CHECK(after.supervisor_give_ups - before.supervisor_give_ups == 1);
  CHECK(after.exited.exception - before.exited.exception == 2);
}

TEST_CASE("the system monitor reports long mailboxes and long schedules", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  const Pid b = spawn(blocked);
  observe::system_monitor({.to = mb.pid(), .long_schedule = 50ms, .long_mailbox = 500});
  for (int i = 0; i < 600; ++i) send(b, static_cast<std::int64_t>(i));
  auto ev = mb.receive<Term>([](const Term& t) { return t.is_tuple(4, "monitor") && t[2].is_atom("long_mailbox"); }, 10s);
  REQUIRE(ev);
  CHECK((*ev)[1].as_pid() == b);
  CHECK((*ev)[3][0][1].as_int() >= 500);

  std::atomic<bool> stop{false};
  const Pid sp = spawn(spinner, &stop);
  auto ls = mb.receive<Term>([](const Term& t) { return t.is_tuple(4, "monitor") && t[2].is_atom("long_schedule"); }, 10s);
  stop = true;
  REQUIRE(ls);
  CHECK((*ls)[1].as_pid() == sp);
  CHECK((*ls)[3][0][1].as_int() >= 50);
  const auto old = observe::system_monitor(observe::SystemMonitor{});
  CHECK(old.to == mb.pid());
  CHECK(observe::system_monitor().to.is_null());
}

TEST_CASE("the built-in functions answer an erpc call with the node's stats", "[otp][observe]") {
  Runtime rt{{.schedulers = 2}};
  Mailbox mb;
  const Pid b = spawn(blocked);
  for (int i = 0; i < 7; ++i) send(b, static_cast<std::int64_t>(i));
  REQUIRE(eventually([&] { return observe::process_info(b)->mailbox == 7; }));
  auto s = observe::remote_stats(mb, node::self());
  REQUIRE(s);
  CHECK(s.value().processes >= 2);
  CHECK(s.value().schedulers.size() == 2);
  auto ps = observe::remote_processes(mb, node::self(), 1, observe::SortBy::mailbox);
  REQUIRE(ps);
  REQUIRE(ps.value().size() == 1);
  CHECK(ps.value()[0].pid == b);
  CHECK(ps.value()[0].mailbox == 7);
  auto one = observe::remote_process_info(mb, b);
  REQUIRE(one);
  REQUIRE(one.value());
  CHECK(one.value()->mailbox == 7);
  auto stats_term = observe::to_term(observe::stats());
  auto parsed = observe::stats_from_term(stats_term);
  REQUIRE(parsed);
  CHECK(parsed->schedulers.size() == 2);
  CHECK_FALSE(observe::stats_from_term(Term(atom("nope"))));
}
