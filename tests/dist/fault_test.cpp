// Faults across OS-process nodes: partitions between two network namespaces (hosts joined by a
// veth pair) and kill -9 churn over four nodes, in cookie and CURVE mode. A node must never
// abort or hang: after each fault, every pair reconnects on its own.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

// ------------------------------------------------------------------------------ the peer

// {From, ping} -> {echo, <this node>}
Proc echo() {
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple() && t.elems().size() == 2 && t[0].is_pid()) send(t[0].as_pid(), tuple(atom("echo"), node::self()));
  }
}

// Every 200 ms pings each peer's echo; prints `up PEER` when one answers after being down (or
// for the first time) and `down PEER` when its nodedown comes.
Proc driver(std::vector<Atom> peers) {
  std::map<std::uint32_t, bool> up, watched;
  for (;;) {
    for (Atom p : peers) {
      if (!watched[p.id()]) {
        node::monitor(p);
        watched[p.id()] = true;
      }
      send(atom("echo"), p, tuple(self(), atom("ping")));
    }
    for (;;) {
      auto t = co_await receive<Term>(200ms);  // the pace of the pings
      if (!t) break;
      if (t->is_tuple(2, "echo") && t->elems()[1].is_atom()) {
        const Atom who = (*t)[1].as_atom();
        if (!up[who.id()]) {
          up[who.id()] = true;
          std::printf("up %s\n", std::string(who.name()).c_str());
          std::fflush(stdout);
        }
      } else if (t->is_tuple(2, "nodedown") && (*t)[1].is_atom()) {
        const Atom who = (*t)[1].as_atom();
        watched[who.id()] = false;
        if (up[who.id()]) {
          up[who.id()] = false;
          std::printf("down %s\n", std::string(who.name()).c_str());
          std::fflush(stdout);
        }
      }
    }
  }
}

// {seq, N}: prints `gap A B` (N jumped from A to B > A + 1), `dup N`, `back N` as they come;
// {seq_end, N} prints `sink done COUNT LAST`.
Proc seqsink() {
  SeqCheck seq;
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple(2, "seq")) {
      const std::int64_t n = t[1].as_int(), before = seq.last;
      switch (seq.see(n)) {
        case SeqCheck::Seen::next: break;
        case SeqCheck::Seen::gap: std::printf("gap %lld %lld\n", static_cast<long long>(before), static_cast<long long>(n)); break;
        case SeqCheck::Seen::dup: std::printf("dup %lld\n", static_cast<long long>(n)); break;
        case SeqCheck::Seen::back: std::printf("back %lld\n", static_cast<long long>(n)); break;
      }
      std::fflush(stdout);
    } else if (t.is_tuple(2, "seq_end")) {
      std::printf("sink done %lld %lld\n", static_cast<long long>(seq.count), static_cast<long long>(seq.last));
      std::fflush(stdout);
    }
  }
}

// Streams {seq, 1..total} to {seqsink, peer}: windows of 100, each closed by an ack round trip
// through the peer's echo, then the next after a 10 ms timer (~10k messages/s). A nodedown ends the window at
// once and prints `down_at N` (the first number sent after it); starts once the peer answers a
// ping, ends with {seq_end, total}
// and `stream done`.
Proc streamer(Atom peer, std::int64_t total) {
  // the peer is up first (each ping waits up to 1 s for its answer)
  for (const auto until = Clock::now() + 60s; !node::ping(peer, 1s) && Clock::now() < until;) co_await yield();
  node::monitor(peer);
  std::int64_t n = 0;
  while (n < total) {
    for (int i = 0; i < 100 && n < total; ++i) send(atom("seqsink"), peer, tuple(atom("seq"), ++n));
    send(atom("echo"), peer, tuple(self(), atom("ack")));
    for (;;) {
      auto t = co_await receive<Term>(30s);
      if (!t) break;  // (the sink's report shows what was lost)
      if (t->is_tuple(2, "echo")) break;
      if (t->is_tuple(2, "nodedown")) {
        std::printf("down_at %lld\n", static_cast<long long>(n + 1));
        std::fflush(stdout);
        node::monitor(peer);
        break;
      }
    }
    // the stream's rate: the next window when a 10 ms timer says so
    send_after(10ms, self(), atom("next_window"));
    (void)co_await receive<Term>([](const Term& t) { return t.is_atom("next_window"); });
  }
  send(atom("seqsink"), peer, tuple(atom("seq_end"), total));
  std::printf("stream done\n");
  std::fflush(stdout);
}

// <binary> --nodus-peer NAME SECRET PORT [PEER=tcp://ADDR:PORT ...]; SECRET is a cookie or
// curve=KEYFILE,ALLOW. $NODUS_TEST_TICK: the tick in ms (1000); $NODUS_TEST_STREAM=TOTAL: stream
// that many {seq, N} to the first peer's seqsink.
int fault_peer(int argc, char** argv) {
  if (argc < 5) return 2;
  TermSignals term;
  Runtime rt;
  const char* tick = std::getenv("NODUS_TEST_TICK");
  NodeOptions o{.name = argv[2], .cookie = argv[3], .ticktime = std::chrono::milliseconds(tick ? std::atol(tick) : 1000),
                .listen_port = static_cast<std::uint16_t>(std::stoi(argv[4])), .use_portmapper = false};
  if (std::string_view(argv[3]).rfind("curve=", 0) == 0) {
    const std::string spec = std::string(argv[3]).substr(6);
    o.cookie.clear();
    o.curve = load_curve(spec.substr(0, spec.find(',')), spec.substr(spec.find(',') + 1));
  }
  std::vector<Atom> peers;
  for (int i = 5; i < argc; ++i) {
    const std::string p = argv[i];
    o.peers.emplace_back(p.substr(0, p.find('=')), p.substr(p.find('=') + 1));
    peers.push_back(atom(p.substr(0, p.find('='))));
  }
  // registered before the node comes up: a peer that reaches it (a pong) finds them (the
  // sink registered after it once lost the first 70 messages of a stream: `gap 0 71`)
  register_name(atom("echo"), spawn(echo));
  register_name(atom("seqsink"), spawn(seqsink));
  Node node(o);
  spawn(driver, peers);
  if (const char* total = std::getenv("NODUS_TEST_STREAM"); total && !peers.empty()) {
    spawn(streamer, peers[0], static_cast<std::int64_t>(std::atoll(total)));
  }
  std::fprintf(stderr, "peer %s ready\n", argv[2]);
  term.wait();
  return 0;
}
const bool kPeerInstalled = (peer_main = &fault_peer, true);
const bool kLongTests = (watchdog_seconds = 800, true);  // 150 s of churn, and partitions

int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// Two hosts: network namespaces joined by a veth pair, 10.213.X.1 and 10.213.X.2, removed
// again at the end (also when the test fails).
struct Hosts {
  std::string a, b, va, vb, ip_a, ip_b, why;
  bool ok = false;
  Hosts() {
    const int x = static_cast<int>(::getpid() % 200) + 20;
    const std::string tag = std::to_string(::getpid());
    a = "nodusA" + tag;
    b = "nodusB" + tag;
    va = "nva" + tag;
    vb = "nvb" + tag;
    ip_a = "10.213." + std::to_string(x) + ".1";
    ip_b = "10.213." + std::to_string(x) + ".2";
    const std::vector<std::string> steps = {
        "ip netns add " + a, "ip netns add " + b,
        "ip link add " + va + " netns " + a + " type veth peer name " + vb + " netns " + b,
        "ip -n " + a + " addr add " + ip_a + "/24 dev " + va, "ip -n " + b + " addr add " + ip_b + "/24 dev " + vb,
        "ip -n " + a + " link set " + va + " up", "ip -n " + b + " link set " + vb + " up",
        "ip -n " + a + " link set lo up", "ip -n " + b + " link set lo up"};
    for (const auto& s : steps) {
      if (run(s) != 0) {
        why = "`" + s + "` failed (needs root and network namespaces)";
        return;
      }
    }
    ok = true;
  }
  ~Hosts() {
    run("ip netns del " + a);
    run("ip netns del " + b);
  }
  void link(bool up) { REQUIRE(run("ip -n " + a + " link set " + va + (up ? " up" : " down")) == 0); }
};

// Where namespaces cannot be made, says so (the "Excluding tags" line) and the test returns.
bool netns_or_skip(const Hosts& hosts) { return nodus::test::netns_or_skip(hosts.ok, hosts.why); }

std::vector<std::string> curve_or_cookie(bool curve, const CurveKeys& keys, const std::string& who) {
  return {curve ? "curve=" + keys.key_file(who) + "," + keys.allow() : "secret"};
}

}  // namespace

TEST_CASE("partitions between two hosts: both sides see nodedown, and the pair reconnects (5 runs)",
          "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  const bool curve = GENERATE(false, true);
  INFO((curve ? "CURVE" : "cookie"));
  CurveKeys keys({"kate", "alex"});
  const std::string kate = "kate@" + hosts.ip_a, alex = "alex@" + hosts.ip_b;
  auto start = [&](const std::string& ns, const std::string& me, const std::string& key, const std::string& peer,
                   const std::string& peer_ip) {
    return std::make_unique<Child>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns, self_exe(), "--nodus-peer", me,
                                 curve_or_cookie(curve, keys, key)[0], "4000", peer + "=tcp://" + peer_ip + ":4000"},
        "part-" + key + (curve ? "-curve" : ""));
  };
  auto k = start(hosts.a, kate, "kate", alex, hosts.ip_b);
  auto a = start(hosts.b, alex, "alex", kate, hosts.ip_a);
  REQUIRE(eventually([&] { return count_of(k->out(), "up " + alex) == 1 && count_of(a->out(), "up " + kate) == 1; },
                     20s));
  for (std::size_t round = 1; round <= 5; ++round) {
    INFO("partition " << round);
    hosts.link(false);
    const bool down = eventually([&] {
      return count_of(k->out(), "down " + alex) == round && count_of(a->out(), "down " + kate) == round;
    }, 20s);
    hosts.link(true);
    INFO("kate out:\n" << k->out() << "kate err:\n" << k->err() << "alex out:\n" << a->out() << "alex err:\n" << a->err());
    REQUIRE(down);
    REQUIRE(eventually([&] {
      return count_of(k->out(), "up " + alex) == round + 1 && count_of(a->out(), "up " + kate) == round + 1;
    }, 30s));
  }
  CHECK(k->running());
  CHECK(a->running());
  CHECK(k->err().find("Assertion") == std::string::npos);
  CHECK(a->err().find("Assertion") == std::string::npos);
}

TEST_CASE("kill -9 churn over four nodes: every restart is seen and reconnected by all (CURVE)", "[distributed][churn]") {
  const char* env = std::getenv("NODUS_CHURN_SECONDS");
  const auto seconds = std::chrono::seconds(env ? std::atoi(env) : 150);
  const std::vector<std::string> names = {"n0", "n1", "n2", "n3"};
  CurveKeys keys(names);
  std::vector<std::uint16_t> ports;
  for (std::size_t i = 0; i < names.size(); ++i) ports.push_back(free_port());
  auto full = [&](std::size_t i) { return names[i] + "@localhost"; };
  std::vector<std::unique_ptr<Child>> nodes(names.size());
  std::vector<int> incarnation(names.size(), 0);
  auto start = [&](std::size_t i) {
    std::vector<std::string> args = {self_exe(), "--nodus-peer", full(i),
                                     "curve=" + keys.key_file(names[i]) + "," + keys.allow(), std::to_string(ports[i])};
    for (std::size_t j = 0; j < names.size(); ++j) {
      if (j != i) args.push_back(full(j) + "=tcp://127.0.0.1:" + std::to_string(ports[j]));
    }
    nodes[i] = std::make_unique<Child>(args, "churn-" + names[i] + "-" + std::to_string(++incarnation[i]));
  };
  auto sees_all = [&](std::size_t i) {
    const std::string out = nodes[i]->out();
    for (std::size_t j = 0; j < names.size(); ++j) {
      if (j != i && out.find("up " + full(j)) == std::string::npos) return false;
    }
    return true;
  };
  for (std::size_t i = 0; i < names.size(); ++i) start(i);
  for (std::size_t i = 0; i < names.size(); ++i) REQUIRE(eventually([&] { return sees_all(i); }, 30s));
  const auto until = std::chrono::steady_clock::now() + seconds;
  int kills = 0;
  for (std::size_t victim = 0; std::chrono::steady_clock::now() < until; victim = (victim + 1) % names.size()) {
    INFO("kill " << kills + 1 << " of " << full(victim));
    std::vector<std::size_t> ups_before(names.size());
    for (std::size_t j = 0; j < names.size(); ++j) ups_before[j] = count_of(nodes[j]->out(), "up " + full(victim));
    nodes[victim]->signal(SIGKILL);
    REQUIRE(nodes[victim]->wait() == -1);  // (killed: no exit code)
    ++kills;
    start(victim);
    // the new incarnation reaches all three others, and each of them sees it come back
    const bool back = eventually([&] { return sees_all(victim); }, 30s);
    INFO("its stdout:\n" << nodes[victim]->out() << "its stderr (tail):\n"
                          << nodes[victim]->err().substr(nodes[victim]->err().size() > 3000 ? nodes[victim]->err().size() - 3000 : 0));
    REQUIRE(back);
    for (std::size_t j = 0; j < names.size(); ++j) {
      if (j == victim) continue;
      INFO("seen by " << full(j));
      REQUIRE(eventually([&] { return count_of(nodes[j]->out(), "up " + full(victim)) > ups_before[j]; }, 30s));
      REQUIRE(nodes[j]->running());  // no abort
    }
  }
  std::printf("churn: %d kills in %lld s, each restart reconnected by all\n", kills,
              static_cast<long long>(seconds.count()));
  INFO(kills << " kills");
  CHECK(kills >= 4);
  for (auto& n : nodes) {
    CHECK(n->running());
    CHECK(n->err().find("Assertion") == std::string::npos);
  }
}

namespace {
// kate on host a, alex on host b, alex streaming `total` {seq, N} to kate; both with `tick_ms`.
struct StreamPair {
  std::unique_ptr<Child> kate, alex;
  std::string kate_name, alex_name;
  StreamPair(Hosts& hosts, long tick_ms, long total, const std::string& tag) {
    kate_name = "kate@" + hosts.ip_a;
    alex_name = "alex@" + hosts.ip_b;
    const std::string tick = "NODUS_TEST_TICK=" + std::to_string(tick_ms);
    kate = std::make_unique<Child>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", hosts.a, "/usr/bin/env", tick, self_exe(),
                                 "--nodus-peer", kate_name, "secret", "4000",
                                 alex_name + "=tcp://" + hosts.ip_b + ":4000"},
        tag + "-kate");
    alex = std::make_unique<Child>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", hosts.b, "/usr/bin/env", tick,
                                 "NODUS_TEST_STREAM=" + std::to_string(total), self_exe(), "--nodus-peer", alex_name,
                                 "secret", "4000", kate_name + "=tcp://" + hosts.ip_a + ":4000"},
        tag + "-alex");
  }
  // the numbers after `word` on each line that starts with it
  static std::vector<std::vector<long long>> lines(const std::string& out, const std::string& word) {
    std::vector<std::vector<long long>> r;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) {
      if (l.rfind(word + " ", 0) != 0) continue;
      std::istringstream nums(l.substr(word.size()));
      std::vector<long long> v;
      for (long long x; nums >> x;) v.push_back(x);
      r.push_back(v);
    }
    return r;
  }
};
}  // namespace

TEST_CASE("cuts shorter than the tick: no nodedown, nothing lost, reordered or duplicated", "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  constexpr long kTotal = 60000;
  StreamPair p(hosts, 3000, kTotal, "short-cuts");
  REQUIRE(eventually([&] { return p.kate->out().find("up " + p.alex_name) != std::string::npos; }, 20s));
  for (int cut = 0; cut < 4; ++cut) {
    std::this_thread::sleep_for(1s);  // NOLINT: flow between the faults (their schedule)
    hosts.link(false);
    std::this_thread::sleep_for(500ms);  // NOLINT: the fault's length, a sixth of the tick
    hosts.link(true);
  }
  REQUIRE(eventually([&] { return p.kate->out().find("sink done") != std::string::npos; }, 120s));
  const std::string k = p.kate->out(), a = p.alex->out();
  INFO("kate:\n" << k << "alex:\n" << a);
  CHECK(StreamPair::lines(k, "down").empty());
  CHECK(StreamPair::lines(a, "down").empty());
  CHECK(StreamPair::lines(a, "down_at").empty());
  CHECK(StreamPair::lines(k, "gap").empty());
  CHECK(StreamPair::lines(k, "dup").empty());
  CHECK(StreamPair::lines(k, "back").empty());
  CHECK(k.find("sink done " + std::to_string(kTotal) + " " + std::to_string(kTotal)) != std::string::npos);
}

TEST_CASE("cuts longer than the tick: every gap in a stream is covered by a nodedown its sender saw; no reorder, no duplicate",
          "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  constexpr long kTotal = 80000;
  StreamPair p(hosts, 1000, kTotal, "long-cuts");
  REQUIRE(eventually([&] { return p.kate->out().find("up " + p.alex_name) != std::string::npos; }, 20s));
  for (std::size_t cut = 1; cut <= 3; ++cut) {
    std::this_thread::sleep_for(2s);  // NOLINT: flow between the faults (their schedule)
    hosts.link(false);
    const bool down = eventually([&] {
      return StreamPair::lines(p.alex->out(), "down").size() == cut && StreamPair::lines(p.kate->out(), "down").size() == cut;
    }, 20s);
    hosts.link(true);
    REQUIRE(down);  // once on each side
  }
  REQUIRE(eventually([&] { return p.kate->out().find("sink done") != std::string::npos; }, 180s));
  const std::string k = p.kate->out(), a = p.alex->out();
  INFO("kate:\n" << k << "alex:\n" << a);
  CHECK(StreamPair::lines(k, "dup").empty());
  CHECK(StreamPair::lines(k, "back").empty());
  CHECK(StreamPair::lines(a, "down").size() == 3);
  CHECK(StreamPair::lines(k, "down").size() == 3);
  const auto downs = StreamPair::lines(a, "down_at");
  CHECK(!downs.empty());
  for (const auto& g : StreamPair::lines(k, "gap")) {
    REQUIRE(g.size() == 2);
    const bool covered = std::any_of(downs.begin(), downs.end(), [&](const auto& d) { return g[0] < d[0] && d[0] <= g[1]; });
    INFO("gap " << g[0] << " -> " << g[1]);
    CHECK(covered);
  }
  CHECK(k.find("sink done") != std::string::npos);
}
