// Observability across OS-process nodes: a scripted scenario (spawn 100, send 1,000 to a peer,
// a child killed under a supervisor, a wrong cookie refused) read three ways: the node's own
// shell, a remote shell, and a Prometheus scrape with curl; and `nodus top` under tmux.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <regex>
#include <sstream>

#include "nodus/nodus.hpp"
#include "nodus/testing.hpp"

using namespace nodus;
using namespace nodus::testing;
using namespace std::chrono_literals;

namespace {
const std::string kNodus = NODUS_TOOL;
const std::string kPortmapper = NODUS_PORTMAPPER_TOOL;
const std::string kObsNode = NODUS_OBS_NODE;

// The number after `label` in the last block of `text` that has it ("spawned:   104").
std::optional<std::uint64_t> after(const std::string& text, const std::string& label) {
  const auto at = text.rfind(label);
  if (at == std::string::npos) return std::nullopt;
  std::istringstream in(text.substr(at + label.size()));
  std::uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

// A metric's value in Prometheus text: the line `name{labels} value` (labels as written).
std::optional<double> metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind(series + " ", 0) == 0) return std::stod(l.substr(series.size() + 1));
  }
  return std::nullopt;
}

// A peers table row: the numbers on the line that starts with `node`.
std::vector<std::uint64_t> peer_row(const std::string& text, const std::string& node) {
  const auto at = text.rfind("\n" + node + " ");
  std::vector<std::uint64_t> out;
  if (at == std::string::npos) return out;
  std::istringstream in(text.substr(at + 1 + node.size(), text.find('\n', at + 1) - at - 1 - node.size()));
  std::string state;
  in >> state;
  for (std::uint64_t v; in >> v;) out.push_back(v);
  return out;  // msgs out, bytes out, msgs in, bytes in, queued, busy ms
}

std::atomic<int> g_caught{0};
Proc catcher() {
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple(2, "flood")) g_caught.fetch_add(1);
  }
}

std::string curl(const std::string& url) {
  Child c({"/usr/bin/curl", "-s", "--max-time", "10", url}, "curl" + std::to_string(::getpid()));
  if (c.wait(15s) != 0) return {};
  return c.out();
}

struct Stats3 {
  std::uint64_t spawned, normal, exception, restarts, refused;
};
Stats3 from_shell(const std::string& text) {
  auto get = [&](const std::string& l) { return after(text, l).value_or(0); };
  // "exited: N (normal A, shutdown B, killed C, exception D, ..."
  return {get("spawned:"), get("(normal "), get(", exception "), get("supervisor_restarts:"), get("handshakes_refused:")};
}
}  // namespace

TEST_CASE("a scripted scenario's counters read by the node's shell, a remote shell and a Prometheus scrape",
          "[distributed][observe]") {
  PortMapper pm(kPortmapper);
  const std::uint16_t mport = free_port();
  REQUIRE(mport != 0);
  PeerNode sc({kObsNode, "--sname", "sc@localhost", "--cookie", "c", "--metrics", "127.0.0.1:" + std::to_string(mport)},
              pm, "sc");
  REQUIRE(sc.ready());
  Runtime rt;
  register_name(atom("catcher"), spawn(catcher));
  Node t({.name = "t@localhost", .cookie = "c"});

  // before: the node's own view
  REQUIRE(sc.say("stats"));
  REQUIRE(eventually([&] { return count_of(sc.out(), "handshakes_refused:") == 1; }));
  const Stats3 before = from_shell(sc.out());
  const auto scrape0 = curl("http://127.0.0.1:" + std::to_string(mport) + "/metrics");
  INFO("first scrape:\n" << scrape0);
  REQUIRE(metric(scrape0, "nodus_processes_spawned_total{node=\"sc@localhost\"}"));

  // the scenario
  REQUIRE(sc.say("spawn sc@localhost Obs.burst 100"));
  REQUIRE(sc.say("spawn sc@localhost Obs.flood t@localhost, catcher, 1000"));
  INFO("the node's output:\n" << sc.out() << sc.err());
  REQUIRE(eventually([&] { return g_caught.load() == 1000; }, 30s));
  REQUIRE(sc.say("send obs_worker crash"));
  {
    Child bad({kNodus, "ping", "sc@localhost", "--sname", "bad@localhost", "--cookie", "wrong"}, "bad" + std::to_string(pm.port()));
    CHECK(bad.wait(20s) == 1);
    CHECK(bad.out() == "pang\n");
  }
  // 1. the node's own shell (asked again until the restart and the refusal show)
  auto fresh_stats = [&] {
    const auto blocks = count_of(sc.out(), "handshakes_refused:");
    REQUIRE(sc.say("stats"));
    REQUIRE(eventually([&] { return count_of(sc.out(), "handshakes_refused:") > blocks; }));
    return from_shell(sc.out());
  };
  REQUIRE(eventually([&] {
    const Stats3 s = fresh_stats();
    return s.restarts > before.restarts && s.refused > before.refused;
  }, 30s));
  REQUIRE(sc.say("peers"));
  REQUIRE(eventually([&] { return !peer_row(sc.out(), "t@localhost").empty(); }));
  const std::string local = sc.out();
  INFO("the node's shell:\n" << local);
  const Stats3 mine = from_shell(local);
  CHECK(mine.spawned - before.spawned >= 103);  // Obs.burst and its 100, Obs.flood, the new obs_worker
  CHECK(mine.normal - before.normal >= 102);
  CHECK(mine.exception - before.exception == 1);
  CHECK(mine.restarts - before.restarts == 1);
  CHECK(mine.refused - before.refused == 1);
  const auto row = peer_row(local, "t@localhost");
  REQUIRE(row.size() >= 4);
  CHECK(row[0] >= 1000);        // messages out to t
  CHECK(row[1] >= 1000 * 10);   // bytes out

  // 2. a shell on another node
  Child remote({kNodus, "shell", "--sname", "obs@localhost", "--cookie", "c"}, "obs" + std::to_string(pm.port()),
               "stats sc@localhost\npeers sc@localhost\ni sc@localhost\n");
  REQUIRE(remote.wait(30s) == 0);
  const std::string r = remote.out();
  INFO("the remote shell:\n" << r << remote.err());
  const Stats3 theirs = from_shell(r);
  CHECK(theirs.spawned >= mine.spawned);
  CHECK(theirs.exception == mine.exception);
  CHECK(theirs.restarts == mine.restarts);
  CHECK(theirs.refused == mine.refused);
  const auto rrow = peer_row(r, "t@localhost");
  REQUIRE(rrow.size() >= 4);
  CHECK(rrow[0] >= row[0]);
  CHECK(r.find("holder") != std::string::npos);      // i sc@localhost lists its processes
  CHECK(r.find("obs_worker") != std::string::npos);

  // 3. Prometheus
  const auto scrape = curl("http://127.0.0.1:" + std::to_string(mport) + "/metrics");
  INFO("scrape:\n" << scrape);
  const std::string n = "{node=\"sc@localhost\"}";
  CHECK(metric(scrape, "nodus_processes_spawned_total" + n).value_or(0) >= double(mine.spawned));
  CHECK(metric(scrape, "nodus_processes_exited_total{node=\"sc@localhost\",reason=\"exception\"}") == double(mine.exception));
  CHECK(metric(scrape, "nodus_supervisor_restarts_total" + n) == double(mine.restarts));
  CHECK(metric(scrape, "nodus_handshakes_refused_total" + n) == double(mine.refused));
  CHECK(metric(scrape, "nodus_peer_messages_sent_total{node=\"sc@localhost\",peer=\"t@localhost\"}").value_or(0) >= 1000);
  CHECK(metric(scrape, "nodus_peer_up{node=\"sc@localhost\",peer=\"t@localhost\"}") == 1.0);
  CHECK(metric(scrape, "nodus_processes_spawned_total" + n).value() -
            metric(scrape0, "nodus_processes_spawned_total" + n).value() >= 103);
}

TEST_CASE("nodus top shows the flooded process first, sorts on a key and quits on q", "[distributed][observe][tmux]") {
  if (::access("/usr/bin/tmux", X_OK) != 0) {
    WARN("Excluding tags [tmux]: no /usr/bin/tmux");
    return;
  }
  PortMapper pm(kPortmapper);
  PeerNode sc({kObsNode, "--sname", "sct@localhost", "--cookie", "c"}, pm, "sct");
  REQUIRE(sc.ready());
  REQUIRE(sc.say("spawn sct@localhost Obs.hold 5000"));
  REQUIRE(sc.say("i"));
  REQUIRE(eventually([&] { return sc.out().find("holder") != std::string::npos; }));

  // a private tmux server (its own socket), killed at the end whatever happens
  const std::string sock = "nodus-test-" + std::to_string(::getpid());
  struct Tmux {
    std::string sock;
    std::string run(std::vector<std::string> a) {
      std::vector<std::string> args{"/usr/bin/tmux", "-L", sock};
      args.insert(args.end(), a.begin(), a.end());
      Child c(args, "tmux" + sock + std::to_string(n++));
      c.wait(10s);
      return c.out();
    }
    ~Tmux() { run({"kill-server"}); }
    int n = 0;
  } tmux{sock};
  const std::string cmd = "env NODUS_PORTMAPPER_PORT=" + std::to_string(pm.port()) + " " + kNodus +
                          " top sct@localhost --sname topv@localhost --cookie c --interval 200; sleep 30";
  tmux.run({"new-session", "-d", "-s", "top", "-x", "160", "-y", "50", cmd});
  std::string screen;
  auto first_process = [&] {
    screen = tmux.run({"capture-pane", "-p", "-t", "top"});
    const auto head = screen.find("\nPid ");
    if (head == std::string::npos) return std::string();
    const auto b = head + 1 + screen.substr(head + 1).find('\n') + 1;
    return screen.substr(b, screen.find('\n', b) - b);
  };
  // the holder has 5000 messages in its mailbox: first by mailbox
  REQUIRE(eventually([&] {
    const std::string row = first_process();
    return row.find("holder") != std::string::npos && row.find("5000") != std::string::npos;
  }, 30s));
  INFO("screen:\n" << screen);
  CHECK(screen.find("processes by mailbox") != std::string::npos);
  tmux.run({"send-keys", "-t", "top", "h"});
  REQUIRE(eventually([&] { (void)first_process(); return screen.find("processes by handled") != std::string::npos; }, 20s));
  tmux.run({"send-keys", "-t", "top", "q"});
  // top exits on q: the pane runs the `sleep` after it, and top's own node leaves the port mapper
  CHECK(eventually([&] { return !pm.lists("topv"); }, 20s));
}

namespace {
Proc flooder(Atom node, std::int64_t n) {
  const std::string kb(1024, 'x');
  for (std::int64_t i = 0; i < n; ++i) {
    send(atom("holder"), node, tuple(atom("flood"), kb));
    if (i % 64 == 0) co_await yield();  // a suspension point: where a send budget holds it
  }
}
}  // namespace

TEST_CASE("busy_peer, queued bytes and time over the budget while a peer is stopped", "[distributed][observe]") {
  PortMapper pm(kPortmapper);
  PeerNode sc({kObsNode, "--sname", "scb@localhost", "--cookie", "c"}, pm, "scb");
  REQUIRE(sc.ready());
  Runtime rt;
  Node t({.name = "tb@localhost", .cookie = "c", .dist_buffer = 64 << 10});
  Mailbox mb;
  const Atom peer = atom("scb@localhost");
  REQUIRE(node::ping(peer));
  observe::system_monitor({.to = mb.pid(), .busy_peer = true});
  sc.signal(SIGSTOP);
  struct Resume {
    PeerNode& n;
    ~Resume() { n.signal(SIGCONT); }
  } resume{sc};
  const Pid f = spawn(flooder, peer, std::int64_t{20000});  // 20 MB: far past the 64 KiB budget
  auto ev = mb.receive<Term>([](const Term& t) { return t.is_tuple(4, "monitor") && t[2].is_atom("busy_peer"); }, 30s);
  REQUIRE(ev);
  CHECK((*ev)[1].as_pid() == f);
  CHECK((*ev)[3][0] == tuple(atom("node"), peer));
  auto peer_stats = [&] {
    for (const auto& p : observe::stats().peers) {
      if (p.node == peer) return p;
    }
    return observe::PeerStats{};
  };
  const observe::PeerStats held = peer_stats();
  CHECK(held.up);
  CHECK(held.busy_episodes >= 1);
  CHECK(held.queued_bytes > 64u << 10);
  CHECK(observe::stats().senders_held >= 1);
  CHECK(observe::process_info(f)->status == "held");
  sc.signal(SIGCONT);
  // the peer reads again: the queue drains, the flooder finishes, the episode's time is counted
  const Ref done = monitor(f);
  REQUIRE(mb.receive<Down>([&](const Down& d) { return d.ref == done; }, 120s));
  // (its Down can come before its last slice's records are handed to the channel: the
  // worker sends them once the process is gone)
  REQUIRE(eventually([&] { return peer_stats().msgs_out >= 20000 && peer_stats().queued_bytes == 0; }, 60s));
  const observe::PeerStats after = peer_stats();
  CHECK(after.busy_ns > 0);
  CHECK(after.bytes_out >= 20000u * 1024);
  observe::system_monitor(observe::SystemMonitor{});
}
