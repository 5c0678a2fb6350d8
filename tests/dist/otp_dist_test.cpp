// OTP pieces across OS-process nodes: pg (process groups), erpc, multi_call/abcast, with a node
// killed mid-operation.
#include <catch2/catch.hpp>

#include <csignal>
#include <iostream>
#include <map>
#include <thread>

#include "harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

// A member process of the peer: joins `group` in the default scope, prints what it is sent.
Proc member(Term group) {
  pg::join(group, self()).value();
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_atom("leave")) {
      pg::leave(group, self()).value();
    } else {
      std::printf("%s got %s\n", to_string(self()).c_str(), t.to_string(200).c_str());
      std::fflush(stdout);
    }
  }
}

// Task functions erpc runs (registered on the peer and here).
void register_test_functions() {
  task::register_function("Test.add", [](Term args) -> Async<Term> {
    long sum = 0;
    for (std::size_t i = 0; i < args.size(); ++i) sum += args[i].as_int();
    co_return Term(sum);
  });
  task::register_function("Test.whoami", [](Term) -> Async<Term> { co_return Term(node::self()); });
  task::register_function("Test.boom", [](Term) -> Async<Term> {
    throw std::runtime_error("boom");
    co_return Term();
  });
  task::register_function("Test.exit", [](Term) -> Async<Term> {
    exit_self(tuple(atom("bad"), 1L));
    co_return Term();
  });
  // registers itself as `blocked`, says so, and waits until it is killed
  task::register_function("Test.block", [](Term) -> Async<Term> {
    register_name(atom("blocked"), self());
    std::printf("blocking %s\n", to_string(self()).c_str());
    std::fflush(stdout);
    co_await receive<Term>([](const Term& t) { return t.is_atom("never"); });
    co_return Term();
  });
  task::register_function("Test.whereis", [](Term args) -> Async<Term> {
    auto p = whereis(args[0].as_atom());
    co_return p ? Term(*p) : Term(atom("undefined"));
  });
  task::register_function("Test.print", [](Term args) -> Async<Term> {
    std::printf("printed %s\n", args[0].as_binary().c_str());
    std::fflush(stdout);
    co_return atom("ok");
  });
}

// A server registered as `echo`: a call answers {ThisNode, Request}; a cast {print, Text} prints.
struct Echo : GenServer {
  CallResult handle_call(const Term& req, const From&) override { return reply(tuple(node::self(), req)); }
  void handle_cast(const Term& msg) override {
    if (msg.is_tuple(2, "print")) {
      std::printf("echo cast %s\n", msg[1].as_binary().c_str());
      std::fflush(stdout);
    }
  }
};

// The peer: `--nodus-peer NAME COOKIE`; pg's default scope, the test functions, `echo`; stdin
// `join GROUP` starts a member of GROUP, `leave GROUP` makes the newest one leave.
int otp_peer(int argc, char** argv) {
  if (argc < 4) return 2;
  TermSignals term;
  Runtime rt;
  pg::start().value();
  register_test_functions();
  gen_server::start(std::make_unique<Echo>(), {.name = atom("echo")}).value();
  Node node({.name = argv[2], .cookie = argv[3], .ticktime = 1000ms});
  std::thread([] {
    std::map<std::string, Pid> newest;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.rfind("join ", 0) == 0) {
        newest[line.substr(5)] = spawn(member, Term(atom(line.substr(5))));
      } else if (line.rfind("leave ", 0) == 0) {
        send(newest[line.substr(6)], atom("leave"));
      }
    }
  }).detach();
  term.wait();
  return 0;
}
const bool kPeerInstalled = (peer_main = &otp_peer, watchdog_seconds = 280, true);

std::size_t remote_members(const std::vector<Pid>& ms) {
  std::size_t n = 0;
  for (const Pid& p : ms) n += !p.is_local();
  return n;
}

Proc local_member(Term group) {
  pg::join(group, self()).value();
  co_await receive<Term>([](const Term& t) { return t.is_atom("quit"); });
}

}  // namespace

TEST_CASE("pg: groups across nodes; members leave on exit, on leave and when their node is killed",
          "[distributed][pg]") {
  PortMapper pm(NODUS_PORTMAPPER_TOOL);
  REQUIRE(pm.ready());
  Child kate({self_exe(), "--nodus-peer", "kate@localhost", "c"}, "pg-kate" + std::to_string(pm.port()), Child::Pipe{});
  REQUIRE(eventually([&] { return pm.lists("kate"); }));
  Runtime rt;
  pg::start().value();
  Node node({.name = "alex@localhost", .cookie = "c", .ticktime = 1000ms});
  Mailbox mb;
  auto [ref, now] = pg::monitor_scope();
  CHECK(now == Term::map({}));
  const Pid mine = spawn(local_member, Term(atom("room")));
  REQUIRE(eventually([&] { return pg::get_local_members(atom("room")).size() == 1; }));
  REQUIRE(kate.write_stdin("join room\njoin room\n"));
  REQUIRE(node::ping(atom("kate@localhost")));
  // kate's two members arrive here (sync or join), and ours there
  REQUIRE(eventually([&] { return remote_members(pg::get_members(atom("room"))) == 2; }, 20s));
  CHECK(pg::get_local_members(atom("room")) == std::vector<Pid>{mine});
  for (const Pid& p : pg::get_members(atom("room"))) send(p, tuple(atom("say"), "hello room"));
  CHECK(eventually([&] { return count_of(kate.out(), "got {say, \"hello room\"}") == 2; }));
  CHECK(pg::which_groups() == std::vector<Term>{Term(atom("room"))});
  // one of kate's members leaves: a leave event here
  REQUIRE(kate.write_stdin("leave room\n"));
  CHECK(eventually([&] { return remote_members(pg::get_members(atom("room"))) == 1; }, 20s));
  bool saw_leave = false;
  while (auto m = mb.receive<Term>(0ms)) {
    saw_leave = saw_leave || (m->is_tuple() && m->size() == 4 && (*m)[0] == Term(ref) && (*m)[1].is_atom("leave") &&
                              (*m)[2].is_atom("room"));
  }
  CHECK(saw_leave);
  // our member exits: gone here at once
  send(mine, atom("quit"));
  CHECK(eventually([&] { return pg::get_local_members(atom("room")).empty(); }));
  // kate is killed mid-operation: her member leaves when the node goes down
  kate.signal(SIGKILL);
  CHECK(eventually([&] { return pg::get_members(atom("room")).empty(); }, 20s));
  CHECK(pg::which_groups().empty());
  pg::demonitor_scope(ref);
}

TEST_CASE("pg: join refuses another node's pid and a dead one; leave of a non-member is not_joined", "[pg]") {
  Runtime rt;
  pg::start().value();
  auto again = pg::start();
  REQUIRE(!again);
  CHECK(again.error().code == Errc::already_started);
  Mailbox mb;
  CHECK(pg::join(atom("g"), Pid{atom("other@host"), 1, 1, 1}).error().code == Errc::badarg);
  const Pid dead = spawn([]() -> Proc { co_return; });
  REQUIRE(eventually([&] { return !is_process_alive(dead); }));
  CHECK(pg::join(atom("g"), dead).error().code == Errc::badarg);
  CHECK(*pg::leave(atom("g"), mb.pid()) == Term(atom("not_joined")));
  REQUIRE(pg::join(atom("g"), mb.pid()));
  REQUIRE(pg::join(atom("g"), mb.pid()));
  CHECK(pg::get_members(atom("g")).size() == 2);  // once per join, as OTP's
  CHECK(*pg::leave(atom("g"), mb.pid()) == Term(atom("ok")));
  CHECK(pg::get_members(atom("g")).size() == 1);
  CHECK(pg::join(atom("nope_scope"), atom("g"), mb.pid()).error().code == Errc::noproc);
}

namespace {
struct Peer {
  PortMapper pm{NODUS_PORTMAPPER_TOOL};
  std::optional<Child> kate;
  Peer() {
    REQUIRE(pm.ready());
    kate.emplace(std::vector<std::string>{self_exe(), "--nodus-peer", "kate@localhost", "c"},
                 "otp-kate" + std::to_string(pm.port()), Child::Pipe{});
    REQUIRE(eventually([&] { return pm.lists("kate"); }));
  }
};

// A process that makes an erpc call and reports the outcome as a Term.
Proc erpc_caller(Pid report, Atom node, std::string function, Term args) {
  Expected<Term> r = co_await erpc::call(node, function, args, 2s);
  send(report, tuple(atom("erpc"), r.to_term()));
}
}  // namespace

TEST_CASE("erpc: call, cast and multicall run a registered function on another node; every failure has "
          "Erlang's shape, a node killed mid-call too", "[distributed][erpc]") {
  Peer peer;
  Child& kate = *peer.kate;
  Runtime rt;
  register_test_functions();
  Node node({.name = "alex@localhost", .cookie = "c", .ticktime = 1000ms});
  Mailbox mb;
  const Atom k = atom("kate@localhost");
  auto r = erpc::call(mb, k, "Test.add", Term::list({1L, 2L, 39L}));
  REQUIRE(r);
  CHECK(*r == Term(42L));
  CHECK(*erpc::call(mb, k, "Test.whoami") == Term(k));
  // the function throws: {exception, {exception, Type, What}}
  auto boom = erpc::call(mb, k, "Test.boom");
  REQUIRE(!boom);
  CHECK(boom.error().code == Errc::exception);
  CHECK(boom.error().reason.to_string() == "{exception, {exception, \"std::runtime_error\", \"boom\"}}");
  auto ex = erpc::call(mb, k, "Test.exit");
  REQUIRE(!ex);
  CHECK(ex.error().reason.to_string() == "{exception, {bad, 1}}");
  // no such function there
  auto nf = erpc::call(mb, k, "Test.nope");
  REQUIRE(!nf);
  CHECK(nf.error().code == Errc::not_found);
  CHECK(nf.error().reason.to_string() == "{exception, undef}");
  // a node that is not running
  auto nc = erpc::call(mb, atom("moebi@localhost"), "Test.add", Term::list({1L}));
  REQUIRE(!nc);
  CHECK(nc.error().code == Errc::noconnection);
  CHECK(nc.error().reason.to_string() == "{erpc, noconnection}");
  // timeout: {erpc, timeout}, and the process running it is killed
  auto to = erpc::call(mb, k, "Test.block", Term::list({}), 300ms);
  REQUIRE(!to);
  CHECK(to.error().code == Errc::timeout);
  CHECK(to.error().reason.to_string() == "{erpc, timeout}");
  CHECK(eventually([&] { return erpc::call(mb, k, "Test.whereis", Term::list({atom("blocked")}))->is_atom("undefined"); }));
  // the same from a process body
  spawn(erpc_caller, mb.pid(), k, std::string("Test.add"), Term::list({2L, 3L}));
  auto fromproc = mb.receive<Term>(10s);
  REQUIRE(fromproc);
  CHECK(fromproc->to_string() == "{erpc, {ok, 5}}");
  spawn(erpc_caller, mb.pid(), k, std::string("Test.block"), Term::list({}));
  auto fromproc_to = mb.receive<Term>(10s);
  REQUIRE(fromproc_to);
  CHECK(fromproc_to->to_string() == "{erpc, {error, {erpc, timeout}}}");
  // multicall: in the order asked, this node included
  auto all = erpc::multicall(mb, {k, atom("alex@localhost"), atom("moebi@localhost")}, "Test.whoami");
  REQUIRE(all.size() == 3);
  CHECK(all[0].to_term().to_string() == "{ok, kate@localhost}");
  CHECK(all[1].to_term().to_string() == "{ok, alex@localhost}");
  CHECK(all[2].to_term().to_string() == "{error, {erpc, noconnection}}");
  // cast: runs there, nothing comes back
  erpc::cast(k, "Test.print", Term::list({"by cast"}));
  CHECK(eventually([&] { return count_of(kate.out(), "printed by cast") == 1; }));
  // nothing was left behind in the caller's mailbox (late results, DOWNs)
  CHECK(mb.flush().empty());
  // kate is killed while a call runs there: {erpc, noconnection}
  std::optional<Expected<Term>> mid;
  std::thread caller([&] {
    Mailbox own;
    mid = erpc::call(own, k, "Test.block", Term::list({}), 60s);
  });
  REQUIRE(eventually([&] { return count_of(kate.out(), "blocking") == 3; }));
  kate.signal(SIGKILL);
  caller.join();
  REQUIRE(mid);
  REQUIRE(!*mid);
  CHECK(mid->error().reason.to_string() == "{erpc, noconnection}");
}

TEST_CASE("erpc on this node, with no distribution running", "[erpc]") {
  Runtime rt;
  register_test_functions();
  Mailbox mb;
  CHECK(*erpc::call(mb, node::self(), "Test.add", Term::list({4L, 5L})) == Term(9L));
  CHECK(erpc::call(mb, node::self(), "Test.nope").error().code == Errc::not_found);
  CHECK(mb.flush().empty());
}

TEST_CASE("gen_server multi_call and abcast over nodes: replies by node, bad nodes apart", "[distributed]") {
  Peer peer;
  Child& kate = *peer.kate;
  Runtime rt;
  gen_server::start(std::make_unique<Echo>(), {.name = atom("echo")}).value();
  Node node({.name = "alex@localhost", .cookie = "c", .ticktime = 1000ms});
  Mailbox mb;
  const std::vector<Atom> nodes{atom("kate@localhost"), atom("alex@localhost"), atom("moebi@localhost")};
  auto r = gen_server::multi_call(mb, nodes, atom("echo"), atom("hi"), 10s);
  CHECK(r.to_term().to_string() ==
        "{[{kate@localhost, {kate@localhost, hi}}, {alex@localhost, {alex@localhost, hi}}], [moebi@localhost]}");
  // a name that is not registered on a node: that node is bad
  auto none = gen_server::multi_call(mb, {atom("kate@localhost")}, atom("nobody"), atom("hi"), 10s);
  CHECK(none.replies.empty());
  CHECK(none.bad_nodes == std::vector<Atom>{atom("kate@localhost")});
  gen_server::abcast({atom("kate@localhost"), atom("moebi@localhost")}, atom("echo"), tuple(atom("print"), "abc"));
  CHECK(eventually([&] { return count_of(kate.out(), "echo cast abc") == 1; }));
  CHECK(mb.flush().empty());
}
