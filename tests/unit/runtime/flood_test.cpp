// Timeouts under a flood: a receive's `after`, a process's timed pause and a GenServer call time out while
// messages keep arriving faster than the process looks at them (the timeout is not a message
// queued behind them).
#include <atomic>
#include <thread>

#include "helpers.hpp"

using namespace nodus;
using namespace nodus::test;

namespace {
struct Go {};
struct Never {};

// A steady flood of small messages from a plain thread: up to kPerMs a millisecond (about 10M/s
// is what one thread reaches here), at most kCap in all (most of a second), or until stopped.
// Before timeouts were flags, a process handling one message per 1 ms pause under this
// flood did not finish its 100 rounds before the flood ended. The pacing sets the rate; it is
// not synchronization.
class Flood {
 public:
  static constexpr std::uint64_t kPerMs = 20000;
  static constexpr std::uint64_t kCap = 8'000'000;

  explicit Flood(Pid to) : thread_([this, to] { run(to); }) {}
  ~Flood() { stop(); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::uint64_t sent() const { return sent_.load(); }
  bool running() const { return sent_.load() < kCap && !stop_.load(); }

 private:
  void run(Pid to) {
    auto next = Clock::now();
    std::uint64_t n = 0;
    while (n < kCap && !stop_.load(std::memory_order_relaxed)) {
      for (std::uint64_t i = 0; i < kPerMs; ++i) send(to, Term(std::int64_t(n++)));
      sent_.store(n);
      next += std::chrono::milliseconds(1);
      std::this_thread::sleep_until(next);  // NOLINT: pacing the flood, not synchronization
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::thread thread_;
};
// Starts `p` (waiting for Go) under a flood; its report to the test's mailbox, and whether the
// flood still ran when it came.
std::pair<std::optional<Term>, bool> flooded(Mailbox& mb, Pid p) {
  send(p, Go{});
  Flood flood(p);
  auto r = mb.receive<Term>(60s);
  const bool still_flooding = flood.running();
  INFO("messages sent before the report: " << flood.sent());
  flood.stop();
  return {r, still_flooding};
}
}  // namespace

TEST_CASE("100 pauses of 1 ms in a flooded process complete while the flood runs", "[receive][flood]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    co_await receive<Go>();
    for (int i = 0; i < 100; ++i) co_await sleep_for(1ms);  // NOLINT: the behaviour under test
    send(to, atom("slept"));
  }, self());
  auto [r, still_flooding] = flooded(mb, p);
  REQUIRE(r);
  CHECK(r->to_string() == "slept");
  CHECK(still_flooding);
}

TEST_CASE("a process that handles one message per sleep keeps handling them under a flood", "[receive][flood]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn([](Pid to) -> Proc {
    co_await receive<Go>();
    for (int i = 0; i < 100; ++i) {
      (void)co_await receive_any();
      co_await sleep_for(1ms);  // NOLINT: the behaviour under test
    }
    send(to, atom("handled"));
  }, self());
  auto [r, still_flooding] = flooded(mb, p);
  REQUIRE(r);
  CHECK(r->to_string() == "handled");
  CHECK(still_flooding);
}

TEST_CASE("receive after and a GenServer call time out in a flooded process", "[receive][flood][otp]") {
  Runtime rt;
  Mailbox mb;
  // a server that never answers
  Pid silent = spawn([]() -> Proc { co_await receive<Never>(); });
  Pid p = spawn([](Pid to, Pid silent) -> Proc {
    co_await receive<Go>();
    int timeouts = 0;
    for (int i = 0; i < 20; ++i) {
      auto m = co_await receive<Never>(1ms);
      if (!m) ++timeouts;
    }
    bool call_timed_out = false;
    try {
      (void)co_await gen_server::call(silent, atom("hello"), std::chrono::milliseconds(20));
    } catch (const CallError& e) {
      call_timed_out = e.reason.is_atom("timeout");
    }
    send(to, tuple(atom("done"), timeouts, call_timed_out));
  }, self(), silent);
  auto [r, still_flooding] = flooded(mb, p);
  REQUIRE(r);
  CHECK(r->to_string() == "{done, 20, true}");
  CHECK(still_flooding);
}

TEST_CASE("a plain thread's receive times out while messages keep arriving", "[receive][flood][mailbox]") {
  Runtime rt;
  Mailbox mb;
  Flood flood(mb.pid());
  const auto t0 = Clock::now();
  auto m = mb.receive<Never>(10ms);
  const bool still_flooding = flood.running();
  flood.stop();
  CHECK_FALSE(m);
  CHECK(Clock::now() - t0 >= 10ms);
  CHECK(still_flooding);
}

TEST_CASE("a call from a process with a long mailbox does not rescan it for each reply", "[receive][otp]") {
  Runtime rt;
  Mailbox mb;
  struct Echo : GenServer {
    CallResult handle_call(const Term& req, const From&) override { return {req}; }
  };
  Pid server = gen_server::start(std::make_unique<Echo>()).value();
  // a reply that arrived before its request was made is never what a call waits for: the
  // messages left in the mailbox stay there, in order, and the calls still get their replies
  for (int i = 0; i < 100'000; ++i) send(mb.pid(), Term(std::int64_t(i)));
  for (int i = 0; i < 1000; ++i) {
    Term r = gen_server::call(mb, server, Term(std::int64_t(i)));
    REQUIRE(r.as_int() == i);
  }
  auto first = mb.receive<Term>(kWait);
  REQUIRE(first);
  CHECK(first->as_int() == 0);
}

namespace {
struct Take {
  int n;
};
// Waits for Take{n}, then takes n messages of any other kind, reports how many it got, again.
Proc taker(Pid report) {
  for (;;) {
    Take t = co_await receive<Take>();
    int got = 0;
    for (int i = 0; i < t.n; ++i) {
      if (co_await receive<Term>(kWait)) ++got;
    }
    send(report, tuple(atom("took"), got));
  }
}
}  // namespace

TEST_CASE("max_mailbox exit: a process whose mailbox passes the limit exits with mailbox_overflow", "[receive][max_mailbox]") {
  Runtime rt;
  Mailbox mb;
  Pid p = spawn_opt({.max_mailbox = {.messages = 100}}, taker, self());
  const Ref ref = monitor(p);
  // the limit counts what is in the mailbox, not what ever came: taking messages makes room
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 99; ++i) send(p, Term(i));  // 99 + the Take: at the limit, not past it
    send(p, Take{99});
    auto r = mb.receive<Term>(kWait);
    REQUIRE(r);
    CHECK(r->to_string() == "{took, 99}");
  }
  CHECK(is_process_alive(p));
  for (int i = 0; i < 101; ++i) send(p, Term(i));  // skipped by its receive<Take>: still in its mailbox
  Down d = wait_down(mb, ref);
  CHECK(d.reason.to_string() == "mailbox_overflow");
}

TEST_CASE("max_mailbox refuse: send_nosuspend says false past the limit and true once there is room", "[receive][max_mailbox]") {
  Runtime rt;
  Mailbox mb;
  // takes 50 messages once told to by an exit signal, which it traps (a message could not tell
  // it: its mailbox is full; exit signals are never refused)
  Pid p = spawn_opt({.max_mailbox = {.messages = 50, .policy = MailboxLimit::Policy::refuse}},
                    [](Pid report) -> Proc {
                      trap_exit(true);
                      (void)co_await receive<ExitMsg>();
                      int got = 0;
                      for (int i = 0; i < 50; ++i) {
                        if (co_await receive<Term>(kWait)) ++got;
                      }
                      send(report, tuple(atom("took"), got));
                      (void)co_await receive<Take>();
                    },
                    self());
  int accepted = 0;
  for (int i = 0; i < 80; ++i) accepted += send_nosuspend(p, Term(i)) ? 1 : 0;
  CHECK(accepted == 50);
  send(p, Term(999));  // a plain send past the limit is dropped (logged once)
  CHECK_FALSE(send_nosuspend(p, Term(1000)));
  exit(p, atom("go"));
  auto r = mb.receive<Term>(kWait);
  REQUIRE(r);
  CHECK(r->to_string() == "{took, 50}");
  CHECK(send_nosuspend(p, Term(1)));  // room again
  // exit signals are never refused
  const Ref ref = monitor(p);
  for (int i = 0; i < 60; ++i) (void)send_nosuspend(p, Term(i));
  exit(p, atom("kill"));
  Down d = wait_down(mb, ref);
  CHECK(d.reason.to_string() == "killed");
}
