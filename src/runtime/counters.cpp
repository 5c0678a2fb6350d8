// Per-thread counters: a registry of blocks, summed on read.
#include "counters.hpp"

#include <mutex>

#include "spin_lock.hpp"

namespace nodus::runtime {
namespace {
struct Registry {
  std::mutex mu;
  CounterBlock* head = nullptr;
  std::uint64_t retired[kCounters] = {};
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may exit after static teardown
  return *r;
}

// Unregisters the thread's block when the thread exits, folding its counts into `retired`.
NODUS_TLS CounterBlock* tl_block = nullptr;
NODUS_TLS bool tl_exited = false;  // the thread's Owner is gone (a destructor that runs later)

struct Owner {
  CounterBlock* block = nullptr;
  ~Owner() {
    tl_exited = true;
    tl_block = nullptr;
    if (block == nullptr) return;
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    for (unsigned i = 0; i < kCounters; ++i) r.retired[i] += block->v[i].load(std::memory_order_relaxed);
    for (CounterBlock** l = &r.head; *l; l = &(*l)->next) {
      if (*l == block) {
        *l = block->next;
        break;
      }
    }
    delete block;
  }
};

CounterBlock& make_block() noexcept {
  if (tl_exited) {
    static CounterBlock lost;  // counts of a thread's last moments (not summed)
    return lost;
  }
  static thread_local Owner owner;
  auto* b = new CounterBlock;
  Registry& r = registry();
  {
    std::lock_guard lock(r.mu);
    b->next = r.head;
    r.head = b;
  }
  owner.block = b;
  tl_block = b;
  return *b;
}
}  // namespace

CounterBlock& thread_counters() noexcept { return tl_block ? *tl_block : make_block(); }

std::array<std::uint64_t, kCounters> sum_counters() noexcept {
  std::array<std::uint64_t, kCounters> out{};
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (unsigned i = 0; i < kCounters; ++i) out[i] = r.retired[i];
  for (CounterBlock* b = r.head; b; b = b->next) {
    for (unsigned i = 0; i < kCounters; ++i) out[i] += b->v[i].load(std::memory_order_relaxed);
  }
  return out;
}

}  // namespace nodus::runtime
