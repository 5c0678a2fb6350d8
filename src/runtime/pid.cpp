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

// Local pids and refs carry no node (the empty atom): they stay local when the node gets a
// name. Remote ones print with a small per-node number (the atom id, stable in this OS process).
std::uint32_t node_number(const Atom& node, std::uint32_t) { return node.id(); }
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

bool Pid::is_local() const { return node.id() == 0; }

Ref make_ref() { return Ref{Atom(), 0, g_next_ref.fetch_add(1, std::memory_order_relaxed)}; }

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
