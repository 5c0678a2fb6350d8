// Mailboxes and selective receive: order, predicates, timeouts, flush, move-only messages.
#include <memory>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace nodus;
using namespace nodus::test;

namespace {
struct A {
  int n;
};
struct B {
  int n;
};
struct Result {
  std::vector<std::string> seen;
};
struct Go {};
struct Boxed {
  std::unique_ptr<int> v;  // move-only: proves local delivery moves
};

// Receives B first, then everything else in order; reports to `to`.
Proc selective(Pid to) {
  co_await receive<Go>();
  Result r;
  B b = co_await receive<B>();
  r.seen.push_back("B" + std::to_string(b.n));
  for (int i = 0; i < 3; ++i) {
    Message m = co_await receive_any();
    if (m.is<A>()) r.seen.push_back("A" + std::to_string(m.get<A>().n));
    if (m.is<B>()) r.seen.push_back("B" + std::to_string(m.get<B>().n));
  }
  send(to, std::move(r));
}
}  // namespace

TEST_CASE("selective receive takes the first match and keeps the rest in arrival order", "[receive]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn(selective, self());
  send(p, A{1});
  send(p, B{1});
  send(p, A{2});
  send(p, B{2});
  send(p, Go{});
  auto r = mb.receive<Result>(kWait);
  REQUIRE(r);
  CHECK(r->seen == std::vector<std::string>{"B1", "A1", "A2", "B2"});
}

TEST_CASE("receive with a predicate skips non-matching messages of the same type", "[receive]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    Term t = co_await receive<Term>([](const Term& x) { return x.is_tuple(2, "hi"); });
    send(to, t);
    Term first = co_await receive<Term>();
    send(to, first);
  }, self());
  send(p, atom("noise"));
  send(p, tuple(atom("hi"), 7));
  auto a = mb.receive<Term>(kWait);
  auto b = mb.receive<Term>(kWait);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->to_string() == "{hi, 7}");
  CHECK(b->to_string() == "noise");  // left in the mailbox, then taken
}

TEST_CASE("receive after: timeout, zero timeout, and a message beating the timeout", "[receive]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    auto none = co_await receive<A>(0ms);  // looks once, does not wait
    send(to, tuple(atom("zero"), none.has_value()));
    auto late = co_await receive<A>(30ms);
    send(to, tuple(atom("timeout"), late.has_value()));
    co_await receive<Go>();
    auto got = co_await receive<A>(10s);
    send(to, tuple(atom("got"), got ? got->n : -1));
  }, self());
  auto zero = mb.receive<Term>(kWait);
  REQUIRE(zero);
  CHECK(zero->to_string() == "{zero, false}");
  auto t = mb.receive<Term>(kWait);
  REQUIRE(t);
  CHECK(t->to_string() == "{timeout, false}");
  send(p, A{5});
  send(p, Go{});
  auto g = mb.receive<Term>(kWait);
  REQUIRE(g);
  CHECK(g->to_string() == "{got, 5}");
}

TEST_CASE("a stale timeout does not end a later receive", "[receive]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    for (int i = 0; i < 50; ++i) {
      auto a = co_await receive<A>(1s);  // each matched at once; their timers are cancelled
      if (!a) co_return;
    }
    auto b = co_await receive<B>(40ms);
    send(to, tuple(atom("b"), b.has_value()));
  }, self());
  for (int i = 0; i < 50; ++i) send(p, A{i});
  auto r = mb.receive<Term>(kWait);
  REQUIRE(r);
  CHECK(r->to_string() == "{b, false}");
}

TEST_CASE("a plain thread's mailbox: blocking receive with timeout, flush in order", "[receive][mailbox]") {
  Runtime rt;
  Mailbox mb;
  CHECK_FALSE(mb.receive<A>(20ms).has_value());
  send(self(), A{1});
  send(self(), atom("x"));
  send(self(), B{2});
  auto b = mb.receive<B>(kWait);
  REQUIRE(b);
  CHECK(b->n == 2);
  auto rest = mb.flush();
  REQUIRE(rest.size() == 2);
  CHECK(rest[0].is<A>());
  CHECK(rest[1].to_string() == "x");
  CHECK(mb.flush().empty());
  send(self(), tuple(atom("hi"), self()));
  const std::string printed = mb.flush_print();
  CHECK(printed == "{hi, " + to_string(self()) + "}\n");
}

TEST_CASE("typed messages are moved, not copied", "[receive]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    Boxed b = co_await receive<Boxed>();
    *b.v += 1;
    send(to, std::move(b));
  }, self());
  send(p, Boxed{std::make_unique<int>(41)});
  auto r = mb.receive<Boxed>(kWait);
  REQUIRE(r);
  CHECK(*r->v == 42);
}

TEST_CASE("messages from one sender arrive in order; many senders lose nothing", "[receive]") {
  Runtime rt;
  Mailbox mb;
  constexpr int senders = 50, each = 2000;
  Pid sink = spawn([](Pid to) -> Proc {
    std::vector<int> last(senders, -1);
    bool in_order = true;
    for (int i = 0; i < senders * each; ++i) {
      Term t = co_await receive<Term>();
      const auto s = t[0].as_int(), n = t[1].as_int();
      in_order = in_order && n == last[s] + 1;
      last[s] = static_cast<int>(n);
    }
    send(to, tuple(atom("done"), in_order));
  }, self());
  for (int s = 0; s < senders; ++s) {
    spawn([](Pid to, int s) -> Proc {
      for (int i = 0; i < each; ++i) send(to, tuple(s, i));
      co_return;
    }, sink, s);
  }
  auto r = mb.receive<Term>(20s);
  REQUIRE(r);
  CHECK(r->to_string() == "{done, true}");
}

TEST_CASE("sleep_for and send_after use the timer thread; cancel_timer stops one", "[receive][timer]") {  // NOLINT: names the API under test
  Runtime rt;
  Mailbox mb;
  auto t1 = send_after(20ms, self(), atom("first"));
  auto t2 = send_after(10s, self(), atom("never"));
  (void)t1;
  CHECK(cancel_timer(t2));
  CHECK_FALSE(cancel_timer(t2));
  auto m = mb.receive<Term>(kWait);
  REQUIRE(m);
  CHECK(m->to_string() == "first");
  Pid p = spawn([](Pid to) -> Proc {
    auto t0 = Clock::now();
    co_await sleep_for(30ms);  // NOLINT: the behaviour under test, not synchronization
    send(to, tuple(atom("slept"), Clock::now() - t0 >= 30ms));
  }, self());
  (void)p;
  auto s = mb.receive<Term>(kWait);
  REQUIRE(s);
  CHECK(s->to_string() == "{slept, true}");
}
