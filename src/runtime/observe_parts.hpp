// The parts of nodus::observe each layer fills in (runtime, distribution, OTP): declared in the
// lowest layer, defined where the data lives, assembled by the OTP layer (otp/observe.cpp).
// Private to the library.
#pragma once

#include <cstddef>

#include "nodus/observe.hpp"

namespace nodus::detail {
std::size_t atom_count();  // (runtime/atom.cpp)
}  // namespace nodus::detail

namespace nodus::observe::parts {
/// Processes, exits, schedulers, run queues, timers, atoms (runtime/observe.cpp).
void fill_runtime(Stats& s);
/// Peers and connection events, if a node runs (dist/node.cpp).
void fill_dist(Stats& s);
/// Supervisor restarts and give-ups (the runtime's per-thread counters).
void count_supervisor_restart() noexcept;
void count_supervisor_give_up() noexcept;
/// A send waited for `node`'s send budget (dist): a busy_peer event for the system monitor.
void note_busy_peer(Atom node) noexcept;
}  // namespace nodus::observe::parts
