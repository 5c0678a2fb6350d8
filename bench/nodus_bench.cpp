// nodus-bench: the anchors' scenarios on nodus, printing `RESULT name=... value=... unit=...`.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <sodium.h>
#include <sys/stat.h>
#include <zmq.h>

#include <filesystem>

#include "nodus/portmapper.hpp"
#include "nodus/nodus.hpp"
#include "nodus/testing.hpp"
#include "nodus/zmq_port.hpp"

using namespace nodus;
using namespace std::chrono_literals;
using BenchClock = std::chrono::steady_clock;

namespace {

struct Options {
  long n = 0;  // 0: each scenario's default
  unsigned schedulers = 0;
};

double secs(BenchClock::time_point a, BenchClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void result(const char* name, double value, const char* unit) {
  if (value >= 1000) {
    std::printf("RESULT name=%s value=%.0f unit=%s\n", name, value, unit);
  } else {
    std::printf("RESULT name=%s value=%.3f unit=%s\n", name, value, unit);
  }
  std::fflush(stdout);
}

long rss_bytes() {
  long total = 0, resident = 0;
  std::ifstream f("/proc/self/statm");
  f >> total >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// ---------------------------------------------------------------- local_send
// Same shape as the Erlang anchor: {seq, I, <<16 bytes>>}, one producer -> one consumer, timed
// from the first send to the consumer's acknowledgement of the last message.
struct Seq {
  std::int64_t i;
  std::array<char, 16> bin;
};
struct Consumed {
  long n;
  long out_of_order;
};

Proc consumer(Pid parent, long n) {
  long bad = 0;
  for (long c = 1; c <= n; ++c) {
    Seq s = co_await receive<Seq>();
    if (s.i != c) ++bad;
  }
  send(parent, Consumed{n, bad});
}

Proc producer(Pid report, long n) {
  std::array<char, 16> bin;
  bin.fill('x');
  Pid c = spawn(consumer, self(), n);
  const auto t0 = BenchClock::now();
  for (long i = 1; i <= n; ++i) send(c, Seq{i, bin});
  const auto t_sent = BenchClock::now();
  Consumed done = co_await receive<Consumed>();
  const auto t1 = BenchClock::now();
  send(report, tuple(secs(t0, t1), secs(t0, t_sent), done.out_of_order));
}

int local_send(const Options& o) {
  const long n = o.n ? o.n : 10'000'000;
  Runtime rt({.schedulers = o.schedulers});
  Mailbox mb;
  spawn(producer, self(), 100'000L);  // warm-up, not timed
  if (!mb.receive<Term>(60s)) return 1;
  spawn(producer, self(), n);
  auto r = mb.receive<Term>(300s);
  if (!r) return 1;
  const double elapsed = (*r)[0].as_double();
  std::fprintf(stderr, "detail: local_send %ld msgs; elapsed %.3f s (first send -> ack); producer done after %.3f s; out_of_order=%lld\n",
               n, elapsed, (*r)[1].as_double(), static_cast<long long>((*r)[2].as_int()));
  if ((*r)[2].as_int() != 0) return 1;
  result("local_send", n / elapsed, "msgs/s");
  return 0;
}

// ---------------------------------------------------------------- local_pingpong
struct Ping {
  Pid from;
  long i;
};
struct Pong {
  long i;
};

Proc echo() {
  for (;;) {
    Ping p = co_await receive<Ping>();
    send(p.from, Pong{p.i});
  }
}

Proc pinger(Pid report, Pid server, long n) {
  const auto t0 = BenchClock::now();
  for (long i = 0; i < n; ++i) {
    send(server, Ping{self(), i});
    Pong p = co_await receive<Pong>();
    if (p.i != i) throw std::runtime_error("pong out of order");
  }
  send(report, secs(t0, BenchClock::now()));
}

int local_pingpong(const Options& o) {
  const long n = o.n ? o.n : 1'000'000;
  Runtime rt({.schedulers = o.schedulers});
  Mailbox mb;
  Pid server = spawn(echo);
  spawn(pinger, self(), server, 10'000L);
  if (!mb.receive<Term>(60s)) return 1;
  spawn(pinger, self(), server, n);
  auto r = mb.receive<Term>(300s);
  if (!r) return 1;
  const double elapsed = r->as_double();
  std::fprintf(stderr, "detail: local_pingpong %ld round trips in %.3f s (%.2f us each)\n", n,
               elapsed, elapsed * 1e6 / n);
  result("local_pingpong", n / elapsed, "roundtrips/s");
  return 0;
}

// ---------------------------------------------------------------- local_spawn
// N processes that each wait in receive; timed until every one of them is waiting.
struct Stop {};
std::atomic<long> g_waiting{0};

Proc idle() {
  g_waiting.fetch_add(1, std::memory_order_relaxed);
  co_await receive<Stop>();
}

Proc spawner(Pid report, long n, std::vector<Pid>* out) {
  for (long i = 0; i < n; ++i) (*out)[i] = spawn(idle);
  send(report, atom("spawned"));
  co_return;
}

int local_spawn(const Options& o) {
  const long n = o.n ? o.n : 1'000'000;
  Runtime rt({.schedulers = o.schedulers});
  Mailbox mb;
  std::vector<Pid> pids(n);  // allocated and touched before the baseline
  {
    // warm-up: first-use allocations (pools, table chunks) stay out of the delta
    std::vector<Pid> w(2000);
    spawn(spawner, self(), 2000L, &w);
    if (!mb.receive<Term>(60s)) return 1;
    while (g_waiting.load() < 2000) std::this_thread::yield();
    for (auto& p : w) send(p, Stop{});
  }
  g_waiting = 0;
  const long rss0 = rss_bytes();
  const auto t0 = BenchClock::now();
  spawn(spawner, self(), n, &pids);
  if (!mb.receive<Term>(120s)) return 1;
  const auto t1 = BenchClock::now();
  while (g_waiting.load(std::memory_order_relaxed) < n) {
    if (secs(t0, BenchClock::now()) > 120) return 1;
    std::this_thread::yield();
  }
  const auto t2 = BenchClock::now();
  const long rss1 = rss_bytes();
  const double per = double(rss1 - rss0) / n;
  std::fprintf(stderr, "detail: local_spawn %ld processes; spawn loop %.3f s; all waiting in receive at %.3f s; rss %ld -> %ld kB (%.0f B/process)\n",
               n, secs(t0, t1), secs(t0, t2), rss0 / 1024, rss1 / 1024, per);
  result("local_spawn", secs(t0, t2), "s");
  result("local_spawn_mem", per, "bytes/process");
  for (auto& p : pids) send(p, Stop{});
  return 0;
}

// ---------------------------------------------------------------- distribution
// Two nodes in two OS processes on 127.0.0.1: this one (a@localhost) and a `nodus node`
// (b@localhost) started here with a private port mapper; both stopped at the end.
// CURVE scenarios: fresh key pairs for a and b (nodus::testing::CurveKeys), removed at the end.
using nodus::testing::CurveKeys;

struct Peer {
  pid_t pm = -1, node = -1;
  std::string port;
  static pid_t start(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      if (!std::getenv("NODUS_BENCH_VERBOSE")) ::dup2(null, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  }
  explicit Peer(const CurveKeys* keys = nullptr) {
    const char* bin = std::getenv("NODUS_BIN");
    const std::string dir = bin ? bin : NODUS_TOOLS_DIR;
    port = std::to_string(20000 + ::getpid() % 12000);  // below the ephemeral range (32768+)
    ::setenv("NODUS_PORTMAPPER_PORT", port.c_str(), 1);
    pm = start({dir + "/nodus-portmapper", "--port", port});
    // nodes must find this port mapper up, or they would start one of their own
    nodus::dist::PortmapperClient probe("127.0.0.1", static_cast<std::uint16_t>(std::stoi(port)));
    const auto end = BenchClock::now() + 10s;
    while (!probe.names(nullptr) && BenchClock::now() < end) std::this_thread::sleep_for(5ms);
    std::vector<std::string> args{dir + "/nodus", "node", "--sname", "b@localhost", "--cookie", "bench"};
    if (keys) {
      for (auto& f : keys->flags("b")) args.push_back(f);
    }
    node = start(args);
  }
  ~Peer() {
    for (pid_t p : {node, pm}) {
      if (p > 0) {
        ::kill(p, SIGTERM);
        int st;
        ::waitpid(p, &st, 0);
      }
    }
  }
};

bool wait_for_peer(Mailbox& mb) {
  const auto end = BenchClock::now() + 20s;
  while (BenchClock::now() < end) {
    if (node::ping(atom("b@localhost"), 1s)) {
      send(atom("bench_echo"), atom("b@localhost"), tuple(atom("ping"), self(), -1));
      if (mb.receive<Term>(1s)) return true;
    }
  }
  std::fprintf(stderr, "peer node b@localhost did not come up\n");
  return false;
}

// This process as a@localhost, with the peer b@localhost running.
struct DistRun {
  explicit DistRun(const Options& o, bool curve = false)
      : keys(curve ? std::make_unique<CurveKeys>(std::vector<std::string>{"a", "b"}) : nullptr), peer(keys.get()), rt({.schedulers = o.schedulers}),
        a(options(keys.get())) {}
  static NodeOptions options(const CurveKeys* k) {
    NodeOptions o{.name = "a@localhost", .cookie = "bench"};
    if (k) o.curve = load_curve(k->key_file("a"), k->allow());
    return o;
  }
  std::unique_ptr<CurveKeys> keys;
  Peer peer;
  Runtime rt;
  Node a;
  Mailbox mb;
};

Proc oneway_sender(Pid report, long n, std::size_t size) {
  const Term bin(std::string(size, 'x'));
  const auto t0 = BenchClock::now();
  send(atom("bench_sink"), atom("b@localhost"), tuple(atom("start"), self(), n));
  for (long i = 1; i <= n; ++i) {
    send(atom("bench_sink"), atom("b@localhost"), tuple(atom("seq"), i, bin));
  }
  const auto t_sent = BenchClock::now();
  Term done = co_await receive<Term>([](const Term& t) { return t.is_tuple(3, "done"); });
  send(report, tuple(secs(t0, BenchClock::now()), secs(t0, t_sent), done[2]));
}

int dist_oneway(const Options& o, const char* name, std::size_t size, bool curve = false) {
  const long n = o.n ? o.n : 1'500'000;
  DistRun run(o, curve);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  spawn(oneway_sender, self(), 20'000L, size);  // warm-up
  if (!mb.receive<Term>(120s)) return 1;
  spawn(oneway_sender, self(), n, size);
  auto r = mb.receive<Term>(300s);
  if (!r) return 1;
  const double elapsed = (*r)[0].as_double();
  std::fprintf(stderr, "detail: %s %ld msgs {seq, I, <<%zu bytes>>} a -> {bench_sink, b}; elapsed %.3f s (first send -> ack); sender done after %.3f s; out_of_order=%lld\n",
               name, n, size, elapsed, (*r)[1].as_double(), static_cast<long long>((*r)[2].as_int()));
  if ((*r)[2].as_int() != 0) return 1;
  result(name, n / elapsed, "msgs/s");
  return 0;
}

int dist_oneway_small(const Options& o) { return dist_oneway(o, "dist_oneway_small", 16); }
int dist_oneway_1k(const Options& o) { return dist_oneway(o, "dist_oneway_1k", 1024); }
int dist_oneway_small_curve(const Options& o) { return dist_oneway(o, "dist_oneway_small_curve", 16, true); }

int dist_pingpong(const Options& o, const std::string& name = "dist_pingpong", bool curve = false) {
  const long n = o.n ? o.n : 100'000;
  DistRun run(o, curve);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  auto round = [&](long i) {
    send(atom("bench_echo"), atom("b@localhost"), tuple(atom("ping"), self(), i));
    return mb.receive<Term>([i](const Term& t) { return t.is_tuple(2, "pong") && t[1].as_int() == i; }, 10s)
        .has_value();
  };
  for (long i = 0; i < 2000; ++i) {
    if (!round(i)) return 1;
  }
  std::vector<double> us(static_cast<std::size_t>(n));
  const auto t0 = BenchClock::now();
  for (long i = 0; i < n; ++i) {
    const auto s = BenchClock::now();
    if (!round(i)) return 1;
    us[static_cast<std::size_t>(i)] = std::chrono::duration<double, std::micro>(BenchClock::now() - s).count();
  }
  const double total = secs(t0, BenchClock::now());
  std::sort(us.begin(), us.end());
  auto pct = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))]; };
  std::fprintf(stderr, "detail: %s %ld sequential round trips {ping, Pid, I} -> {pong, I}; total %.3f s; rtt_us min=%.1f p50=%.1f p90=%.1f p99=%.1f max=%.1f\n",
               name.c_str(), n, total, us.front(), pct(0.5), pct(0.9), pct(0.99), us.back());
  result((name + "_p50").c_str(), pct(0.5), "us");
  result((name + "_p99").c_str(), pct(0.99), "us");
  result(name.c_str(), n / total, "roundtrips/s");
  return 0;
}
int dist_pingpong_plain(const Options& o) { return dist_pingpong(o); }

// The same round trips from a process (as Erlang's anchor measures them) instead of a thread
// with a Mailbox: reports {done, Seconds, SortedMicros}.
Proc pingpong_process(Pid report, long n) {
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  for (long i = -2000; i < n; ++i) {  // the first 2000: warm-up
    const auto s = BenchClock::now();
    send(atom("bench_echo"), atom("b@localhost"), tuple(atom("ping"), self(), i));
    auto m = co_await receive<Term>([i](const Term& t) { return t.is_tuple(2, "pong") && t[1].as_int() == i; }, 10s);
    if (!m) co_return;  // no answer: the caller times out and reports the failure
    if (i >= 0) us.push_back(std::chrono::duration<double, std::micro>(BenchClock::now() - s).count());
  }
  std::sort(us.begin(), us.end());
  const double total = std::accumulate(us.begin(), us.end(), 0.0) / 1e6;
  send(report, tuple(total, us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]));
}

int dist_pingpong_proc(const Options& o) {
  const long n = o.n ? o.n : 100'000;
  DistRun run(o);
  if (!wait_for_peer(run.mb)) return 1;
  spawn(pingpong_process, self(), n);
  auto r = run.mb.receive<Term>(300s);
  if (!r) return 1;
  const double total = (*r)[0].as_double();
  std::fprintf(stderr, "detail: dist_pingpong_proc %ld sequential round trips from a process; %.3f s; p50=%.1f us p99=%.1f us\n",
               n, total, (*r)[1].as_double(), (*r)[2].as_double());
  result("dist_pingpong_proc_p50", (*r)[1].as_double(), "us");
  result("dist_pingpong_proc_p99", (*r)[2].as_double(), "us");
  result("dist_pingpong_proc", n / total, "roundtrips/s");
  return 0;
}
int dist_pingpong_curve(const Options& o) { return dist_pingpong(o, "dist_pingpong_curve", true); }

// Task.Supervisor.async({BenchSup, b}, "BenchM.f", [I]) |> await, `calls` times in a row from
// one process; reports {done, Seconds, Bad}.
Proc task_caller(Pid report, long first, long calls) {
  const ServerRef sup(atom("BenchSup"), atom("b@localhost"));
  const std::string fn = "BenchM.f";
  long bad = 0;
  const auto t0 = BenchClock::now();
  for (long i = first; i < first + calls; ++i) {
    const Term args = Term::list({Term(i)});
    Task t = co_await task_supervisor::async(sup, fn, args);
    const Term r = co_await task::await(t, 10s);
    if (r != Term(i)) ++bad;
  }
  send(report, tuple(atom("done"), secs(t0, BenchClock::now()), bad));
}

// `callers` processes doing `calls` sequential async/await each; total calls/s.
int dist_task(const Options& o, const char* name, long callers, long calls) {
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  spawn(task_caller, self(), 1L, 1000L);  // warm-up, as the anchor does
  if (!mb.receive<Term>(60s)) return 1;
  const auto t0 = BenchClock::now();
  for (long c = 0; c < callers; ++c) spawn(task_caller, self(), (c + 1) * 1'000'000L, calls);
  long bad = 0;
  for (long c = 0; c < callers; ++c) {
    auto r = mb.receive<Term>(300s);
    if (!r) return 1;
    bad += (*r)[2].as_int();
  }
  const double elapsed = secs(t0, BenchClock::now());
  const long total = callers * calls;
  std::fprintf(stderr, "detail: %s: %ld caller process(es) x %ld sequential task_supervisor::async({BenchSup, b@localhost}, \"BenchM.f\", [I]) + await = %ld calls in %.3f s; wrong results %ld\n",
               name, callers, calls, total, elapsed, bad);
  if (bad != 0) return 1;
  result(name, total / elapsed, "calls/s");
  return 0;
}

int dist_task_async_await(const Options& o) { return dist_task(o, "dist_task_async_await", 1, o.n ? o.n : 20'000); }
int dist_task_async_await_c64(const Options& o) {
  return dist_task(o, "dist_task_async_await_c64", 64, o.n ? o.n : 500);
}

// ---------------------------------------------------------------- gateway_task_roundtrip
// dist_task_async_await's work, asked by a ZeroMQ client: a raw libzmq REQ socket (a thread of
// this program) sends `{"op": "task", ...}` JSON requests one after another to this node's
// gateway, which runs each as Task.Supervisor.async + await on {BenchSup, b@localhost}.
namespace gw {
std::string ask(void* req, const std::string& body) {
  if (zmq_send(req, body.data(), body.size(), 0) < 0) return {};
  zmq_msg_t m;
  zmq_msg_init(&m);
  if (zmq_msg_recv(&m, req, 0) < 0) {
    zmq_msg_close(&m);
    return {};
  }
  std::string out(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
  zmq_msg_close(&m);
  return out;
}
// The value of "challenge" in {"ok":{"challenge":"HEX"}}.
std::string challenge_of(const std::string& r) {
  const auto at = r.find("\"challenge\":\"");
  if (at == std::string::npos) return {};
  const auto from = at + 13;
  return r.substr(from, r.find('"', from) - from);
}
std::string proof(const std::string& cookie, const std::string& hex) {
  unsigned char bin[64];
  std::size_t len = 0;
  if (sodium_hex2bin(bin, sizeof bin, hex.data(), hex.size(), nullptr, &len, nullptr) != 0) return {};
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(cookie.data()), cookie.size());
  crypto_auth_hmacsha256_update(&st, bin, len);
  crypto_auth_hmacsha256_final(&st, mac);
  char out[2 * sizeof mac + 1];
  sodium_bin2hex(out, sizeof out, mac, sizeof mac);
  return out;
}
// `calls` sequential task requests with arguments first..; the wrong answers (-1: a failure).
long client(std::uint16_t port, long first, long calls) {
  void* ctx = zmq_ctx_new();
  void* req = zmq_socket(ctx, ZMQ_REQ);
  const int zero = 0;
  zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
  long bad = -1;
  if (zmq_connect(req, ("tcp://127.0.0.1:" + std::to_string(port)).c_str()) == 0) {
    const std::string ch = challenge_of(ask(req, R"({"op":"hello"})"));
    const std::string in = ask(req, R"({"op":"hello","proof":")" + proof("bench", ch) + "\"}");
    if (in.find("\"ok\"") != std::string::npos) {
      bad = 0;
      for (long i = first; i < first + calls; ++i) {
        const std::string r = ask(req, R"({"op":"task","supervisor":{"name":"BenchSup","node":"b@localhost"},)"
                                       R"("function":"BenchM.f","args":[)" + std::to_string(i) + R"(],"timeout":10000})");
        if (r != R"({"ok":)" + std::to_string(i) + "}") ++bad;
      }
    }
  }
  zmq_close(req);
  zmq_ctx_term(ctx);
  return bad;
}
}  // namespace gw

int gateway_task_roundtrip(const Options& o) {
  const long calls = o.n ? o.n : 10'000;
  if (sodium_init() < 0) return 1;
  Peer peer;
  Runtime rt({.schedulers = o.schedulers});
  NodeOptions no{.name = "a@localhost", .cookie = "bench"};
  no.gateway = GatewayOptions{.bind = "tcp://127.0.0.1:0"};
  Node a(no);
  Mailbox mb;
  if (!wait_for_peer(mb)) return 1;
  const std::uint16_t port = node::gateway_port();
  if (gw::client(port, 1, 1000) != 0) return 1;  // warm-up, as dist_task_async_await's
  const auto t0 = BenchClock::now();
  const long bad = gw::client(port, 1'000'000, calls);
  const double elapsed = secs(t0, BenchClock::now());
  std::fprintf(stderr, "detail: gateway_task_roundtrip: %ld sequential {\"op\":\"task\"} requests from one libzmq REQ socket "
               "to a@localhost's gateway -> task_supervisor::async({BenchSup, b@localhost}, \"BenchM.f\", [I]) + await, "
               "in %.3f s; wrong or failed answers %ld\n", calls, elapsed, bad);
  if (bad != 0) return 1;
  result("gateway_task_roundtrip", calls / elapsed, "calls/s");
  return 0;
}

// ---------------------------------------------------------------- zmq_port_pull, zmq_port_reqrep
// The raw libzmq anchors' shapes (zmq_oneway_small, zmq_pingpong: an 8-byte sequence, a 24-byte
// envelope, a 16-byte payload, three frames), with the nodus side a ZeroMQ port owned by a
// process. The raw libzmq peer is a forked child (as the anchors' other side is), made before
// the Runtime exists; it binds and says where through a pipe.
namespace zpb {
constexpr char kEnv[24] = {'S', 'R', 'C', 'N', 'O', 'D', 'E', '0', '0', '0', '0', '1',
                           'D', 'S', 'T', 'N', 'O', 'D', 'E', '0', '0', '0', '0', '2'};

// Forks a child running `body(endpoint-writing fd)`; the endpoint it bound, or "".
template <class F>
std::string fork_peer(pid_t* child, F body) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  *child = ::fork();
  if (*child == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::_exit(body(fds[1]));
  }
  ::close(fds[1]);
  char buf[256] = {};
  const ssize_t n = ::read(fds[0], buf, sizeof buf - 1);
  ::close(fds[0]);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

void* bind_any(void* ctx, int type, int fd) {
  void* s = zmq_socket(ctx, type);
  zmq_bind(s, "tcp://127.0.0.1:*");
  char ep[256] = {};
  std::size_t len = sizeof ep;
  zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
  (void)!::write(fd, ep, std::strlen(ep));
  ::close(fd);
  return s;
}

// The raw PUSH: n three-frame messages, as zmq_oneway_small's sender.
int pusher(int fd, long n) {
  void* ctx = zmq_ctx_new();
  void* s = bind_any(ctx, ZMQ_PUSH, fd);
  const char payload[16] = {};
  for (long i = 0; i < n; ++i) {
    const std::uint64_t seq = static_cast<std::uint64_t>(i);
    zmq_send(s, &seq, 8, ZMQ_SNDMORE);
    zmq_send(s, kEnv, 24, ZMQ_SNDMORE);
    zmq_send(s, payload, 16, 0);
  }
  int linger = 30000;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

Proc pull_counter(Pid report, std::string ep, long n) {
  const zmq_port::Port p = zmq_port::open(zmq_port::Type::pull, {.connect = {ep}}).value();
  (void)p;  // (open while this process lives)
  long bad = 0;
  BenchClock::time_point t0{};
  for (long i = 0; i < n; ++i) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    if (i == 0) t0 = BenchClock::now();
    std::uint64_t seq = ~0ull;
    if (m.parts.size() == 3 && m.parts[0].size() == 8) std::memcpy(&seq, m.parts[0].data(), 8);
    if (seq != static_cast<std::uint64_t>(i) || m.parts[2].size() != 16) ++bad;
  }
  send(report, tuple(secs(t0, BenchClock::now()), bad));
}

// The raw DEALER: n round trips of three frames to the ROUTER port, as zmq_pingpong's client;
// writes the elapsed seconds and each trip's microseconds to `out`.
int dealer(int fd, long n, int out) {
  void* ctx = zmq_ctx_new();
  void* s = bind_any(ctx, ZMQ_DEALER, fd);
  const char payload[16] = {};
  std::vector<double> us(static_cast<std::size_t>(n));
  char buf[64];
  const auto t0 = BenchClock::now();
  for (long i = 0; i < n; ++i) {
    const auto a = BenchClock::now();
    const std::uint64_t seq = static_cast<std::uint64_t>(i);
    zmq_send(s, &seq, 8, ZMQ_SNDMORE);
    zmq_send(s, kEnv, 24, ZMQ_SNDMORE);
    zmq_send(s, payload, 16, 0);
    for (int f = 0; f < 3; ++f) zmq_recv(s, buf, sizeof buf, 0);
    us[static_cast<std::size_t>(i)] = std::chrono::duration<double, std::micro>(BenchClock::now() - a).count();
  }
  const double el = secs(t0, BenchClock::now());
  std::sort(us.begin(), us.end());
  const double r[3] = {el, us[us.size() / 2], us[us.size() * 99 / 100]};
  (void)!::write(out, r, sizeof r);
  ::close(out);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}

Proc router_echo(Pid report, std::string ep) {
  zmq_port::Port p = zmq_port::open(zmq_port::Type::router, {.connect = {ep}}).value();
  send(report, atom("connected"));
  for (;;) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    co_await zmq_port::send(p, std::move(m.parts));
  }
}
}  // namespace zpb

int zmq_port_pull(const Options& o) {
  const long n = o.n ? o.n : 2'000'000;
  pid_t child = -1;
  const std::string ep = zpb::fork_peer(&child, [n](int fd) { return zpb::pusher(fd, n); });
  if (ep.empty()) return 1;
  int rc = 1;
  {
    Runtime rt({.schedulers = o.schedulers});
    Mailbox mb;
    spawn(zpb::pull_counter, mb.pid(), ep, n);
    if (auto r = mb.receive<Term>(300s)) {
      const double el = (*r)[0].as_double();
      std::fprintf(stderr, "detail: zmq_port_pull: %ld three-frame messages (8 + 24 + 16 bytes) from a raw libzmq PUSH "
                   "(another process) into a process through a PULL port, %.3f s from the first to the last; "
                   "out of order or malformed %lld\n", n, el, static_cast<long long>((*r)[1].as_int()));
      if ((*r)[1].as_int() == 0) {
        result("zmq_port_pull", n / el, "msgs/s");
        rc = 0;
      }
    }
  }
  int st;
  ::kill(child, SIGTERM);
  ::waitpid(child, &st, 0);
  return rc;
}

int zmq_port_reqrep(const Options& o) {
  const long n = o.n ? o.n : 100'000;
  int res[2];
  if (::pipe(res) != 0) return 1;
  pid_t child = -1;
  const std::string ep = zpb::fork_peer(&child, [n, &res](int fd) {
    ::close(res[0]);
    return zpb::dealer(fd, n, res[1]);
  });
  ::close(res[1]);
  if (ep.empty()) return 1;
  double r[3] = {0, 0, 0};
  {
    Runtime rt({.schedulers = o.schedulers});
    Mailbox mb;
    spawn(zpb::router_echo, mb.pid(), ep);
    if (!mb.receive<Term>(30s)) return 1;
    if (::read(res[0], r, sizeof r) != static_cast<ssize_t>(sizeof r)) r[0] = 0;
  }
  ::close(res[0]);
  int st;
  ::waitpid(child, &st, 0);
  if (r[0] <= 0) return 1;
  std::fprintf(stderr, "detail: zmq_port_reqrep: %ld round trips of three frames from a raw libzmq DEALER (another process) "
               "to a ROUTER port whose owner echoes them, %.3f s\n", n, r[0]);
  result("zmq_port_reqrep", n / r[0], "trips/s");
  result("zmq_port_reqrep_p50", r[1], "us");
  result("zmq_port_reqrep_p99", r[2], "us");
  return 0;
}

// Time from a signal to the peer to its disappearance from node::list() (nodedown), with a
// 1 s tick. SIGKILL: the kernel resets the TCP connection; SIGSTOP: only the heartbeat tells.
int dist_detect(const char* name, int sig, long tick_ms) {
  Peer peer;
  ::kill(peer.node, SIGTERM);  // restart the peer with the tick we measure
  int st;
  ::waitpid(peer.node, &st, 0);
  const char* bin = std::getenv("NODUS_BIN");
  const std::string dir = bin ? bin : NODUS_TOOLS_DIR;
  const std::string tick = std::to_string(tick_ms);
  peer.node = Peer::start({dir + "/nodus", "node", "--sname", "b@localhost", "--cookie", "bench", "--ticktime", tick});
  Runtime rt;
  Node a({.name = "a@localhost", .cookie = "bench", .ticktime = std::chrono::milliseconds(tick_ms)});
  Mailbox mb;
  if (!wait_for_peer(mb)) return 1;
  const auto t0 = BenchClock::now();
  ::kill(peer.node, sig);
  while (!node::list().empty()) {
    if (secs(t0, BenchClock::now()) > 30) return 1;
    std::this_thread::sleep_for(200us);
  }
  const double ms = secs(t0, BenchClock::now()) * 1e3;
  if (sig == SIGSTOP) ::kill(peer.node, SIGCONT);
  std::fprintf(stderr, "detail: %s: signal %d -> nodedown after %.1f ms (ticktime %ld ms)\n", name, sig, ms, tick_ms);
  result(name, ms, "ms");
  return 0;
}

int dist_detect_kill(const Options&) { return dist_detect("dist_detect_kill", SIGKILL, 1000); }
int dist_detect_stop(const Options&) { return dist_detect("dist_detect_stop", SIGSTOP, 1000); }

// ---------------------------------------------------------------- overload
// dist_stall: one process streams ~100-byte {seq, <<100 bytes>>} to {bench_echo, b} (which
// drops them); after 2 s of flow b is stopped (SIGSTOP) for 10 s. dist_stall_rss_mb: how far
// this node's RSS rose above where it was before the stop; dist_stall_resume: messages sent in
// the second after SIGCONT. The Erlang anchor (bench/anchors/erlang/dist_stall.sh) is the same
// scenario. Both nodes keep the default tick (60 s): the budget alone must hold the sender.
struct StallCount {
  std::atomic<long> sent{0};
  std::atomic<bool> stop{false};
};
Proc stall_sender(StallCount* c) {
  const Term bin(std::string(100, 'x'));
  while (!c->stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 50; ++i) send(atom("bench_echo"), atom("b@localhost"), tuple(atom("seq"), bin));
    c->sent.fetch_add(50, std::memory_order_relaxed);
    co_await yield();
  }
}

int dist_stall(const Options& o) {
  DistRun run(o);
  if (!wait_for_peer(run.mb)) return 1;
  StallCount c;
  spawn(stall_sender, &c);
  std::this_thread::sleep_for(2s);  // flowing
  const long rss0 = rss_bytes();
  const long before = c.sent;
  ::kill(run.peer.node, SIGSTOP);
  long rss_max = rss0;
  const auto t0 = BenchClock::now();
  while (BenchClock::now() - t0 < 10s) {
    std::this_thread::sleep_for(50ms);
    rss_max = std::max(rss_max, rss_bytes());
  }
  const long at_cont = c.sent;
  ::kill(run.peer.node, SIGCONT);
  std::this_thread::sleep_for(1s);
  const long resumed = c.sent - at_cont;
  c.stop = true;
  const long rss_after = rss_bytes();
  std::fprintf(stderr, "detail: dist_stall: %ld msgs in the 2 s before the stop; %ld sent during the 10 s stop; RSS %.1f MB before, %.1f MB at most during, %.1f MB 1 s after SIGCONT\n",
               before, at_cont - before, rss0 / 1048576.0, rss_max / 1048576.0, rss_after / 1048576.0);
  result("dist_stall_rss_mb", (rss_max - rss0) / 1048576.0, "MB");
  result("dist_stall_resume", static_cast<double>(resumed), "msgs/s");
  return 0;
}

// flood_sleep: a process receiving a steady flood (a plain thread sends ~16-byte messages as fast
// as it can, up to 8M) does sleep_for(1ms) 1000 times; p50/p99 of how long each took.
int flood_sleep(const Options& o) {
  Runtime rt({.schedulers = o.schedulers});
  Mailbox mb;
  std::atomic<bool> stop{false};
  Pid p = spawn([](Pid report) -> Proc {
    co_await receive<Term>([](const Term& t) { return t.is_atom("go"); });
    std::vector<double> us;
    for (int i = 0; i < 1000; ++i) {
      const auto s = BenchClock::now();
      co_await sleep_for(1ms);
      us.push_back(std::chrono::duration<double, std::micro>(BenchClock::now() - s).count());
    }
    std::sort(us.begin(), us.end());
    send(report, tuple(us[us.size() / 2], us[us.size() * 99 / 100]));
  }, self());
  std::thread flood([&] {
    for (long i = 0; i < 8'000'000 && !stop.load(std::memory_order_relaxed); ++i) send(p, Term(i));
  });
  send(p, atom("go"));
  auto r = mb.receive<Term>(120s);
  stop = true;
  flood.join();
  if (!r) return 1;
  std::fprintf(stderr, "detail: flood_sleep: sleep_for(1ms) x1000 in a flooded process: p50 %.0f us, p99 %.0f us\n",
               (*r)[0].as_double(), (*r)[1].as_double());
  result("flood_sleep_p50", (*r)[0].as_double() / 1000.0, "ms");
  result("flood_sleep_p99", (*r)[1].as_double() / 1000.0, "ms");
  return 0;
}

// dist_hol: one process streams 64 MiB binaries to {bench_echo, b} (they go as 64 KiB
// fragments) while this thread does sequential small round trips to bench_echo for 5 s;
// p50/p99 of those round trips.
Proc hol_streamer(std::atomic<bool>* stop, std::atomic<long>* sent) {
  const Term big(std::string(64u << 20, 'x'));
  while (!stop->load()) {
    send(atom("bench_echo"), atom("b@localhost"), tuple(atom("big"), big));
    sent->fetch_add(1);
    co_await yield();
  }
}
int dist_hol(const Options& o) {
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  std::atomic<bool> stop{false};
  std::atomic<long> big_sent{0};
  spawn(hol_streamer, &stop, &big_sent);
  std::vector<double> us;
  const auto t0 = BenchClock::now();
  for (long i = 0; BenchClock::now() - t0 < 5s; ++i) {
    const auto s = BenchClock::now();
    send(atom("bench_echo"), atom("b@localhost"), tuple(atom("ping"), self(), i));
    if (!mb.receive<Term>([i](const Term& t) { return t.is_tuple(2, "pong") && t[1].as_int() == i; }, 30s)) return 1;
    us.push_back(std::chrono::duration<double, std::micro>(BenchClock::now() - s).count());
  }
  stop = true;
  std::sort(us.begin(), us.end());
  const double p50 = us[us.size() / 2], p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  std::fprintf(stderr, "detail: dist_hol: %zu round trips in 5 s while %ld x 64 MiB messages went the same way; p50 %.0f us, p99 %.0f us, max %.0f us\n",
               us.size(), big_sent.load(), p50, p99, us.back());
  result("dist_hol_p50", p50 / 1000.0, "ms");
  result("dist_hol_p99", p99 / 1000.0, "ms");
  return 0;
}

// ---------------------------------------------------------------- how cost grows
// The same scenarios as bench.erl's dist_size, dist_senders, dist_spawn and dist_mixed (and,
// for dist_size, raw TCP and raw libzmq at the same sizes: bench/anchors/{tcp,zmq}/run.sh).

struct SizePoint {
  const char* label;
  std::size_t size;
  long n;  // messages at 100%
};
// (the Erlang anchor's size_table: keep them the same)
constexpr std::array<SizePoint, 6> kSizes{{{"16B", 16, 1'000'000},
                                           {"256B", 256, 600'000},
                                           {"4KiB", 4096, 200'000},
                                           {"64KiB", 65536, 20'000},
                                           {"1MiB", 1 << 20, 1'000},
                                           {"16MiB", 1 << 24, 60}}};

// One-way throughput at each message size, {seq, I, <<Size bytes>>} a -> {bench_sink, b};
// -n: percent of the default counts.
int dist_size(const Options& o) {
  const long scale = o.n ? o.n : 100;
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  for (const auto& pt : kSizes) {
    const long n = std::max(10L, pt.n * scale / 100);
    spawn(oneway_sender, self(), std::max(2L, n / 20), pt.size);  // warm-up
    if (!mb.receive<Term>(300s)) return 1;
    spawn(oneway_sender, self(), n, pt.size);
    auto r = mb.receive<Term>(300s);
    if (!r || (*r)[2].as_int() != 0) return 1;
    const double elapsed = (*r)[0].as_double();
    const std::string name = std::string("dist_size_") + pt.label;
    std::fprintf(stderr, "detail: %s %ld msgs of %zu bytes in %.3f s (%.1f MB/s of payload)\n", name.c_str(), n,
                 pt.size, elapsed, n * static_cast<double>(pt.size) / elapsed / 1e6);
    result(name.c_str(), n / elapsed, "msgs/s");
  }
  return 0;
}

Proc seq2_sender(Atom to, long k, long n) {
  const Term bin(std::string(16, 'x'));
  for (long i = 1; i <= n; ++i) send(atom("bench_count"), to, tuple(atom("seq2"), k, i, bin));
  co_return;
}

// Remote one-way throughput from 1, 64 and 10,000 sender processes on this node, N messages in
// all ({seq2, K, I, <<16 bytes>>} to {bench_count, b}, which checks each sender's order).
int dist_senders(const Options& o) {
  const long total_n = o.n ? o.n : 1'000'000;
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  const Atom b = atom("b@localhost");
  for (long k : {1L, 64L, 10'000L}) {
    const long each = std::max(1L, total_n / k), total = each * k;
    const auto t0 = BenchClock::now();
    send(atom("bench_count"), b, tuple(atom("start"), mb.pid(), total));
    for (long id = 1; id <= k; ++id) spawn(seq2_sender, b, id, each);
    auto r = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "done"); }, 300s);
    if (!r) return 1;
    const double elapsed = secs(t0, BenchClock::now());
    const std::string name = "dist_senders_" + std::to_string(k);
    std::fprintf(stderr, "detail: %s %ld senders x %ld msgs in %.3f s, out_of_order=%lld\n", name.c_str(), k, each,
                 elapsed, static_cast<long long>((*r)[2].as_int()));
    if ((*r)[2].as_int() != 0) return 1;
    result(name.c_str(), total / elapsed, "msgs/s");
  }
  return 0;
}

// spawn on b ("bench.reply", [self()]) and its first message back {hi, Pid}, `n` in a row;
// reports {done, Bad}
Proc remote_spawner(Pid report, long n) {
  const Atom b = atom("b@localhost");
  const std::string fn = "bench.reply";
  const Term args = Term::list({Term(self())});  // (GCC 12: an initializer list inside co_await's operands does not compile)
  long bad = 0;
  for (long i = 0; i < n; ++i) {
    Spawned s = co_await spawn_request(b, fn, args);
    const Pid p = s.pid;
    auto hi = co_await receive<Term>([p](const Term& t) { return t.is_tuple(2, "hi") && t[1].as_pid() == p; }, 10s);
    if (!hi) ++bad;
  }
  send(report, tuple(atom("done"), bad));
}

// Remote spawn + first reply (Erlang's spawn(Node, M, F, A) with a reply): in a row, and from
// 64 concurrent spawners (N in all).
int dist_spawn(const Options& o) {
  const long n = o.n ? o.n : 20'000;
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  spawn(remote_spawner, self(), 200L);  // warm-up
  if (!mb.receive<Term>(60s)) return 1;
  auto t0 = BenchClock::now();
  spawn(remote_spawner, self(), n);
  auto r = mb.receive<Term>(300s);
  if (!r || (*r)[1].as_int() != 0) return 1;
  const double seq = secs(t0, BenchClock::now());
  const long each = std::max(1L, n / 64);
  t0 = BenchClock::now();
  for (int c = 0; c < 64; ++c) spawn(remote_spawner, self(), each);
  for (int c = 0; c < 64; ++c) {
    auto d = mb.receive<Term>(300s);
    if (!d || (*d)[1].as_int() != 0) return 1;
  }
  const double conc = secs(t0, BenchClock::now());
  std::fprintf(stderr, "detail: dist_spawn %ld in a row in %.3f s; 64 x %ld concurrent in %.3f s\n", n, seq, each, conc);
  result("dist_spawn", n / seq, "spawns/s");
  result("dist_spawn_c64", 64.0 * each / conc, "spawns/s");
  return 0;
}

// streams 16 MiB binaries to {bench_drop, b} until told to stop; reports {streamed, Count}
Proc big_streamer(Pid report) {
  const Term big(std::string(1 << 24, 'x'));
  long sent = 0;
  for (;;) {
    if (co_await receive<Term>([](const Term& t) { return t.is_atom("stop"); }, 0ms)) break;
    send(atom("bench_drop"), atom("b@localhost"), tuple(atom("big"), big));
    ++sent;
  }
  send(report, tuple(atom("streamed"), sent));
}

// p50/p99 of small round trips from a process while another process streams 16 MiB messages
// to the same peer.
Proc mixed_pinger(Pid report, long n) {
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  for (long i = -200; i < n; ++i) {  // the first 200: warm-up, the stream already going
    const auto s = BenchClock::now();
    send(atom("bench_echo"), atom("b@localhost"), tuple(atom("ping"), self(), i));
    auto m = co_await receive<Term>([i](const Term& t) { return t.is_tuple(2, "pong") && t[1].as_int() == i; }, 30s);
    if (!m) co_return;
    if (i >= 0) us.push_back(std::chrono::duration<double, std::micro>(BenchClock::now() - s).count());
  }
  std::sort(us.begin(), us.end());
  send(report, tuple(atom("pinged"), us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]));
}

int dist_mixed(const Options& o) {
  const long n = o.n ? o.n : 2'000;
  DistRun run(o);
  Mailbox& mb = run.mb;
  if (!wait_for_peer(mb)) return 1;
  const Pid streamer = spawn(big_streamer, self());
  spawn(mixed_pinger, self(), n);
  auto p = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "pinged"); }, 300s);
  send(streamer, atom("stop"));
  auto st = mb.receive<Term>([](const Term& t) { return t.is_tuple(2, "streamed"); }, 300s);
  if (!p || !st) return 1;
  std::fprintf(stderr, "detail: dist_mixed %ld round trips beside %lld x 16 MiB; p50=%.1f p99=%.1f us\n", n,
               static_cast<long long>((*st)[1].as_int()), (*p)[1].as_double(), (*p)[2].as_double());
  result("dist_mixed_p50", (*p)[1].as_double(), "us");
  result("dist_mixed_p99", (*p)[2].as_double(), "us");
  return 0;
}

// ---------------------------------------------------------------- dist_cluster
// 2, 4, 8 and 16 `nodus node` processes (c1..cN) and this process as their coordinator (a):
//   startup_ms  from launching the N processes to each answering a's ping
//   mesh_ms     from then to every node having pinged every other (BenchM.mesh on each)
//   rss_mb      mean RSS of the N nodes after the mesh (each holds N connections: N-1 + a)
//   all2all     every node sends M {seq2, ...} to every other's bench_count (BenchM.blast):
//               N(N-1)M messages / the time to the last count
// and rss_per_conn_kb: (RSS at 16 nodes - RSS at 2) / 14 more connections per node.
long peer_rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long kb = 0;
  while (f >> key) {
    if (key == "VmRSS:") {
      f >> kb;
      break;
    }
  }
  return kb;
}

int dist_cluster(const Options& o) {
  const long total_msgs = o.n ? o.n : 2'000'000;
  const char* bin = std::getenv("NODUS_BIN");
  const std::string dir = bin ? bin : NODUS_TOOLS_DIR;
  const std::string port = std::to_string(20000 + ::getpid() % 12000);
  ::setenv("NODUS_PORTMAPPER_PORT", port.c_str(), 1);
  struct Procs {
    std::vector<pid_t> pids;
    void stop() {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      for (pid_t p : pids) {
        int st;
        ::waitpid(p, &st, 0);
      }
      pids.clear();
    }
    ~Procs() { stop(); }
  } pm, nodes;
  pm.pids.push_back(Peer::start({dir + "/nodus-portmapper", "--port", port}));
  nodus::dist::PortmapperClient probe("127.0.0.1", static_cast<std::uint16_t>(std::stoi(port)));
  const auto up = BenchClock::now() + 10s;
  while (!probe.names(nullptr) && BenchClock::now() < up) std::this_thread::sleep_for(5ms);
  Runtime rt({.schedulers = o.schedulers});
  Node a(NodeOptions{.name = "a@localhost", .cookie = "bench"});
  Mailbox mb;
  std::map<int, double> rss;
  for (int n : {2, 4, 8, 16}) {
    std::vector<Atom> names;
    std::vector<Term> elems;
    for (int i = 1; i <= n; ++i) {
      names.push_back(atom("c" + std::to_string(i) + "@localhost"));
      elems.push_back(Term(names.back()));
    }
    const Term list = Term::list(elems);
    const auto t0 = BenchClock::now();
    for (int i = 1; i <= n; ++i) {
      nodes.pids.push_back(Peer::start({dir + "/nodus", "node", "--sname", "c" + std::to_string(i) + "@localhost",
                                        "--cookie", "bench"}));
    }
    for (Atom c : names) {
      const auto end = BenchClock::now() + 60s;
      while (!node::ping(c, 1s)) {
        if (BenchClock::now() > end) {
          std::fprintf(stderr, "node %s did not come up\n", std::string(c.name()).c_str());
          return 1;
        }
        std::this_thread::sleep_for(2ms);  // (a node still starting: its name is not registered yet)
      }
    }
    const auto t_up = BenchClock::now();
    const auto meshed = erpc::multicall(mb, names, "BenchM.mesh", Term::list({list}), 120s);
    const auto t_mesh = BenchClock::now();
    for (const auto& r : meshed) {
      if (!r || r.value() != Term(static_cast<std::int64_t>(n))) {
        std::fprintf(stderr, "a node of %d did not reach every other: %s\n", n,
                     r ? r.value().to_string(200).c_str() : r.error().text.c_str());
        return 1;
      }
    }
    long kb = 0;
    for (pid_t p : nodes.pids) kb += peer_rss_kb(p);
    rss[n] = kb / 1024.0 / n;
    const long m = std::max(1L, total_msgs / (n * (n - 1)));
    const auto t1 = BenchClock::now();
    for (Atom c : names) send(atom("bench_count"), c, tuple(atom("start"), mb.pid(), static_cast<std::int64_t>((n - 1) * m)));
    const auto blasted = erpc::multicall(mb, names, "BenchM.blast", Term::list({list, Term(static_cast<std::int64_t>(m))}), 60s);
    for (const auto& r : blasted) {
      if (!r) return 1;
    }
    long bad = 0;
    for (int i = 0; i < n; ++i) {
      auto d = mb.receive<Term>([](const Term& t) { return t.is_tuple(3, "done"); }, 300s);
      if (!d) return 1;
      bad += (*d)[2].as_int();
    }
    const double all2all = secs(t1, BenchClock::now());
    const std::string base = "dist_cluster_" + std::to_string(n);
    std::fprintf(stderr, "detail: %s startup %.0f ms, mesh %.0f ms, RSS %.1f MB per node, all-to-all %ld msgs in %.3f s, out_of_order=%ld\n",
                 base.c_str(), secs(t0, t_up) * 1e3, secs(t_up, t_mesh) * 1e3, rss[n], n * (n - 1) * m, all2all, bad);
    if (bad) return 1;
    result((base + "_startup_ms").c_str(), secs(t0, t_up) * 1e3, "ms");
    result((base + "_mesh_ms").c_str(), secs(t_up, t_mesh) * 1e3, "ms");
    result((base + "_rss_mb").c_str(), rss[n], "MB");
    result((base + "_all2all").c_str(), n * (n - 1) * m / all2all, "msgs/s");
    nodes.stop();
    // the next size starts clean: no node of this one still connected
    const auto gone = BenchClock::now() + 20s;
    while (!node::list().empty() && BenchClock::now() < gone) std::this_thread::sleep_for(5ms);
  }
  result("dist_cluster_rss_per_conn_kb", (rss[16] - rss[2]) * 1024.0 / 14, "KB");
  return 0;
}

const std::map<std::string, std::function<int(const Options&)>>& scenarios() {
  static const std::map<std::string, std::function<int(const Options&)>> s{
      {"local_send", local_send},
      {"local_pingpong", local_pingpong},
      {"local_spawn", local_spawn},
      {"dist_oneway_small", dist_oneway_small},
      {"dist_oneway_1k", dist_oneway_1k},
      {"dist_pingpong", dist_pingpong_plain},
      {"dist_pingpong_proc", dist_pingpong_proc},
      {"dist_oneway_small_curve", dist_oneway_small_curve},
      {"dist_pingpong_curve", dist_pingpong_curve},
      {"dist_detect_kill", dist_detect_kill},
      {"dist_task_async_await", dist_task_async_await},
      {"dist_task_async_await_c64", dist_task_async_await_c64},
      {"gateway_task_roundtrip", gateway_task_roundtrip},
      {"zmq_port_pull", zmq_port_pull},
      {"zmq_port_reqrep", zmq_port_reqrep},
      {"dist_detect_stop", dist_detect_stop},
      {"dist_stall", dist_stall},
      {"flood_sleep", flood_sleep},
      {"dist_hol", dist_hol},
      {"dist_size", dist_size},
      {"dist_senders", dist_senders},
      {"dist_spawn", dist_spawn},
      {"dist_mixed", dist_mixed},
      {"dist_cluster", dist_cluster},
  };
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodus-bench: nodus on the anchors' scenarios; prints RESULT lines"};
  Options o;
  std::vector<std::string> names;
  bool list = false;
  app.add_option("scenario", names, "scenarios to run, in order (see --list)");
  app.add_option("-n,--n", o.n, "message/process count (default: per scenario, as the anchors)");
  app.add_option("--schedulers", o.schedulers, "worker threads (default: one per core)");
  app.add_flag("--list", list, "list the scenarios");
  CLI11_PARSE(app, argc, argv);
  if (list) {
    for (const auto& [name, fn] : scenarios()) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (names.empty()) {
    std::fprintf(stderr, "no scenario given\n%s", app.help().c_str());
    return 2;
  }
  int rc = 0;
  for (const auto& name : names) {
    auto it = scenarios().find(name);
    if (it == scenarios().end()) {
      std::fprintf(stderr, "unknown scenario: %s (try --list)\n", name.c_str());
      return 2;
    }
    if (it->second(o) != 0) {
      std::fprintf(stderr, "scenario %s failed\n", name.c_str());
      rc = 1;
    }
  }
  return rc;
}
