// Pid/Ref printing and this node's identity.
#include "nodus/pid.hpp"

#include <atomic>
#include <ostream>

#include <fmt/format.h>

namespace nodus {
namespace {
std::atomic<std::uint32_t> g_node_name{0};
std::atomic<std::uint32_t> g_creation{0};
std::atomic<std::uint64_t> g_next_ref{1};

// Remote pids print with a small per-node number, as Erlang prints the connection's index;
// the atom id is stable for the life of this OS process, which is what matters.
std::uint32_t node_number(const Atom& node, std::uint32_t creation) {
  const auto me = detail::local_node();
  return (node == me.name && creation == me.creation) ? 0 : node.id();
}
}  // namespace

namespace detail {
LocalNode local_node() {
  if (g_node_name.load(std::memory_order_acquire) == 0) {
    static const Atom nonode{"nonode@nohost"};
    std::uint32_t expected = 0;
    g_node_name.compare_exchange_strong(expected, nonode.id());
  }
  return {Atom::from_id(g_node_name.load(std::memory_order_acquire)),
          g_creation.load(std::memory_order_acquire)};
}
void set_local_node(Atom name, std::uint32_t creation) {
  g_creation.store(creation, std::memory_order_release);
  g_node_name.store(name.id(), std::memory_order_release);
}
}  // namespace detail

Atom node_name() { return detail::local_node().name; }

bool Pid::is_local() const {
  const auto me = detail::local_node();
  return node == me.name && creation == me.creation;
}

Ref make_ref() {
  const auto me = detail::local_node();
  return Ref{me.name, me.creation, g_next_ref.fetch_add(1, std::memory_order_relaxed)};
}

std::string to_string(const Pid& pid) {
  // Serial 0 is reserved for "no process", so the first use of a slot prints as `.0` like Erlang.
  return fmt::format("<{}.{}.{}>", node_number(pid.node, pid.creation), pid.id,
                     pid.serial == 0 ? 0 : pid.serial - 1);
}

std::string to_string(const Ref& ref) {
  return fmt::format("#Ref<{}.{}>", node_number(ref.node, ref.creation), ref.id);
}

std::ostream& operator<<(std::ostream& os, const Pid& pid) { return os << to_string(pid); }
std::ostream& operator<<(std::ostream& os, const Ref& ref) { return os << to_string(ref); }

}  // namespace nodus
