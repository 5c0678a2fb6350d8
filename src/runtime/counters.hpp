// Event counters kept per thread (observability): each thread bumps its own block with a
// relaxed load and store (no lock, no atomic read-modify-write), and a reader sums the blocks.
// A thread's counts are folded into the retired totals when it exits. Private to the library.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace nodus::runtime {

enum class Count : unsigned {
  spawned,
  exit_normal,        ///< normal
  exit_shutdown,      ///< shutdown, {shutdown, _}
  exit_killed,        ///< killed (an untrappable kill)
  exit_exception,     ///< {exception, Type, What}: the body threw
  exit_noconnection,  ///< noconnection (a link to a node that went down)
  exit_other,         ///< any other reason
  supervisor_restarts,
  supervisor_give_ups,
  kCount
};
inline constexpr unsigned kCounters = static_cast<unsigned>(Count::kCount);

struct CounterBlock {
  std::atomic<std::uint64_t> v[kCounters] = {};
  CounterBlock* next = nullptr;  ///< the registry's list (under its mutex)
};

/// This thread's block (registered on first use).
CounterBlock& thread_counters() noexcept;

inline void bump(Count c) noexcept {
  std::atomic<std::uint64_t>& a = thread_counters().v[static_cast<unsigned>(c)];
  a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

/// Every thread's counts, and those of threads that exited, since the program started.
std::array<std::uint64_t, kCounters> sum_counters() noexcept;

}  // namespace nodus::runtime
