// OTP fidelity: what an Erlang developer relies on, each checked against what Erlang/OTP 25
// (Elixir 1.14) does in the same scenario (the expected values below are OTP's answers).
#include <catch2/catch.hpp>

#include <spdlog/sinks/ringbuffer_sink.h>

#include <atomic>

#include "nodus/nodus.hpp"
#include "nodus/testing.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

// Captures the nodus log while it lives (added before the Runtime starts, removed after).
struct LogCapture {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  LogCapture() { logger().sinks().push_back(sink); }
  ~LogCapture() { std::erase(logger().sinks(), sink); }
  std::string text() {
    std::string all;
    for (const auto& line : sink->last_formatted()) all += line;
    return all;
  }
};

// A server whose init does what `how` says, reporting {init, Tag} to `report` first.
struct Starter : GenServer {
  Pid report;
  std::string tag;
  std::string how;
  Starter(Pid r, std::string t, std::string h = "ok") : report(r), tag(std::move(t)), how(std::move(h)) {}
  void init() override {
    send(report, tuple(atom("init"), tag));
    if (how == "stop") exit_self(atom("bad"));
    if (how == "throw") throw std::runtime_error("init blew up");
  }
  CallResult handle_call(const Term& req, const From&) override {
    if (req.is_atom("crash")) throw std::runtime_error("crash in handle_call");
    return reply(req);
  }
  void handle_cast(const Term& msg) override {
    if (msg.is_atom("boom")) exit_self(atom("boom"));
  }
  void terminate(const Term& reason) override { send(report, tuple(atom("terminate"), tag, reason)); }
  std::optional<Term> format_status() const override { return tuple(atom("state"), tag); }
};

}  // namespace

TEST_CASE("GenServer start returns after init; an init that stops gives {error, Reason}", "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  // started: init ran before start returned (its message is already here)
  auto ok = gen_server::start(std::make_unique<Starter>(mb.pid(), "a"));
  REQUIRE(ok);
  auto first = mb.receive<Term>(0ms);
  REQUIRE(first);
  CHECK(*first == tuple(atom("init"), "a"));
  // OTP: init returning {stop, bad} -> start returns {error, bad}; the process is gone
  auto bad = gen_server::start(std::make_unique<Starter>(mb.pid(), "b", "stop"));
  REQUIRE(!bad);
  CHECK(bad.error().code == Errc::init_failed);
  CHECK(bad.error().reason == Term(atom("bad")));
  CHECK(bad.to_term() == tuple(atom("error"), atom("bad")));
  auto thrown = gen_server::start(std::make_unique<Starter>(mb.pid(), "c", "throw"));
  REQUIRE(!thrown);
  CHECK(thrown.error().reason.to_string().find("init blew up") != std::string::npos);
  // the name is free again after a failed init
  auto named_bad = gen_server::start(std::make_unique<Starter>(mb.pid(), "d", "stop"), {.name = atom("fid_named")});
  REQUIRE(!named_bad);
  CHECK_FALSE(whereis(atom("fid_named")));
}

TEST_CASE("a child whose init stops fails the supervisor's start once: failed_to_start_child", "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  const Pid me = mb.pid();
  using namespace nodus::supervisor;
  auto r = start({}, {gen_server_child("good", [me] { return std::make_unique<Starter>(me, "good"); }),
                      gen_server_child("bad", [me] { return std::make_unique<Starter>(me, "bad", "stop"); })});
  // OTP: {error, {shutdown, {failed_to_start_child, bad, bad}}}, bad's init ran once
  REQUIRE(!r);
  CHECK(r.error().reason == tuple(atom("shutdown"), tuple(atom("failed_to_start_child"), "bad", atom("bad"))));
  int inits_of_bad = 0;
  while (auto m = mb.receive<Term>(0ms)) {
    if (*m == tuple(atom("init"), "bad")) ++inits_of_bad;
  }
  CHECK(inits_of_bad == 1);
}

TEST_CASE("children's inits run in start order, every time (200 supervisors of three)", "[otp][fidelity]") {
  Runtime rt({.schedulers = 4});
  Mailbox mb;
  const Pid me = mb.pid();
  using namespace nodus::supervisor;
  int in_order = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<ChildSpec> kids;
    for (const char* id : {"x", "y", "z"}) {
      std::string tag = std::to_string(round) + id;
      kids.push_back(gen_server_child(id, [me, tag] { return std::make_unique<Starter>(me, tag); }));
    }
    const Pid sup = start({}, std::move(kids)).value();
    std::string seen;
    for (int i = 0; i < 3; ++i) {
      auto m = mb.receive<Term>(10s);
      REQUIRE(m);
      seen += (*m)[1].as_binary().back();
    }
    in_order += seen == "xyz";
    REQUIRE(supervisor::stop(mb, sup).ok());
    mb.flush();  // the terminates
  }
  CHECK(in_order == 200);
}

TEST_CASE("a crashing callback runs terminate and logs a crash report; an untrapped exit signal does not",
          "[otp][fidelity]") {
  LogCapture log;
  {
    Runtime rt({.schedulers = 2});
    Mailbox mb;
    // exit(boom) in handle_cast: terminate(boom), then the report
    const Pid a = gen_server::start(std::make_unique<Starter>(mb.pid(), "cast")).value();
    mb.receive<Term>(10s);  // {init, cast}
    const Ref ra = monitor(a);
    gen_server::cast(a, atom("boom"));
    auto t = mb.receive<Term>(10s);
    REQUIRE(t);
    CHECK(*t == tuple(atom("terminate"), "cast", atom("boom")));
    auto d = mb.receive<Down>([ra](const Down& x) { return x.ref == ra; }, 10s);
    REQUIRE(d);
    CHECK(d->reason == Term(atom("boom")));
    // an exception in handle_call: terminate({exception, ...}); the caller gets that reason
    const Pid b = gen_server::start(std::make_unique<Starter>(mb.pid(), "call")).value();
    mb.receive<Term>(10s);
    try {
      gen_server::call(mb, b, atom("crash"));
      FAIL("no error");
    } catch (const CallError& e) {
      CHECK(e.reason.is_tuple(3, "exception"));
    }
    auto t2 = mb.receive<Term>(10s);
    REQUIRE(t2);
    CHECK((*t2)[0] == Term(atom("terminate")));
    CHECK((*t2)[2].is_tuple(3, "exception"));
    // an untrapped exit signal: no terminate (OTP too)
    const Pid c = gen_server::start(std::make_unique<Starter>(mb.pid(), "signal")).value();
    mb.receive<Term>(10s);
    const Ref rc = monitor(c);
    exit(c, atom("die"));
    REQUIRE(mb.receive<Down>([rc](const Down& x) { return x.ref == rc; }, 10s));
    CHECK_FALSE(mb.receive<Term>(0ms));
  }
  const std::string text = log.text();
  CHECK(testing::count_of(text, " terminating") == 2);
  CHECK(text.find("** (stop) boom") != std::string::npos);
  CHECK(text.find("Last message: {'$gen_cast', boom}") != std::string::npos);
  CHECK(text.find("State: {state, \"cast\"}") != std::string::npos);
  CHECK(text.find("crash in handle_call") != std::string::npos);
  CHECK(text.find("Last message (from ") != std::string::npos);
}

TEST_CASE("a failing task logs Elixir's crash report", "[otp][fidelity]") {
  LogCapture log;
  {
    Runtime rt({.schedulers = 2});
    Mailbox mb;
    mb.trap_exit(true);
    Task t = task::async([]() -> Async<Term> {
      exit_self(atom("boom"));
      co_return atom("never");
    });
    CHECK_THROWS_AS(task::await(mb, t), TaskError);
  }
  const std::string text = log.text();
  CHECK(text.find("Task <") != std::string::npos);
  CHECK(text.find(" terminating\n** (stop) boom") != std::string::npos);
}

namespace {
// Calls `nobody` without catching: OTP exits the caller with {noproc, {gen_server, call, ...}}.
Proc uncaught_caller() {
  co_await gen_server::call(atom("nobody"), atom("get"), 1000ms);
}
Proc self_exit(Pid report) {
  send(report, atom("before"));
  exit(self(), atom("bye"));
  send(report, atom("after"));  // Erlang: never runs
  co_return;
}
Proc link_dead(Pid report, Pid dead) {
  try {
    link(dead);
    send(report, atom("linked"));
  } catch (const Error& e) {
    send(report, tuple(atom("caught"), e.reason));
  }
  co_return;
}
}  // namespace

TEST_CASE("uncaught call failures exit with OTP's shape", "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  const Ref ref = spawn_monitor(uncaught_caller).second;
  auto d = mb.receive<Down>([ref](const Down& x) { return x.ref == ref; }, 10s);
  REQUIRE(d);
  CHECK(d->reason.to_string() == "{noproc, {gen_server, call, [nobody, get, 1000]}}");
  // a thread's CallError carries the same shape
  try {
    gen_server::call(mb, atom("nobody"), atom("get"));
  } catch (const CallError& e) {
    CHECK(e.exit_reason().to_string() == "{noproc, {gen_server, call, [nobody, get, 5000]}}");
    CHECK(e.code == Errc::noproc);
  }
}

TEST_CASE("exit(self(), R) is immediate; link to a dead pid raises noproc or, trapping, delivers it",
          "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  const Ref ref = spawn_monitor(self_exit, mb.pid()).second;
  auto d = mb.receive<Down>([ref](const Down& x) { return x.ref == ref; }, 10s);
  REQUIRE(d);
  CHECK(d->reason == Term(atom("bye")));
  auto first = mb.receive<Term>(10s);
  REQUIRE(first);
  CHECK(first->is_atom("before"));
  CHECK_FALSE(mb.receive<Term>(0ms));  // no 'after'
  // link(dead): OTP 25 raises noproc in the caller (catchable)
  auto [dead, dref] = spawn_monitor([]() -> Proc { co_return; });
  REQUIRE(mb.receive<Down>(10s));
  spawn(link_dead, mb.pid(), dead);
  auto got = mb.receive<Term>(10s);
  REQUIRE(got);
  CHECK(*got == tuple(atom("caught"), atom("noproc")));
  // trapping: {'EXIT', Pid, noproc}
  mb.trap_exit(true);
  link(dead);
  auto e = mb.receive<ExitMsg>(10s);
  REQUIRE(e);
  CHECK(e->from == dead);
  CHECK(e->reason == Term(atom("noproc")));
}

TEST_CASE("cancel_timer returns the time left, or nothing once fired", "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  TimerRef t = send_after(10s, mb.pid(), atom("late"));
  auto left = cancel_timer(t);
  REQUIRE(left);
  CHECK(*left > 5s);
  CHECK(*left <= 10s);
  CHECK_FALSE(cancel_timer(t));
  TimerRef now = send_after(0ms, mb.pid(), atom("due"));
  REQUIRE(mb.receive<Term>(10s));
  CHECK_FALSE(cancel_timer(now));
}

TEST_CASE("GenServer and Supervisor stop: terminate runs, children first, {error, noproc} after", "[otp][fidelity]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  const Pid s = gen_server::start(std::make_unique<Starter>(mb.pid(), "st")).value();
  mb.receive<Term>(10s);
  auto r = gen_server::stop(mb, s, atom("normal"));
  REQUIRE(r);
  CHECK(*r == Term(atom("ok")));
  auto t = mb.receive<Term>(0ms);  // terminate ran before stop returned
  REQUIRE(t);
  CHECK(*t == tuple(atom("terminate"), "st", atom("normal")));
  CHECK_FALSE(is_process_alive(s));
  auto again = gen_server::stop(mb, s);
  REQUIRE(!again);
  CHECK(again.error().code == Errc::noproc);
  const Pid me = mb.pid();
  struct Trapping : Starter {
    using Starter::Starter;
    void init() override {
      trap_exit(true);
      Starter::init();
    }
  };
  const Pid sup = supervisor::start({}, {supervisor::gen_server_child("k", [me] { return std::make_unique<Trapping>(me, "k"); })}).value();
  mb.receive<Term>(10s);
  REQUIRE(supervisor::stop(mb, sup).ok());
  auto kt = mb.receive<Term>(0ms);
  REQUIRE(kt);
  CHECK(*kt == tuple(atom("terminate"), "k", atom("shutdown")));
}
