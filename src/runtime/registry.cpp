// Registered names.
#include "registry.hpp"

#include <array>
#include <atomic>
#include <mutex>

namespace nodus::runtime {

namespace {
// Every change to any Registry (and every new one) moves this on: a thread's cached answer is
// good while it has not moved. A send to a registered name then reads one shared counter
// instead of taking the registry's lock (a lock's atomic write bounced its cache line between
// the threads that deliver messages: 5% of a receiving node's time in dist_oneway_1k).
std::atomic<std::uint64_t> g_generation{1};

struct Cached {
  const Registry* registry = nullptr;
  std::uint32_t name = 0;
  std::uint64_t generation = 0;
  std::optional<Pid> pid;
};
thread_local std::array<Cached, 64> t_cache;
}  // namespace

Registry::Registry() { g_generation.fetch_add(1, std::memory_order_acq_rel); }

bool Registry::add(Atom name, const Pid& pid) {
  std::unique_lock lock(mu_);
  const bool added = names_.emplace(name, pid).second;
  if (added) g_generation.fetch_add(1, std::memory_order_acq_rel);
  return added;
}

bool Registry::erase(Atom name, const Pid& owner) {
  std::unique_lock lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end() || it->second != owner) return false;
  names_.erase(it);
  g_generation.fetch_add(1, std::memory_order_acq_rel);
  return true;
}

std::optional<Pid> Registry::find(Atom name) const {
  const std::uint64_t generation = g_generation.load(std::memory_order_acquire);
  Cached& c = t_cache[name.id() & (t_cache.size() - 1)];
  if (c.generation == generation && c.registry == this && c.name == name.id()) return c.pid;
  std::optional<Pid> pid;
  {
    std::shared_lock lock(mu_);
    if (auto it = names_.find(name); it != names_.end()) pid = it->second;
  }
  // (cached with the generation read before the lookup: a change meanwhile makes it stale)
  c = {this, name.id(), generation, pid};
  return pid;
}

}  // namespace nodus::runtime
