// Overload across OS-process nodes: a frozen peer (SIGSTOP) and the send budget. Senders to it
// are suspended once the budget is passed (memory stays flat), resume after SIGCONT losing
// and reordering nothing; processes that talk only locally are never slowed; send_nosuspend
// says busy instead of waiting; a plain thread blocks.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nodus/portmapper.hpp"
#include "harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

// The peer and this test use a long tick: a 20 s freeze must not end in a nodedown (that is
// the partition tests' subject), so the budget alone has to hold the senders.
constexpr auto kTick = 120s;
constexpr std::size_t kBudget = std::size_t(1) << 20;  // NodeOptions' default

// ------------------------------------------------------------------------------ the peer

// {seq, Sender, N, _}: checks each sender's numbers come in order with no gap or duplicate;
// {report, From} -> {report, Count, Bad, self()}; {size, From, Bin} -> {size, byte_size(Bin)};
// {whereis, From, Name} -> {whereis, Pid};
// anything else is dropped.
Proc seqsink() {
  std::vector<std::pair<Pid, std::int64_t>> last;
  std::int64_t count = 0, bad = 0;
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple(4, "seq")) {
      const Pid from = t[1].as_pid();
      const std::int64_t n = t[2].as_int();
      auto it = std::find_if(last.begin(), last.end(), [&](auto& e) { return e.first == from; });
      if (it == last.end()) {
        last.emplace_back(from, 0);
        it = last.end() - 1;
      }
      if (n != it->second + 1) ++bad;
      it->second = n;
      ++count;
    } else if (t.is_tuple(2, "report")) {
      send(t[1].as_pid(), tuple(atom("report"), count, bad, self()));
    } else if (t.is_tuple(3, "whereis")) {
      send(t[1].as_pid(), tuple(atom("whereis"), whereis(t[2].as_atom()).value_or(Pid{})));
    } else if (t.is_tuple(3, "size")) {
      send(t[1].as_pid(), tuple(atom("size"), static_cast<std::int64_t>(t[2].as_binary().size())));
    }
  }
}

// <binary> --nodus-peer NAME COOKIE [TICK_MS]
int overload_peer(int argc, char** argv) {
  if (argc < 4) return 2;
  TermSignals term;
  Runtime rt;
  const auto tick = argc > 4 ? std::chrono::milliseconds(std::stol(argv[4])) : std::chrono::milliseconds(kTick);
  // everything registered before the node is up: whoever can ping it finds it all
  std::optional<Node> node;
  register_name(atom("seqsink"), spawn(seqsink));
  // a slow receiver with a bounded mailbox: one message per millisecond, at most 2000 waiting
  register_name(atom("slow"), spawn_opt({.max_mailbox = {.messages = 2000}}, []() -> Proc {
    for (;;) {
      (void)co_await receive<Term>();
      co_await sleep_for(1ms);  // NOLINT: its pace
    }
  }));
  task::register_function("Test.big", [](Term args) -> Async<Term> {
    co_return Term(std::string(static_cast<std::size_t>(args[0].as_int()), 'r'));
  });
  task_supervisor::start({.name = atom("Test.TaskSupervisor")});
  node.emplace(NodeOptions{.name = argv[2], .cookie = argv[3], .ticktime = tick});
  term.wait();
  return 0;
}
const bool kPeerInstalled = (peer_main = &overload_peer, watchdog_seconds = 400, true);

// ------------------------------------------------------------------------------ helpers

// Under ASan, freed memory waits in a quarantine (256 MB by default) before it is reused, which
// the RSS bounds below would count as ours: keep it small (unused without ASan).
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"; }

std::size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

struct Cluster {
  std::uint16_t port = next_portmapper_port();
  Child pm{{NODUS_PORTMAPPER_TOOL, "--port", std::to_string(port)}, "pm" + std::to_string(port)};
  Cluster() {
    ::setenv("NODUS_PORTMAPPER_PORT", std::to_string(port).c_str(), 1);
    // up before any node starts, or a node would start (and leave behind) one of its own
    REQUIRE(eventually([&] { return dist::PortmapperClient("127.0.0.1", port).names(nullptr).has_value(); }));
  }
};

// This test process as alex@localhost and this binary as the peer kate@localhost, both with
// `tick`, on a private port mapper; up once kate answers a ping.
struct Pair {
  Cluster cl;
  Child kate;
  Runtime rt;
  Node node;
  const Atom peer = atom("kate@localhost");
  Pair(const std::string& tag, std::chrono::milliseconds tick)
      : kate({self_exe(), "--nodus-peer", "kate@localhost", "secret", std::to_string(tick.count())},
             tag + std::to_string(cl.port)),
        node({.name = "alex@localhost", .cookie = "secret", .ticktime = tick}) {
    REQUIRE(eventually([&] { return node::ping(peer, 1s); }, 20s));
  }
};

// What the streaming senders share with the test.
struct Stream {
  std::atomic<std::int64_t> sent{0};          // messages, all senders
  std::atomic<std::int64_t> longest_wait_ms{0};  // the longest a sender's yield took
  std::atomic<std::int64_t> local_rounds{0};  // the local ping-pong's round trips
  std::atomic<bool> stop{false};
};

// Streams ~100-byte {seq, self(), N, Pad} to {seqsink, peer}, yielding every 50 messages and
// timing each yield: a sender the budget holds sees one yield take as long as the freeze.
Proc sender(Stream* s, Atom peer) {
  const Term pad = Term(std::string(64, 'x'));
  std::int64_t n = 0;
  while (!s->stop.load()) {
    for (int i = 0; i < 50; ++i) send(atom("seqsink"), peer, tuple(atom("seq"), self(), ++n, pad));
    s->sent.fetch_add(50);
    const auto t0 = Clock::now();
    co_await yield();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    if (ms > s->longest_wait_ms.load()) s->longest_wait_ms.store(ms);
  }
}

Proc ponger() {
  for (;;) {
    Term from = co_await receive<Term>();  // a pid travels as a Term
    send(from.as_pid(), atom("pong"));
  }
}
Proc pinger(Stream* s) {
  Pid p = spawn(ponger);
  while (!s->stop.load()) {
    send(p, self());
    (void)co_await receive<Term>();
    s->local_rounds.fetch_add(1);
  }
  exit(p, atom("kill"));
}

}  // namespace

TEST_CASE("a frozen peer: its senders are held within the send budget, resume after SIGCONT, lose nothing; local work goes on",
          "[distributed][budget]") {
  const int senders = GENERATE(1, 64);
  INFO(senders << " senders");
  Pair pair("stall-kate", kTick);
  const Atom peer = pair.peer;
  Stream s;
  spawn(pinger, &s);
  for (int i = 0; i < senders; ++i) spawn(sender, &s, peer);
  REQUIRE(eventually([&] { return s.sent >= 200'000; }, 60s));  // flowing
  const std::size_t rss0 = rss_bytes();
  const auto frozen_at = Clock::now();
  pair.kate.signal(SIGSTOP);
  // 20 s of freeze (the fault's length, not a synchronisation), sampling our RSS meanwhile
  std::size_t rss_max = rss0;
  std::int64_t rounds_at = -1;
  while (Clock::now() < frozen_at + 20s) {
    std::this_thread::sleep_for(100ms);  // NOLINT: the sampling pace during the fault
    rss_max = std::max(rss_max, rss_bytes());
    if (rounds_at < 0 && Clock::now() > frozen_at + 2s) rounds_at = s.local_rounds;  // the budget holds by now
  }
  const std::int64_t local_during = s.local_rounds - rounds_at;
  const std::int64_t sent_at_resume = s.sent;
  pair.kate.signal(SIGCONT);
  const bool resumed = eventually([&] { return s.sent >= sent_at_resume + 200'000; }, 60s);
  s.stop = true;
  INFO("RSS before " << rss0 / 1024 << " KiB, at most " << rss_max / 1024 << " KiB during the freeze");
  CHECK(rss_max <= rss0 + kBudget + (32u << 20));
  INFO("longest yield " << s.longest_wait_ms << " ms");
  CHECK(s.longest_wait_ms >= 10'000);  // held for most of the freeze
  INFO("local round trips in the last 18 s of the freeze: " << local_during);
  CHECK(local_during >= 1000);
  CHECK(resumed);
  // nothing lost, reordered or duplicated (the peer was never declared down)
  CHECK(node::list() == std::vector<Atom>{peer});
  Mailbox mb;
  const std::int64_t total = s.sent;
  std::optional<Term> r;
  REQUIRE(eventually([&] {
    send(atom("seqsink"), peer, tuple(atom("report"), mb.pid()));
    r = mb.receive<Term>(5s);
    return r && (*r)[1].as_int() >= total;
  }, 60s));
  CHECK((*r)[2].as_int() == 0);
}

TEST_CASE("send_nosuspend says busy to a frozen peer, not to local processes; a plain thread's send blocks until SIGCONT",
          "[distributed][budget]") {
  Pair pair("nosusp-kate", kTick);
  const Atom peer = pair.peer;
  Mailbox mb;
  send(atom("seqsink"), peer, tuple(atom("report"), mb.pid()));
  auto rep = mb.receive<Term>(10s);
  REQUIRE(rep);
  const Pid sink = (*rep)[3].as_pid();  // kate's
  const std::size_t rss0 = rss_bytes();
  pair.kate.signal(SIGSTOP);
  // a process sends 1 KB messages with send_nosuspend until one is refused
  spawn([](Pid to, Pid report) -> Proc {
    const Term pad = Term(std::string(1000, 'y'));
    std::int64_t ok = 0;
    bool busy = false;
    while (!busy) {
      for (int i = 0; i < 100 && !busy; ++i) {
        if (send_nosuspend(to, tuple(atom("pad"), pad))) {
          ++ok;
        } else {
          busy = true;
        }
      }
      co_await yield();
    }
    const bool local_ok = send_nosuspend(self(), atom("local"));
    send(report, tuple(atom("busy"), ok, local_ok));
  }, sink, mb.pid());
  auto busy = mb.receive<Term>(60s);
  REQUIRE(busy);
  INFO(busy->to_string());
  CHECK((*busy)[1].as_int() * 1000 < std::int64_t(64) << 20);  // the budget and the kernel's buffers
  CHECK((*busy)[2].to_string() == "true");
  // a plain thread sending 100 MB to the frozen peer: blocked in send, not buffering it all
  std::atomic<std::int64_t> thread_sent{0};
  std::atomic<bool> thread_done{false};
  std::thread t([&] {
    Mailbox own;
    const Term pad = Term(std::string(1000, 'z'));
    for (int i = 0; i < 100'000; ++i) {
      send(sink, tuple(atom("pad"), pad));
      ++thread_sent;
    }
    thread_done = true;
  });
  std::this_thread::sleep_for(3s);  // NOLINT: the freeze's length: unblocked, 100 MB takes well under a second
  const bool done_while_frozen = thread_done;
  const std::size_t rss_frozen = rss_bytes();
  pair.kate.signal(SIGCONT);
  const bool finished = eventually([&] { return thread_done.load(); }, 120s);
  if (!finished) pair.kate.signal(SIGKILL);  // (lets the thread go: the channel fails)
  t.join();
  INFO("thread sent " << thread_sent << " while frozen; RSS +" << (rss_frozen - rss0) / 1024 << " KiB");
  CHECK_FALSE(done_while_frozen);
  CHECK(rss_frozen <= rss0 + kBudget + (32u << 20));
  CHECK(finished);
}

TEST_CASE("a frozen peer is still declared down within its tick while senders are held; they resume and see noconnection",
          "[distributed][budget]") {
  Pair pair("held-down-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  send(atom("seqsink"), peer, tuple(atom("report"), mb.pid()));
  auto rep = mb.receive<Term>(10s);
  REQUIRE(rep);
  const Pid sink = (*rep)[3].as_pid();
  node::monitor(peer);
  std::atomic<std::int64_t> longest_ms{0};
  // 16 senders stream to the sink with a monitor on it; each reports the reason of its Down
  for (int i = 0; i < 16; ++i) {
    spawn([](Pid to, Pid report, std::atomic<std::int64_t>* longest) -> Proc {
      const Ref mref = monitor(to);
      const Term pad = Term(std::string(200, 'p'));
      std::int64_t n = 0;
      for (;;) {
        for (int k = 0; k < 50; ++k) send(to, tuple(atom("seq"), self(), ++n, pad));
        const auto t0 = Clock::now();
        auto d = co_await receive<Down>([&](const Down& x) { return x.ref == mref; }, 0ms);
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
        if (ms > longest->load()) longest->store(ms);
        if (d) {
          send(report, tuple(atom("sender_down"), d->reason));
          co_return;
        }
      }
    }, sink, mb.pid(), &longest_ms);
  }
  REQUIRE(eventually([&] { return longest_ms.load() >= 0; }));
  pair.kate.signal(SIGSTOP);
  auto nodedown = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "nodedown"); }, 30s);
  int noconnection = 0;
  for (int i = 0; i < 16; ++i) {
    auto d = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "sender_down"); }, 30s);
    if (d && (*d)[1].is_atom("noconnection")) ++noconnection;
  }
  pair.kate.signal(SIGCONT);
  REQUIRE(nodedown);
  CHECK(noconnection == 16);
  INFO("the longest a sender waited: " << longest_ms << " ms");
  CHECK(longest_ms >= 200);  // held: the budget filled long before the tick ran out
}

TEST_CASE("large messages go in fragments: 40 and 70 MiB arrive whole and in order with small ones; the connection stays",
          "[distributed][fragment]") {
  Pair pair("big-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  send(atom("seqsink"), peer, tuple(atom("size"), mb.pid(), Term(std::string(100, 's'))));
  send(atom("seqsink"), peer, tuple(atom("size"), mb.pid(), Term(std::string(40u << 20, 'm'))));
  send(atom("seqsink"), peer, tuple(atom("size"), mb.pid(), Term(std::string(70u << 20, 'l'))));
  send(atom("seqsink"), peer, tuple(atom("size"), mb.pid(), Term(std::string(200, 's'))));
  std::vector<std::string> got;
  for (int i = 0; i < 4; ++i) {
    auto r = mb.receive<Term>(60s);
    REQUIRE(r);
    got.push_back(r->to_string());
  }
  CHECK(got == std::vector<std::string>{"{size, 100}", "{size, 41943040}", "{size, 73400320}", "{size, 200}"});
  CHECK(node::list() == std::vector<Atom>{peer});  // never dropped
}

TEST_CASE("fragments keep each sender's order: 8 processes mixing 1 MiB and small messages, nothing lost or reordered",
          "[distributed][fragment]") {
  Pair pair("mix-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  constexpr int kSenders = 8, kEach = 300;
  for (int s = 0; s < kSenders; ++s) {
    spawn([](Atom to, Pid done, int seed) -> Proc {
      const Term big(std::string(1u << 20, 'B'));
      const Term small(std::string(20, 's'));
      for (int n = 1; n <= kEach; ++n) {
        // every 7th (shifted per sender) is large; a few in a row without a suspension point
        send(atom("seqsink"), to, tuple(atom("seq"), self(), std::int64_t(n), (n + seed) % 7 == 0 ? big : small));
        if (n % 3 == 0) co_await yield();
      }
      send(done, atom("sent"));
    }, peer, mb.pid(), s);
  }
  for (int s = 0; s < kSenders; ++s) REQUIRE(mb.receive<Term>(60s));
  std::optional<Term> r;
  REQUIRE(eventually([&] {
    send(atom("seqsink"), peer, tuple(atom("report"), mb.pid()));
    r = mb.receive<Term>([](const Term& t) { return t.is_tuple(4, "report"); }, 5s);
    return r && (*r)[1].as_int() >= kSenders * kEach;
  }, 60s));
  CHECK((*r)[1].as_int() == kSenders * kEach);
  CHECK((*r)[2].as_int() == 0);  // out of order or missing
}

TEST_CASE("a remote task's large result comes before its exit: await gets it, 20 times", "[distributed][fragment]") {
  Pair pair("task-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  const ServerRef sup(atom("Test.TaskSupervisor"), peer);
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    const std::int64_t size = (1 << 20) + i * 4099;
    Task t = task_supervisor::async(mb, sup, "Test.big", Term::list({Term(size)}));
    const Term r = task::await(mb, t, 30s);
    if (r.is_binary() && static_cast<std::int64_t>(r.as_binary().size()) == size) ++ok;
  }
  CHECK(ok == 20);
}

TEST_CASE("64 MiB messages streaming to a peer with a 1 s tick: small round trips keep going, the connection stays up",
          "[distributed][fragment]") {
  Pair pair("hol-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  node::monitor(peer);
  std::atomic<bool> stop{false};
  std::atomic<int> bigs{0};
  spawn([](std::atomic<bool>* stop, std::atomic<int>* bigs, Atom to) -> Proc {
    const Term big(std::string(64u << 20, 'x'));
    while (!stop->load()) {
      send(atom("seqsink"), to, tuple(atom("big"), big));  // dropped there
      ++*bigs;
      co_await yield();
    }
  }, &stop, &bigs, peer);
  // round trips until 8 large messages have gone (several ticks' worth), each answered
  int rounds = 0;
  bool all_answered = true;
  while (bigs < 8 && all_answered) {
    send(atom("seqsink"), peer, tuple(atom("size"), mb.pid(), Term("x")));
    all_answered = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "size"); }, 30s).has_value();
    ++rounds;
  }
  stop = true;
  INFO(rounds << " round trips while " << bigs << " x 64 MiB went");
  CHECK(all_answered);
  CHECK(rounds >= 100);
  CHECK_FALSE(mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "nodedown"); }, 0ms));
  CHECK(node::list() == std::vector<Atom>{peer});
}

TEST_CASE("a slow remote receiver with max_mailbox exits with mailbox_overflow; the sender's memory stays bounded",
          "[distributed][budget][max_mailbox]") {
  Pair pair("slow-kate", 1000ms);
  const Atom peer = pair.peer;
  Mailbox mb;
  send(atom("seqsink"), peer, tuple(atom("whereis"), mb.pid(), atom("slow")));
  auto w = mb.receive<Term>(10s);
  REQUIRE(w);
  const Ref ref = monitor((*w)[1].as_pid());
  const std::size_t rss0 = rss_bytes();
  const Term pad(std::string(100, 'w'));
  for (int i = 0; i < 20'000; ++i) send(atom("slow"), peer, tuple(atom("w"), i, pad));
  auto d = mb.receive<Down>([&](const Down& x) { return x.ref == ref; }, 60s);
  REQUIRE(d);
  CHECK(d->reason.to_string() == "mailbox_overflow");
  CHECK(rss_bytes() <= rss0 + kBudget + (32u << 20));
  CHECK(node::list() == std::vector<Atom>{peer});
}

TEST_CASE("a sender held on a frozen peer still acts on exit signals: kill ends it at once", "[distributed][budget]") {
  Pair pair("kill-held-kate", kTick);
  const Atom peer = pair.peer;
  Mailbox mb;
  Stream s;
  std::vector<std::pair<Pid, Ref>> senders;
  for (int i = 0; i < 4; ++i) {
    const Pid p = spawn(sender, &s, peer);
    senders.emplace_back(p, monitor(p));
  }
  REQUIRE(eventually([&] { return s.sent >= 100'000; }, 60s));
  pair.kate.signal(SIGSTOP);
  // held once the budget is full (their yields stop coming back)
  const bool held = eventually([&] {
    const auto before = s.sent.load();
    std::this_thread::sleep_for(300ms);  // NOLINT: a window to see the count stand still
    return s.sent.load() == before;
  }, 30s);
  for (auto& [p, ref] : senders) exit(p, atom("kill"));
  int killed = 0;
  for (auto& [p, ref] : senders) {
    auto d = mb.receive<Down>([&](const Down& x) { return x.ref == ref; }, 20s);
    if (d && d->reason.is_atom("killed")) ++killed;
  }
  const bool still_up = node::list() == std::vector<Atom>{peer};  // the tick is 120 s: not down yet
  pair.kate.signal(SIGCONT);
  s.stop = true;
  CHECK(held);
  CHECK(killed == 4);
  CHECK(still_up);
}
