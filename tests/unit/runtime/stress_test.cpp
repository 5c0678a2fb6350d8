// Concurrency stress: exits, links and monitors racing each other, recycled control blocks.
// Worth most under TSan (./scripts/test.sh --tsan).
#include <set>
#include <vector>

#include "helpers.hpp"

using namespace nodus;
using namespace nodus::test;

namespace {
struct Go {};

Proc exit_with(int n) {
  co_await receive<Go>();
  exit_self(n);
}
}  // namespace

TEST_CASE("every monitor fires exactly once, with its reason, under churn", "[stress]") {
  Runtime rt;
  Mailbox mb;
  constexpr int n = 20000;
  std::vector<std::pair<Pid, Ref>> procs;
  procs.reserve(n);
  for (int i = 0; i < n; ++i) procs.push_back(spawn_monitor(exit_with, i));
  for (auto& [p, r] : procs) send(p, Go{});
  std::set<std::int64_t> reasons;
  for (int i = 0; i < n; ++i) {
    auto d = mb.receive<Down>(kWait);
    REQUIRE(d);
    reasons.insert(d->reason.as_int());
  }
  CHECK(reasons.size() == n);
  CHECK_FALSE(mb.receive<Down>(20ms).has_value());
}

TEST_CASE("a message to a dead pid never reaches the process reusing its block", "[stress]") {
  Runtime rt;
  Mailbox mb;
  for (int round = 0; round < 200; ++round) {
    auto [old, r] = spawn_monitor(exit_with, 0);
    send(old, Go{});
    wait_down(mb, r);
    Pid fresh = spawn([](Pid to) -> Proc {
      Term first = co_await receive<Term>();
      send(to, first);
    }, self());
    send(old, atom("stale"));   // must be dropped
    send(fresh, atom("fresh"));
    auto got = mb.receive<Term>(kWait);
    REQUIRE(got);
    REQUIRE(got->to_string() == "fresh");
  }
}

TEST_CASE("links, monitors and exits racing across schedulers stay consistent", "[stress]") {
  Runtime rt;
  Mailbox mb;
  mb.trap_exit(true);
  constexpr int n = 2000;
  std::vector<Pid> ring;
  for (int i = 0; i < n; ++i) ring.push_back(spawn_link(exit_with, i));
  // every process links to and monitors its neighbour while the ring collapses
  std::vector<Ref> helpers;
  for (int i = 0; i < n; ++i) {
    helpers.push_back(spawn_monitor([](Pid a, Pid b) -> Proc {
      trap_exit(true);
      link(a);
      monitor(b);
      send(a, Go{});
      co_return;
    }, ring[i], ring[(i + 1) % n]).second);
  }
  int exits = 0;
  while (exits < n) {
    auto e = mb.receive<ExitMsg>(kWait);
    REQUIRE(e);
    ++exits;
  }
  // every helper saw its neighbour go (its link and monitor fired) and ended normally
  for (const Ref& r : helpers) CHECK(wait_down(mb, r).reason.to_string() == "normal");
}
