// nodus: command-line tools for nodes: ping, names, and a plain node to talk to.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include <CLI/CLI.hpp>
#include <functional>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <unordered_map>

#include "nodus/portmapper.hpp"
#include "shell.hpp"
#include "top.hpp"
#include "nodus/cli.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

using cli::NodeFlags;
NodeOptions options(const NodeFlags& f) { return cli::node_options(f); }

// {From, Msg} -> From ! {echo, Msg}; anything else is printed.
Proc echo() {
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple() && t.size() == 2 && t[0].is_pid()) {
      send(t[0].as_pid(), tuple(atom("echo"), t[1]));
    } else {
      io::puts(t.to_string());
    }
  }
}

// The anchors' bench processes (the Erlang anchor benchmark's bench.erl), same messages:
// sink: {start, From, N}, then N x {seq, I, Bin} -> From ! {done, N, OutOfOrder}
Proc bench_sink() {
  for (;;) {
    Term start = co_await receive<Term>([](const Term& t) { return t.is_tuple(3, "start"); });
    const Pid from = start[1].as_pid();
    const std::int64_t n = start[2].as_int();
    std::int64_t bad = 0;
    for (std::int64_t c = 1; c <= n; ++c) {
      Term m = co_await receive<Term>();
      if (!m.is_tuple(3, "seq") || m[1].as_int() != c) ++bad;
    }
    send(from, tuple(atom("done"), n, bad));
  }
}

// echo: {ping, From, I} -> From ! {pong, I}
Proc bench_echo() {
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple(3, "ping")) send(t[1].as_pid(), tuple(atom("pong"), t[2]));
  }
}

// count: {start, From, N}, then N x {seq2, K, I, Bin} from any number of senders, each sender
// K's I counting 1, 2, ... in its own order -> From ! {done, N, OutOfOrder}
Proc bench_count() {
  for (;;) {
    Term start = co_await receive<Term>([](const Term& t) { return t.is_tuple(3, "start"); });
    const Pid from = start[1].as_pid();
    const std::int64_t n = start[2].as_int();
    std::int64_t bad = 0;
    std::unordered_map<std::int64_t, std::int64_t> last;
    for (std::int64_t c = 1; c <= n; ++c) {
      Term m = co_await receive<Term>();
      if (!m.is_tuple(4, "seq2")) {
        ++bad;
        continue;
      }
      std::int64_t& l = last[m[1].as_int()];
      if (m[2].as_int() != l + 1) ++bad;
      l = m[2].as_int();
    }
    send(from, tuple(atom("done"), n, bad));
  }
}

// drop: takes anything, keeps nothing (the large messages of dist_mixed)
Proc bench_drop() {
  for (;;) (void)co_await receive<Term>();
}

// reply (a remote spawn's function, "bench.reply"): [From] -> From ! {hi, self()}
Proc bench_reply(Term args) {
  send(args[0].as_pid(), tuple(atom("hi"), self()));
  co_return;
}

// BenchM.mesh([Node...]) (a task function): pings each other node, on a thread of its own (a
// ping blocks its thread), and returns how many answered, this node counted.
Async<Term> bench_mesh(Term args) {
  std::vector<Atom> nodes;
  for (const Term& t : args[0].elems()) nodes.push_back(t.as_atom());
  const Pid me = self();
  std::thread([me, nodes] {
    std::int64_t answered = 0;
    for (Atom n : nodes) answered += n == node::self() || node::ping(n, 10s) ? 1 : 0;
    send(me, tuple(atom("mesh_done"), answered));
  }).detach();
  auto r = co_await receive<Term>([](const Term& t) { return t.is_tuple(2, "mesh_done"); }, 120s);
  co_return r ? (*r)[1] : Term(-1);
}

Proc blast_sender(Atom to, std::int64_t k, std::int64_t n) {
  const Term bin(std::string(16, 'x'));
  for (std::int64_t i = 1; i <= n; ++i) send(atom("bench_count"), to, tuple(atom("seq2"), k, i, bin));
  co_return;
}

// BenchM.blast([Node...], M) (a task function): a sender process per other node of the list,
// each sending M {seq2, K, I, <<16 bytes>>} to that node's bench_count (K: this node's place in
// the list, from 1); returns as they start.
Async<Term> bench_blast(Term args) {
  const auto& nodes = args[0].elems();
  std::int64_t k = 0;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].as_atom() == node::self()) k = static_cast<std::int64_t>(i) + 1;
  }
  for (const Term& t : nodes) {
    if (t.as_atom() != node::self()) spawn(blast_sender, t.as_atom(), k, args[1].as_int());
  }
  co_return Term(atom("ok"));
}

// The anchors' task callee (the Elixir anchor benchmark's task_b.exs): BenchM.f(x) -> x.
Async<Term> bench_f(Term args) { co_return args[0]; }

int cmd_ping(const NodeFlags& f, const std::string& target) {
  Runtime rt;
  try {
    Node n(options(f));
    const auto r = node::connect(Atom(target));
    const bool pong = r.ok();
    if (!pong) std::fprintf(stderr, "%s: %s\n", target.c_str(), r.error().text.c_str());
    std::puts(pong ? "pong" : "pang");
    return pong ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::puts("pang");
    return 1;
  }
}

int cmd_names(const std::string& host) {
  std::string error;
  dist::PortmapperClient pm(host, dist::portmapper_port());
  auto names = pm.names(&error);
  if (!names) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  for (const auto& l : *names) std::puts(l.c_str());
  return 0;
}

// A CURVE key pair in ZeroMQ's Z85 form: DIR/node.key (secret, 0400) and DIR/node.pub.
int cmd_keygen(const std::string& dir) {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    std::fprintf(stderr, "error: this libzmq has no CURVE support\n");
    return 1;
  }
  // the directory and its missing parents, private (0700): it holds a secret key
  for (std::size_t at = 1; at <= dir.size(); ++at) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string part = dir.substr(0, at);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "error: cannot create directory %s: %s\n", part.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if (struct stat st{}; ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "error: %s is not a directory\n", dir.c_str());
    return 1;
  }
  const std::string key = dir + "/node.key", pubfile = dir + "/node.pub";
  for (const auto& f : {key, pubfile}) {
    if (::access(f.c_str(), F_OK) == 0) {
      std::fprintf(stderr, "error: %s exists; not overwriting a key (remove it first to rotate)\n", f.c_str());
      return 1;
    }
  }
  auto write = [](const std::string& path, const char* text, mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return false;
    const std::string line = std::string(text) + "\n";
    const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    return ::close(fd) == 0 && ok;
  };
  if (!write(key, sec, 0400)) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", key.c_str(), std::strerror(errno));
    return 1;
  }
  if (!write(pubfile, pub, 0644)) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", pubfile.c_str(), std::strerror(errno));
    ::unlink(key.c_str());
    return 1;
  }
  std::printf("%s\n", pubfile.c_str());
  return 0;
}

// Runs a node until SIGINT or SIGTERM: `setup` first (what must exist before the node is
// found), `ready` once it is up (its line on stderr).
int run_node(const NodeFlags& f, const std::function<void()>& setup, const std::function<void(const Node&)>& ready) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread: only sigwait sees them
  Runtime rt;
  try {
    setup();
    Node n(options(f));
    ready(n);
    int sig = 0;
    sigwait(&set, &sig);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

int cmd_node(const NodeFlags& f) {
  return run_node(
      f,
      [] {  // everything registered before the node is up: whoever finds it finds them
        register_name(atom("echo"), spawn(echo));
        register_name(atom("bench_sink"), spawn(bench_sink));
        register_name(atom("bench_echo"), spawn(bench_echo));
        register_name(atom("bench_count"), spawn(bench_count));
        register_name(atom("bench_drop"), spawn(bench_drop));
        register_function("bench.reply", bench_reply);
        task::register_function("BenchM.f", bench_f);
        task::register_function("BenchM.mesh", bench_mesh);
        task::register_function("BenchM.blast", bench_blast);
        task_supervisor::start({.name = atom("BenchSup")});
      },
      [&](const Node& n) { std::fprintf(stderr, "node %s ready (port %u)\n", f.sname.c_str(), n.port()); });
}

// A node that is nothing but its gateway (and what clients register or serve through it).
int cmd_gateway(NodeFlags& f) {
  if (f.gateway.empty()) f.gateway = "tcp://127.0.0.1:5555";
  return run_node(
      f, [] {},
      [&](const Node& n) {
        std::fprintf(stderr, "gateway %s ready on port %u (node port %u)\n", f.sname.c_str(), node::gateway_port(),
                     n.port());
      });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodus: tools for nodus nodes"};
  app.set_version_flag("--version", std::string("nodus ") + nodus::version(), "print the version and exit");
  app.require_subcommand(1);
  NodeFlags f;
  std::string target, host = "localhost";

  auto* ping = app.add_subcommand("ping", "connect to NODE: prints pong (exit 0) or pang (exit 1)");
  ping->add_option("node", target, "node to ping, name@host")->required();
  cli::add_node_flags(*ping, f);

  auto* names = app.add_subcommand("names", "list the nodes registered on HOST's port mapper");
  names->add_option("host", host, "host (default: localhost)");

  std::string keydir;
  auto* keygen = app.add_subcommand("keygen", "write a CURVE key pair: DIR/node.key (secret, mode 0400) and DIR/node.pub");
  keygen->add_option("--out", keydir, "directory for the key files (created, mode 0700, if missing)")->required();

  auto* nodecmd = app.add_subcommand(
      "node",
      "run a node until SIGTERM, with registered processes `echo` ({From, Msg} -> {echo, Msg}),\n"
      "the anchors' `bench_sink`, `bench_echo`, `bench_count` and `bench_drop`, the spawn function\n"
      "`bench.reply`, and a task supervisor `BenchSup` running\n"
      "the task function `BenchM.f` (returns its argument)");
  cli::add_node_flags(*nodecmd, f);

  auto* shell = app.add_subcommand(
      "shell", "an interactive node shell (readline on a terminal; reads commands from stdin otherwise)");
  cli::add_node_flags(*shell, f);

  auto* gatewaycmd = app.add_subcommand(
      "gateway", "run a node that is only a gateway for ZeroMQ clients (docs/gateway.md) until SIGTERM");
  cli::add_node_flags(*gatewaycmd, f);
  gatewaycmd->add_option("--bind", f.gateway, "the gateway's endpoint (default tcp://127.0.0.1:5555); same as --gateway");

  tools::TopOptions top_opts;
  std::string top_target;
  auto* top = app.add_subcommand(
      "top", "a live view of NODE (refreshed every second): its processes by mailbox length or messages\n"
             "handled, its peers with throughput and queued bytes, its schedulers; keys: m, h (sort), q (quit)");
  top->add_option("node", top_target, "the node to watch, name@host")->required();
  cli::add_node_flags(*top, f);
  top->add_option("--interval", top_opts.interval_ms, "refresh period in ms (default 1000)")->check(CLI::Range(50, 3600000));
  top->add_option("--rows", top_opts.rows, "processes shown (default 15)")->check(CLI::Range(1, 1000));
  top->add_flag("--by-handled", top_opts.sort_handled, "start sorted by messages handled (default: by mailbox length)");
  top->add_flag("--once", top_opts.once, "print one frame and exit");

  CLI11_PARSE(app, argc, argv);
  try {
    (void)options(f);  // a malformed --peer is a usage error
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  if (*shell) return tools::run_shell(options(f));
  if (*ping) return cmd_ping(f, target);
  if (*names) return cmd_names(host);
  if (*keygen) return cmd_keygen(keydir);
  if (*nodecmd) return cmd_node(f);
  if (*gatewaycmd) return cmd_gateway(f);
  if (*top) return tools::run_top(options(f), top_target, top_opts);
  return 2;
}
