// The per-peer link and monitor table (src/dist/peer_links.hpp).
#include <catch2/catch.hpp>

#include "dist/peer_links.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using nodus::dist::PeerLinks;

namespace {
Pid remote(const char* node, std::uint32_t id) { return Pid{atom(node), 7, id, 1}; }
Pid local(std::uint32_t id) { return Pid{Atom(), 0, id, 1}; }
}  // namespace

TEST_CASE("peer links: losing a node takes exactly its links and monitors, name entries included", "[links]") {
  Runtime rt;  // (refs)
  PeerLinks t;
  t.link(local(1), remote("kate@h", 10));
  t.link(local(2), remote("kate@h", 11));
  t.link(local(1), remote("alex@h", 12));
  const Ref r1 = make_ref(), r2 = make_ref(), r3 = make_ref();
  t.monitor(local(3), remote("kate@h", 13), r1);
  t.monitor(local(3), Pid{atom("kate@h"), 0, 0, 0}, r2);  // by name, not resolved yet
  t.monitor_name(r2, atom("kv"));
  t.monitor(local(4), remote("alex@h", 14), r3);
  CHECK(t.name_of(r2) == atom("kv"));

  auto lost = t.take(atom("kate@h"));
  CHECK(lost.links.size() == 2);
  CHECK(lost.monitors.size() == 2);
  CHECK_FALSE(t.name_of(r2).has_value());  // nothing kept for a monitor that fired
  auto again = t.take(atom("kate@h"));
  CHECK(again.links.empty());
  CHECK(again.monitors.empty());
  auto other = t.take(atom("alex@h"));
  CHECK(other.links.size() == 1);
  CHECK(other.monitors.size() == 1);
  CHECK(t.size() == 0);
}

TEST_CASE("peer links: unlink and demonitor remove one entry; retarget keeps the monitor, drops the name",
          "[links]") {
  Runtime rt;
  PeerLinks t;
  t.link(local(1), remote("kate@h", 10));
  t.link(local(1), remote("kate@h", 10));  // linked twice (two link requests): two entries
  t.unlink(local(1), remote("kate@h", 10));
  CHECK(t.take(atom("kate@h")).links.size() == 1);
  const Ref r = make_ref();
  t.monitor(local(2), Pid{atom("kate@h"), 0, 0, 0}, r);
  t.monitor_name(r, atom("kv"));
  t.retarget(r, remote("kate@h", 20));
  CHECK_FALSE(t.name_of(r).has_value());
  auto lost = t.take(atom("kate@h"));
  REQUIRE(lost.monitors.size() == 1);
  CHECK(std::get<2>(lost.monitors[0]) == remote("kate@h", 20));
  const Ref d = make_ref();
  t.monitor(local(2), remote("kate@h", 21), d);
  t.demonitor(d);
  CHECK(t.take(atom("kate@h")).monitors.empty());
}
