// ZeroMQ ports (nodus/zmq_port.hpp) against real pyzmq peers (tests/zmq/peer.py, Debian's
// python3-zmq): each pattern round-trips, the flow control holds the peer at its high-water
// mark, the owner's end closes the socket, and misuse fails with a clear reason.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "nodus/nodus.hpp"
#include "nodus/testing.hpp"
#include "nodus/zmq_port.hpp"

#include <spdlog/sinks/ringbuffer_sink.h>

using namespace nodus;
using namespace nodus::testing;
using namespace std::chrono_literals;
namespace zp = nodus::zmq_port;

namespace {
const std::string kPython = "/usr/bin/python3";

std::vector<std::string> peer(std::vector<std::string> args) {
  args.insert(args.begin(), {kPython, NODUS_ZMQ_PEER});
  return args;
}

zp::Options bind_any() { return {.bind = {"tcp://127.0.0.1:*"}}; }

// Tells `report` the port's endpoint, then takes `n` messages ["seq", I] and reports
// {done, OutOfOrder}.
Proc pull_owner(Pid report, long n, zp::Options o) {
  zp::Port p = zp::open(zp::Type::pull, std::move(o)).value();
  send(report, zp::bound(p).at(0));
  long bad = 0;
  for (long i = 1; i <= n; ++i) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    if (m.parts.size() != 2 || m.parts[0] != "seq" || m.parts[1] != std::to_string(i)) ++bad;
  }
  send(report, tuple(atom("done"), bad));
}

// Sends ["out", I] for I in 1..n through a PUSH port, then waits for `stop` (the socket
// lingers until the peer has them all).
Proc push_owner(Pid report, long n) {
  zp::Options o = bind_any();
  o.linger_ms = 5000;
  o.send_queue = 64;  // small: the sender suspends on it many times over
  zp::Port p = zp::open(zp::Type::push, o).value();
  send(report, zp::bound(p).at(0));
  for (long i = 1; i <= n; ++i) {
    std::vector<std::string> parts{std::string("out"), std::to_string(i)};  // (no braced list in a co_await: GCC 12)
    co_await zp::send(p, std::move(parts));
  }
  send(report, atom("sent"));
  co_await receive<Term>([](const Term& t) { return t.is_atom("stop"); });
}

// A server on a port opened with `o`: answers "a:" + each request's last frame, keeping the
// envelope (REP, ROUTER, PAIR); reports its endpoint first (or {error, Text}).
Proc server_with(Pid report, zp::Type type, zp::Options o) {
  auto p = zp::open(type, std::move(o));
  if (!p) {
    send(report, tuple(atom("error"), p.error().text));
    co_return;
  }
  send(report, zp::bound(*p).at(0));
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<Term>() && m.get<Term>().is_atom("stop")) co_return;
    if (!m.is<ZmqMessage>()) continue;
    std::vector<std::string> parts = m.get<ZmqMessage>().parts;
    parts.back() = "a:" + parts.back();
    co_await zp::send(*p, std::move(parts));
  }
}
Proc server(Pid report, zp::Type type) { return server_with(report, type, bind_any()); }

std::string endpoint_from(Mailbox& mb) {
  auto ep = mb.receive<Term>(10s);
  REQUIRE(ep);
  REQUIRE(ep->is_binary());
  return ep->as_binary();
}
}  // namespace

TEST_CASE("a PULL port takes a pyzmq PUSH's messages in order, multipart kept", "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  spawn(pull_owner, mb.pid(), 2000L, bind_any());
  const std::string ep = endpoint_from(mb);
  CHECK(ep.rfind("tcp://127.0.0.1:", 0) == 0);
  Child py(peer({"push", ep, "2000"}), "zp-push", Child::Pipe{});
  auto done = mb.receive<Term>(30s);
  REQUIRE(done);
  CHECK((*done)[1] == Term(0));
  py.write_stdin("bye\n");
  CHECK(py.wait() == 0);
  CHECK(py.out() == "sent 2000\n");
}

namespace {
// Message i of peer.py's shapes mode: i % 5 + 1 frames, frame j "i:j;" repeated (7i + 13j) % 97
// times (empty, short, and longer than a reused frame keeps).
std::vector<std::string> shape(long i) {
  std::vector<std::string> v;
  for (long j = 0; j < i % 5 + 1; ++j) {
    const std::string unit = std::to_string(i) + ":" + std::to_string(j) + ";";
    std::string f;
    for (long r = 0; r < (i * 7 + j * 13) % 97; ++r) f += unit;
    v.push_back(std::move(f));
  }
  return v;
}

// Takes n messages and counts those not exactly shape(i); keeps some a while (the rest give
// their frames' memory back at once, for the port to read later messages into).
Proc shapes_owner(Pid report, long n) {
  zp::Port p = zp::open(zp::Type::pull, bind_any()).value();
  send(report, zp::bound(p).at(0));
  long bad = 0;
  std::deque<ZmqMessage> kept;
  for (long i = 1; i <= n; ++i) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    if (m.parts != shape(i)) ++bad;
    if (i % 3 == 0) kept.push_back(std::move(m));
    if (kept.size() > 20) kept.pop_front();
  }
  for (const ZmqMessage& m : kept) bad += m.parts.empty() ? 1 : 0;  // (still whole)
  send(report, tuple(atom("done"), bad));
}
}  // namespace

TEST_CASE("a PULL port bound on ipc:// takes a pyzmq PUSH's messages; the path is bound again after it closes",
          "[zmq_port]") {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("nodus-zp-" + std::to_string(::getpid()) + ".ipc")).string();
  Runtime rt;
  Mailbox mb;
  for (int round = 0; round < 2; ++round) {  // (libzmq leaves the socket file; a bind replaces it)
    INFO("round " << round);
    const Pid owner = spawn(pull_owner, mb.pid(), 500L, zp::Options{.bind = {"ipc://" + path}});
    CHECK(endpoint_from(mb) == "ipc://" + path);
    Child py(peer({"push", "ipc://" + path, "500"}), "zp-push-ipc", Child::Pipe{});
    auto done = mb.receive<Term>(30s);
    REQUIRE(done);
    CHECK((*done)[1] == Term(0));
    py.write_stdin("bye\n");
    CHECK(py.wait() == 0);
    CHECK(py.out() == "sent 500\n");
    CHECK(eventually([&] { return !is_process_alive(owner); }));
  }
  std::filesystem::remove(path);
}

TEST_CASE("a PULL port's messages of every shape arrive exact while their memory is reused", "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  spawn(shapes_owner, mb.pid(), 3000L);
  const std::string ep = endpoint_from(mb);
  Child py(peer({"shapes", ep, "3000"}), "zp-shapes", Child::Pipe{});
  auto done = mb.receive<Term>(30s);
  REQUIRE(done);
  CHECK((*done)[1] == Term(0));
  py.write_stdin("bye\n");
  CHECK(py.wait() == 0);
}

TEST_CASE("a PUSH port's messages reach a pyzmq PULL in order; the sender suspends on a full queue", "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  const Pid owner = spawn(push_owner, mb.pid(), 5000L);
  const std::string ep = endpoint_from(mb);
  Child py(peer({"pull", ep, "5000"}), "zp-pull");
  CHECK(py.wait() == 0);
  CHECK(py.out() == "got 5000 in order\n");
  CHECK(mb.receive<Term>(10s) == Term(atom("sent")));
  send(owner, atom("stop"));
}

namespace {
// Queues n 100 KB messages ["out", I, padding] on a PUSH port (HWM 10, so most wait in the
// port's queue), reports `queued` and waits: the Runtime's end closes the port.
Proc queue_then_wait(Pid report, std::string ep, long n) {
  zp::Options o{.connect = {ep}};
  o.sndhwm = 10;
  o.send_queue = 1000;
  o.linger_ms = 20000;
  zp::Port p = zp::open(zp::Type::push, o).value();
  const std::string pad(100 * 1024, 'x');
  for (long i = 1; i <= n; ++i) {
    std::vector<std::string> parts{std::string("out"), std::to_string(i), pad};
    co_await zp::send(p, std::move(parts));
  }
  send(report, atom("queued"));
  co_await receive<Term>([](const Term& t) { return t.is_atom("stop"); });
}
}  // namespace

TEST_CASE("what a PUSH port still holds when the Runtime ends goes to its peer, within its linger",
          "[zmq_port]") {
  // the peer binds (a PULL bound by pyzmq), the port connects
  const std::uint16_t port = free_port();
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(port);
  Child py(peer({"pull_bind", ep, "300"}), "zp-pull-end");
  REQUIRE(eventually([&] { return py.out().find("bound") != std::string::npos || !py.running(); }));
  {
    Runtime rt;
    Mailbox mb;
    spawn(queue_then_wait, mb.pid(), ep, 300L);
    CHECK(mb.receive<Term>(30s) == Term(atom("queued")));
  }  // the Runtime's end, with most of the 300 (30 MB) still in the port's queue
  CHECK(py.wait(60s) == 0);
  CHECK(py.out() == "bound\ngot 300 in order\n");
}

TEST_CASE("a REP port serves a pyzmq REQ; a ROUTER port serves two DEALERs, routing id first; a PAIR, a PAIR",
          "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  const Pid rep = spawn(server, mb.pid(), zp::Type::rep);
  const std::string rep_ep = endpoint_from(mb);
  Child req(peer({"req", rep_ep, "50"}), "zp-req");
  CHECK(req.wait() == 0);
  CHECK(req.out() == "req ok 50\n");
  send(rep, atom("stop"));

  const Pid router = spawn(server, mb.pid(), zp::Type::router);
  const std::string router_ep = endpoint_from(mb);
  Child d1(peer({"dealer", router_ep, "d1", "50"}), "zp-d1");
  Child d2(peer({"dealer", router_ep, "d2", "50"}), "zp-d2");
  CHECK(d1.wait() == 0);
  CHECK(d2.wait() == 0);
  CHECK(d1.out() == "dealer d1 ok 50\n");
  CHECK(d2.out() == "dealer d2 ok 50\n");
  send(router, atom("stop"));

  const Pid pair = spawn(server, mb.pid(), zp::Type::pair);
  Child py_pair(peer({"pair", endpoint_from(mb), "20"}), "zp-pair");
  CHECK(py_pair.wait() == 0);
  CHECK(py_pair.out() == "pair ok 20\n");
  send(pair, atom("stop"));
}

namespace {
// counted flow with 5 granted: reports {five, N} once it has 5, then waits for `more`, grants
// plenty and reports {total, N} when `last` messages have come in all.
Proc counted_owner(Pid report) {
  zp::Options o = bind_any();
  o.flow = zp::Flow::counted;
  o.grant = 5;
  o.rcvhwm = 10;
  zp::Port p = zp::open(zp::Type::pull, o).value();
  send(report, zp::bound(p).at(0));
  long got = 0;
  for (; got < 5; ++got) (void)co_await receive<ZmqMessage>();
  send(report, atom("five"));
  Term more = co_await receive<Term>([](const Term& t) { return t.is_tuple(2, "more"); });
  const long last = more[1].as_int();
  zp::active(p, 1'000'000);
  for (; got < last; ++got) (void)co_await receive<ZmqMessage>();
  send(report, tuple(atom("total"), got));
}
// The flood peer's count once its socket has refused for a second: bounded by the high-water
// marks and what the kernel's buffers hold, not by how long it tries.
long flood_held(Child& py, long at_least) {
  REQUIRE(eventually([&] { return py.out().find("stopped after ") != std::string::npos; }, 30s));
  const long k = std::stol(py.out().substr(py.out().find("stopped after ") + 14));
  UNSCOPED_INFO("the peer sent " << k << " 100 KB messages before it was held");
  CHECK(k >= at_least);
  CHECK(k < 1000);  // (without flow control it would send until the second ran out: thousands)
  return k;
}

// Lets the flood peer send one more; the owner reports {total, N} once it has taken them all.
void flood_rest(Mailbox& mb, Child& py, long k) {
  py.write_stdin("go\n");
  auto total = mb.receive<Term>(30s);
  REQUIRE(total);
  CHECK((*total)[1] == Term(k + 1));
  py.write_stdin("bye\n");
  CHECK(py.wait() == 0);
}
}  // namespace

TEST_CASE("counted flow: after its grant the port stops taking, and the peer's sends stop at its HWM",
          "[zmq_port][flow]") {
  Runtime rt;
  Mailbox mb;
  const Pid owner = spawn(counted_owner, mb.pid());
  const std::string ep = endpoint_from(mb);
  Child py(peer({"flood", ep, "100000"}), "zp-flood", Child::Pipe{});
  CHECK(mb.receive<Term>(20s) == Term(atom("five")));
  const long k = flood_held(py, 5);
  send(owner, tuple(atom("more"), k + 1));
  flood_rest(mb, py, k);
}

namespace {
// Active flow with a budget of 10: keeps what arrives; on {count, R} tells R how many it holds;
// on {rest, Total} lets them all go and takes messages until Total have come.
Proc budget_owner(Pid report) {
  zp::Options o = bind_any();
  o.budget = 10;
  o.rcvhwm = 10;
  zp::Port p = zp::open(zp::Type::pull, o).value();
  send(report, zp::bound(p).at(0));
  std::vector<ZmqMessage> held;
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ZmqMessage>()) {
      held.push_back(std::move(m.get<ZmqMessage>()));
    } else if (m.is<Term>() && m.get<Term>()[0].is_atom("count")) {
      send(report, tuple(atom("held"), static_cast<std::int64_t>(held.size())));
    } else if (m.is<Term>() && m.get<Term>()[0].is_atom("rest")) {
      long got = static_cast<long>(held.size());
      held.clear();
      for (; got < m.get<Term>()[1].as_int(); ++got) (void)co_await receive<ZmqMessage>();
      send(report, tuple(atom("total"), got));
      co_return;
    }
  }
}
}  // namespace

TEST_CASE("active flow: at its budget the port stops taking until the owner handles them; none is lost",
          "[zmq_port][flow]") {
  Runtime rt;
  Mailbox mb;
  const Pid owner = spawn(budget_owner, mb.pid());
  const std::string ep = endpoint_from(mb);
  Child py(peer({"flood", ep, "100000"}), "zp-flood-budget", Child::Pipe{});
  const long k = flood_held(py, 10);
  send(owner, tuple(atom("count"), mb.pid()));
  CHECK(mb.receive<Term>(10s) == Term(tuple(atom("held"), 10)));  // the budget, not one more
  send(owner, tuple(atom("rest"), k + 1));
  flood_rest(mb, py, k);
}

namespace {
Proc crashing_owner(Pid report) {
  zp::Port p = zp::open(zp::Type::pull, bind_any()).value();
  send(report, zp::bound(p).at(0));
  co_await receive<Term>([](const Term& t) { return t.is_atom("crash"); });
  throw std::runtime_error("the owner crashes");
}
// Tries to bind `ep`; reports ok or the error's text.
Proc try_bind(Pid report, std::string ep) {
  auto p = zp::open(zp::Type::pull, {.bind = {ep}});
  send(report, p ? Term(atom("ok")) : Term(p.error().text));
  co_await receive<Term>([](const Term& t) { return t.is_atom("stop"); });
}
}  // namespace

TEST_CASE("a bind to a taken address fails with libzmq's text; the owner's end closes its port",
          "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  const Pid owner = spawn(crashing_owner, mb.pid());
  const std::string ep = endpoint_from(mb);
  const Pid second = spawn(try_bind, mb.pid(), ep);
  auto r = mb.receive<Term>(10s);
  REQUIRE(r);
  REQUIRE(r->is_binary());
  CHECK(r->as_binary().find("cannot bind " + ep + ": Address already in use") != std::string::npos);
  send(second, atom("stop"));
  const Ref m = monitor(owner);
  send(owner, atom("crash"));
  auto down = mb.receive<Down>(10s);
  REQUIRE(down);
  CHECK(down->ref == m);
  // its socket is closed: the address can be bound again
  CHECK(eventually([&] {
    const Pid t = spawn(try_bind, mb.pid(), ep);
    auto again = mb.receive<Term>(10s);
    send(t, atom("stop"));
    return again && again->is_atom("ok");
  }));
}

namespace {
Proc meddler(Pid report, zp::Port p) {
  try {
    zp::close(p);
    send(report, atom("closed it"));
  } catch (const Error& e) {
    send(report, Term(std::string(e.what())));
  }
  co_return;
}
}  // namespace

TEST_CASE("a Mailbox thread owns a passive port; another process may not close it", "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  zp::Options o = bind_any();
  o.flow = zp::Flow::passive;
  zp::Port p = zp::open(zp::Type::pull, o).value();
  CHECK(p.owner == mb.pid());
  spawn(meddler, mb.pid(), p);
  auto r = mb.receive<Term>(10s);
  REQUIRE(r);
  REQUIRE(r->is_binary());
  CHECK(r->as_binary().find("zmq_port::close: port " + std::to_string(p.id) + " belongs to ") != std::string::npos);
  // passive: nothing is delivered until asked
  Child py(peer({"push", zp::bound(p).at(0), "3"}), "zp-passive", Child::Pipe{});
  REQUIRE(eventually([&] { return py.out() == "sent 3\n"; }));
  CHECK_FALSE(mb.receive<ZmqMessage>(300ms));  // (sent, but not asked for)
  zp::active(p, 3);
  for (int i = 1; i <= 3; ++i) {
    auto m = mb.receive<ZmqMessage>(10s);
    INFO("message " << i);
    REQUIRE(m);
    CHECK(m->parts == std::vector<std::string>{"seq", std::to_string(i)});
  }
  py.write_stdin("bye\n");
  CHECK(py.wait() == 0);
  zp::close(p);
}

namespace {
// A SUB port on "price" and "end": reports the first price it sees, then {prices, Count,
// Gaps, Ticks} once "end" comes (Ticks: messages it should not have had).
Proc sub_owner(Pid report, std::string ep) {
  zp::Port p = zp::open(zp::Type::sub, {.connect = {ep}, .subscribe = {"price", "end"}}).value();
  long count = 0, gaps = 0, ticks = 0, last = 0;
  for (;;) {
    ZmqMessage m = co_await receive<ZmqMessage>();
    const std::string& t = m.parts.at(0);
    if (t == "end") break;
    if (t.rfind("price ", 0) != 0) {
      ++ticks;
      continue;
    }
    const long n = std::stol(t.substr(6));
    if (count == 0) send(report, atom("first"));
    if (count > 0 && n != last + 1) ++gaps;
    last = n;
    ++count;
  }
  send(report, tuple(atom("prices"), count, gaps, ticks));
  zp::close(p);
}
// A PUB port: publishes "tick" until told `go`, then "a", "b", "end".
Proc pub_owner(Pid report) {
  zp::Port p = zp::open(zp::Type::pub, bind_any()).value();
  send(report, zp::bound(p).at(0));
  for (;;) {
    std::vector<std::string> tick{std::string("tick")};
    co_await zp::send(p, std::move(tick));
    if (co_await receive<Term>([](const Term& t) { return t.is_atom("go"); }, std::chrono::milliseconds(10))) break;
  }
  for (const char* w : {"a", "b", "end"}) {
    std::vector<std::string> one{std::string(w)};
    co_await zp::send(p, std::move(one));
  }
  co_await receive<Term>([](const Term& t) { return t.is_atom("stop"); });
}
}  // namespace

TEST_CASE("a SUB port takes what its subscriptions match from a pyzmq PUB; a PUB port reaches a pyzmq SUB",
          "[zmq_port]") {
  Runtime rt;
  Mailbox mb;
  Child pub(peer({"pub", "tcp://127.0.0.1:*"}), "zp-pub", Child::Pipe{});
  REQUIRE(eventually([&] { return pub.out().find('\n') != std::string::npos || !pub.running(); }));
  REQUIRE(pub.out().rfind("bound tcp://127.0.0.1:", 0) == 0);
  const std::string ep = pub.out().substr(6, pub.out().find('\n') - 6);
  spawn(sub_owner, mb.pid(), ep);
  CHECK(mb.receive<Term>(20s) == Term(atom("first")));
  pub.write_stdin("stop\n");
  auto r = mb.receive<Term>(20s);
  REQUIRE(r);
  INFO("the SUB port saw " << *r);
  CHECK((*r)[1].as_int() > 0);
  CHECK((*r)[2] == Term(0));  // nothing lost once joined
  CHECK((*r)[3] == Term(0));  // no "tick": the subscription filters
  CHECK(pub.wait() == 0);

  const Pid owner = spawn(pub_owner, mb.pid());
  const std::string pub_ep = endpoint_from(mb);
  Child sub(peer({"sub", pub_ep}), "zp-sub");
  REQUIRE(eventually([&] { return sub.out().find("tick") != std::string::npos; }));  // joined
  send(owner, atom("go"));
  CHECK(sub.wait(20s) == 0);
  const std::string out = sub.out();
  CHECK(out.substr(out.find("a\n")) == "a\nb\nend\n");
  send(owner, atom("stop"));
}

TEST_CASE("examples/zmq_workers: a pyzmq ventilator's jobs, supervised workers, every result at a pyzmq sink",
          "[zmq_port][example]") {
  const std::string dir = NODUS_ZMQ_WORKERS_DIR;
  Child sink({kPython, dir + "/sink.py", "tcp://127.0.0.1:*", "200"}, "zw-sink");
  Child vent({kPython, dir + "/ventilator.py", "tcp://127.0.0.1:*", "200"}, "zw-vent", Child::Pipe{});
  auto endpoint = [](Child& c) {
    REQUIRE(eventually([&] { return c.out().find('\n') != std::string::npos || !c.running(); }));
    REQUIRE(c.out().rfind("bound tcp://127.0.0.1:", 0) == 0);
    return c.out().substr(6, c.out().find('\n') - 6);
  };
  const std::string results = endpoint(sink), jobs = endpoint(vent);
  Child workers({NODUS_ZMQ_WORKERS, "--jobs", jobs, "--results", results, "--workers", "4"}, "zw-workers");
  CHECK(workers.wait(60s) == 0);
  CHECK(workers.out() == "200 jobs handled, 28 failed (their workers were restarted)\n");
  CHECK(sink.wait(30s) == 0);
  INFO("sink: " << sink.out() << "\nworkers' log: " << workers.err().substr(0, 2000));
  CHECK(sink.out().find("all 200 jobs accounted for: 172 ok, 28 failed") != std::string::npos);
  // each poison job crashed its worker, and the supervisor said so and restarted it
  CHECK(workers.err().find("Supervisor Workers: child worker") != std::string::npos);
  CHECK(workers.err().find("is poison") != std::string::npos);
  CHECK(workers.err().find("Supervisor Workers: restarting child worker") != std::string::npos);
  vent.close_stdin();
  CHECK(vent.wait() == 0);
}

TEST_CASE("examples/zmq_feed: a pyzmq PUB's prices through a SUB port to every member of a process group",
          "[zmq_port][example]") {
  Child pub({kPython, std::string(NODUS_ZMQ_FEED_DIR) + "/publisher.py", "tcp://127.0.0.1:*"}, "zf-pub", Child::Pipe{});
  REQUIRE(eventually([&] { return pub.out().find('\n') != std::string::npos || !pub.running(); }));
  REQUIRE(pub.out().rfind("bound tcp://127.0.0.1:", 0) == 0);
  const std::string ep = pub.out().substr(6, pub.out().find('\n') - 6);
  Child feed({NODUS_ZMQ_FEED, "--prices", ep, "--members", "3", "--count", "20"}, "zf-feed");
  CHECK(feed.wait(60s) == 0);
  INFO("feed stdout: " << feed.out() << "\nstderr: " << feed.err());
  // each member printed the same 20 prices, consecutive in the feed's sequence
  std::map<std::string, std::vector<std::string>> lines;
  std::map<std::string, std::vector<long>> seqs;
  std::istringstream in(feed.out());
  for (std::string l; std::getline(in, l);) {
    const auto colon = l.find(": ");
    const auto hash = l.rfind("(#");
    REQUIRE(colon != std::string::npos);
    REQUIRE(hash != std::string::npos);
    lines[l.substr(0, colon)].push_back(l.substr(colon + 2));
    seqs[l.substr(0, colon)].push_back(std::stol(l.substr(hash + 2)));
  }
  REQUIRE(lines.size() == 3);
  for (const auto& [who, ls] : lines) {
    CHECK(ls.size() == 20);
    CHECK(ls == lines.begin()->second);
    const auto& s = seqs[who];
    for (std::size_t i = 1; i < s.size(); ++i) CHECK(s[i] == s[i - 1] + 1);
  }
  pub.close_stdin();
  CHECK(pub.wait() == 0);
}

namespace {
// A supervised owner: binds `*ep` (the first time any port, then the same one), says so, takes
// messages and reports each; `crash` makes it throw.
Proc supervised_owner(Pid report, std::shared_ptr<std::string> ep) {
  zp::Port p = zp::open(zp::Type::pull, {.bind = {ep->empty() ? std::string("tcp://127.0.0.1:*") : *ep}}).value();
  if (ep->empty()) *ep = zp::bound(p).at(0);
  send(report, tuple(atom("opened"), *ep));
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<Term>() && m.get<Term>().is_atom("crash")) throw std::runtime_error("asked to crash");
    if (m.is<ZmqMessage>()) send(report, tuple(atom("got"), m.get<ZmqMessage>().parts.at(1)));
  }
}
}  // namespace

TEST_CASE("a port's owner under a supervisor: it crashes, is restarted, and binds the same address again",
          "[zmq_port][supervisor]") {
  Runtime rt;
  Mailbox mb;
  auto ep = std::make_shared<std::string>();
  auto sup = supervisor::start({.strategy = supervisor::Strategy::one_for_one, .max_restarts = 10},
                               {supervisor::worker("owner", supervised_owner, mb.pid(), ep)});
  REQUIRE(sup);
  for (int round = 0; round < 5; ++round) {
    auto opened = mb.receive<Term>(10s);
    REQUIRE(opened);
    INFO("round " << round << ": " << *opened);
    REQUIRE(opened->is_tuple(2, "opened"));
    CHECK((*opened)[1] == Term(*ep));
    const Term kids = supervisor::which_children(mb, ServerRef(*sup));  // [{owner, Pid, worker}]
    send(kids[0][1].as_pid(), atom("crash"));
  }
  auto opened = mb.receive<Term>(10s);  // the sixth incarnation serves
  REQUIRE(opened);
  CHECK((*opened)[1] == Term(*ep));
  Child py(peer({"push", *ep, "3"}), "zp-sup", Child::Pipe{});
  for (int i = 1; i <= 3; ++i) CHECK(mb.receive<Term>(10s) == Term(tuple(atom("got"), std::to_string(i))));
  py.write_stdin("bye\n");
  CHECK(py.wait() == 0);
  (void)supervisor::stop(mb, ServerRef(*sup));
}

namespace {
std::string secret_of(const CurveKeys& keys, const std::string& n) {
  std::ifstream in(keys.key_file(n));
  std::string k;
  std::getline(in, k);
  return k;
}

// The log lines of the test's process, kept while it lives.
struct LogLines {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  LogLines() { logger().sinks().push_back(sink); }
  ~LogLines() { std::erase(logger().sinks(), sink); }
  bool has(const std::string& text) const {
    for (const auto& l : sink->last_formatted()) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }
};
}  // namespace

TEST_CASE("CURVE ports: a server lets in the keys it allows and refuses others, logged with the address; "
          "a client refused by its server ends with {curve_refused, Endpoint}",
          "[zmq_port][curve]") {
  CurveKeys keys({"server", "alice", "mallory"}, std::vector<std::string>{"alice"});
  LogLines log;
  Runtime rt;
  Mailbox mb;
  mb.trap_exit(true);
  zp::Options so = bind_any();
  so.curve = load_curve(keys.key_file("server"), keys.allow());
  const Pid srv = spawn(server_with, mb.pid(), zp::Type::rep, so);
  const std::string ep = endpoint_from(mb);

  // pyzmq with an allowed key: served; with a key not allowed: refused, and the port logs it
  Child alice(peer({"curve_req", ep, keys.pub("server"), secret_of(keys, "alice"), "20"}), "zp-curve-alice");
  CHECK(alice.wait() == 0);
  CHECK(alice.out() == "req ok 20\n");
  Child mallory(peer({"curve_req", ep, keys.pub("server"), secret_of(keys, "mallory"), "1"}), "zp-curve-mallory");
  CHECK(mallory.wait() == 0);
  CHECK(mallory.out() == "refused\n");
  CHECK(eventually([&] { return log.has("refused a CURVE peer at 127.0.0.1: its key " + keys.pub("mallory")); }));

  // a nodus client port (a DEALER: the REP's envelope is an empty frame) with alice's keys
  zp::Options co{.connect = {ep}};
  co.curve = load_curve(keys.key_file("alice"), keys.allow());
  co.curve_server_key = keys.pub_file("server");
  zp::Port client = zp::open(zp::Type::dealer, co).value();
  zp::send(mb, client, {"", "hello"});
  auto reply = mb.receive<ZmqMessage>(20s);
  REQUIRE(reply);
  CHECK(reply->parts == std::vector<std::string>{"", "a:hello"});

  // ... and with mallory's: the server refuses it, the port ends, its owner gets the reason
  co.curve = load_curve(keys.key_file("mallory"), keys.allow());
  zp::Port refused = zp::open(zp::Type::dealer, co).value();
  auto down = mb.receive<ExitMsg>([&](const ExitMsg& e) { return e.from == refused.proc; }, 20s);
  REQUIRE(down);
  CHECK(down->reason == tuple(atom("curve_refused"), ep));
  CHECK_THROWS_AS(zp::send(mb, refused, {"", "x"}), Error);

  // a pyzmq CURVE server, and a nodus client port that knows its key
  CurveKeys py({"pyserver"});
  Child rep(peer({"curve_rep", "tcp://127.0.0.1:*", secret_of(py, "pyserver")}), "zp-curve-rep", Child::Pipe{});
  REQUIRE(eventually([&] { return rep.out().find('\n') != std::string::npos || !rep.running(); }));
  REQUIRE(rep.out().rfind("bound tcp://127.0.0.1:", 0) == 0);
  zp::Options po{.connect = {rep.out().substr(6, rep.out().find('\n') - 6)}};
  po.curve = load_curve(keys.key_file("alice"), keys.allow());
  po.curve_server_key = py.pub("pyserver");
  zp::Port req = zp::open(zp::Type::req, po).value();
  zp::send(mb, req, {"ping"});
  auto pong = mb.receive<ZmqMessage>(20s);
  REQUIRE(pong);
  CHECK(pong->parts == std::vector<std::string>{"a:ping"});
  rep.write_stdin("stop\n");
  CHECK(rep.wait() == 0);

  // misuse says what is wrong
  zp::Options none = bind_any();
  none.curve = CurveOptions{secret_of(keys, "server"), {}};
  auto e1 = zp::open(zp::Type::rep, none);
  REQUIRE(!e1);
  CHECK_THAT(e1.error().text, Catch::Contains("needs the public keys it lets in"));
  zp::Options badkey{.connect = {ep}};
  badkey.curve = load_curve(keys.key_file("alice"), keys.allow());
  badkey.curve_server_key = "not a key";
  auto e2 = zp::open(zp::Type::req, badkey);
  REQUIRE(!e2);
  CHECK_THAT(e2.error().text, Catch::Contains("not a CURVE public key"));
  // a plain (NULL) port in the same process is not asked for keys
  const Pid plain = spawn(server, mb.pid(), zp::Type::rep);
  Child req2(peer({"req", endpoint_from(mb), "5"}), "zp-req-null");
  CHECK(req2.wait() == 0);
  CHECK(req2.out() == "req ok 5\n");
  send(plain, atom("stop"));
  send(srv, atom("stop"));
}
