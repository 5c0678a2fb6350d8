// GenServer: call/cast/reply, deferred replies, stop, and the failure reasons of call.
#include <catch2/catch.hpp>

#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

struct Counter : GenServer {
  explicit Counter(Pid report = {}) : report(report) {}
  Pid report;
  long n = 0;
  std::optional<From> parked;
  CallResult handle_call(const Term& req, const From& from) override {
    if (req.is_atom("get")) return reply(n);
    if (req.is_atom("park")) {  // answered later, by `release`
      parked = from;
      if (!report.is_null()) send(report, atom("parked"));
      return noreply();
    }
    if (req.is_atom("slow")) return noreply();  // never answered
    if (req.is_atom("crash")) throw std::runtime_error("crashed in handle_call");
    if (req.is_atom("stop")) return stop(atom("normal"), atom("stopping"));
    return GenServer::handle_call(req, from);
  }
  void handle_cast(const Term& msg) override {
    if (msg.is_atom("inc")) ++n;
    if (msg.is_atom("release") && parked) gen_server::reply(*parked, atom("released"));
    if (msg.is_atom("quit")) stop_after(atom("normal"));
  }
  void handle_info(Message& m) override {
    if (m.is<Term>() && m.get<Term>().is_atom("ping") && !report.is_null()) send(report, atom("pong"));
  }
  void terminate(const Term& reason) override {
    if (!report.is_null()) send(report, tuple(atom("terminated"), reason));
  }
};

Proc caller(Pid report) {
  Term v = co_await gen_server::call(atom("counter"), atom("get"));
  send(report, tuple(atom("got"), v));
  try {
    co_await gen_server::call(atom("nobody"), atom("get"));
  } catch (const CallError& e) {
    send(report, tuple(atom("error"), e.reason, std::string(e.what())));
  }
}

}  // namespace

TEST_CASE("call, cast, info and a deferred reply", "[otp][gen_server]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  Pid s = gen_server::start(std::make_unique<Counter>(self()), {.name = atom("counter")}).value();
  gen_server::cast(atom("counter"), atom("inc"));
  gen_server::cast(s, atom("inc"));
  CHECK(gen_server::call(mb, atom("counter"), atom("get")) == Term(2));
  send(s, atom("ping"));
  CHECK(mb.receive<Term>([](const Term& t) { return t.is_atom("pong"); }, 10s));
  // a parked call is answered by a later cast (sent once the server says it parked it)
  spawn([](Pid s, Pid report) -> Proc {
    Term r = co_await gen_server::call(s, atom("park"));
    send(report, tuple(atom("park_answer"), r));
  }, s, self());
  REQUIRE(mb.receive<Term>([](const Term& t) { return t.is_atom("parked"); }, 10s));
  gen_server::cast(s, atom("release"));
  auto answer = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "park_answer"); }, 10s);
  REQUIRE(answer);
  CHECK((*answer)[1] == Term(atom("released")));
  // from a process body
  spawn(caller, self());
  auto got = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "got"); }, 10s);
  REQUIRE(got);
  CHECK((*got)[1] == Term(2));
  auto err = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "error"); }, 10s);
  REQUIRE(err);
  CHECK((*err)[1] == Term(atom("noproc")));
  // stop from a call: the reply arrives, terminate runs, the name goes away
  const Ref watch = monitor(s);
  CHECK(gen_server::call(mb, s, atom("stop")) == Term(atom("stopping")));
  auto t = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "terminated"); }, 10s);
  REQUIRE(t);
  CHECK((*t)[1] == Term(atom("normal")));
  REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == watch; }, 10s));
  CHECK_FALSE(whereis(atom("counter")).has_value());
}

TEST_CASE("call failures: noproc, timeout, a server that dies while serving, bad_call", "[otp][gen_server]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  try {
    gen_server::call(mb, atom("missing"), atom("get"));
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason == Term(atom("noproc")));
    CHECK(std::string(e.what()).find("missing") != std::string::npos);
  }
  Pid s = gen_server::start(std::make_unique<Counter>()).value();
  try {
    gen_server::call(mb, s, atom("slow"), 100ms);
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason == Term(atom("timeout")));
  }
  CHECK(is_process_alive(s));  // a timed-out call does not hurt the server
  try {
    gen_server::call(mb, s, atom("crash"));
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason.to_string().find("crashed in handle_call") != std::string::npos);
  }
  CHECK_FALSE(is_process_alive(s));
  try {
    gen_server::call(mb, s, atom("get"));  // a dead pid
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason == Term(atom("noproc")));
  }
  Pid s2 = gen_server::start(std::make_unique<Counter>()).value();
  try {
    gen_server::call(mb, s2, atom("what"));
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason.to_string() == "{bad_call, what}");
  }
  const Pid first = gen_server::start(std::make_unique<Counter>(), {.name = atom("taken")}).value();
  // OTP: {error, {already_started, Pid}}
  auto again = gen_server::start(std::make_unique<Counter>(), {.name = atom("taken")});
  REQUIRE(!again);
  CHECK(again.error().code == Errc::already_started);
  CHECK(again.error().reason == tuple(atom("already_started"), first));
  CHECK(again.to_term() == tuple(atom("error"), tuple(atom("already_started"), first)));
  CHECK_THROWS_AS(again.value(), Error);
}

TEST_CASE("a reply that comes after its call timed out is dropped, not left in the mailbox", "[otp][gen_server]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  Pid s = gen_server::start(std::make_unique<Counter>(self())).value();
  for (int round = 0; round < 3; ++round) {
    try {
      gen_server::call(mb, s, atom("park"), 50ms);  // parked: answered only by a later release
      FAIL("no timeout");
    } catch (const CallError& e) {
      CHECK(e.reason == Term(atom("timeout")));
    }
    REQUIRE(mb.receive<Term>([](const Term& t) { return t.is_atom("parked"); }, 10s));
    gen_server::cast(s, atom("release"));  // the late reply: {Tag, released} to us
    send(s, atom("ping"));                 // then 'pong', from the same sender: after the reply
    REQUIRE(mb.receive<Term>([](const Term& t) { return t.is_atom("pong"); }, 10s));
    CHECK_FALSE(mb.receive_any(0ms).has_value());  // the reply came and went
  }
  // calls still work, and an ordinary {Ref, Term} message with another ref is kept
  CHECK(gen_server::call(mb, s, atom("get")) == Term(0));
  const Ref other = make_ref();
  send(self(), tuple(Term(other), atom("mine")));
  auto kept = mb.receive_any(10s);
  REQUIRE(kept);
  CHECK(kept->is<Term>());
}

namespace {
// Calls itself, by pid or by its registered name: OTP exits the caller at once with calling_self.
Proc self_call(Pid report, bool by_name) {
  if (by_name) register_name(atom("me_myself"), self());
  Term reason = atom("none");
  try {
    (void)co_await gen_server::call(by_name ? ServerRef(atom("me_myself")) : ServerRef(self()), atom("x"), 5s);
  } catch (const CallError& e) {
    reason = e.reason;
  }
  // its own request is not waiting in its mailbox
  const bool empty = !(co_await receive<Term>([](const Term&) { return true; }, 0ms)).has_value();
  send(report, tuple(atom("error"), reason, atom(empty ? "empty" : "not_empty")));
}
}  // namespace

TEST_CASE("a call to the calling process itself fails at once with calling_self, as in OTP", "[otp][gen_server]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  for (bool by_name : {false, true}) {
    spawn(self_call, self(), by_name);
    // at once: well within the call's 5 s, and no request of its own waiting in its mailbox
    auto r = mb.receive<Term>([](const Term& t) { return t.is_tuple() && t.size() == 3; }, 2s);
    REQUIRE(r);
    CHECK((*r)[0].is_atom("error"));
    CHECK((*r)[1].is_atom("calling_self"));
    CHECK((*r)[2].is_atom("empty"));
  }
  try {  // a Mailbox thread calling its own pid
    gen_server::call(mb, mb.pid(), atom("x"), 2s);
    FAIL("no error");
  } catch (const CallError& e) {
    CHECK(e.reason == Term(atom("calling_self")));
  }
  CHECK_FALSE(mb.receive_any(0ms).has_value());
}
