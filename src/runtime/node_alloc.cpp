// Mailbox node allocation: per-thread free lists per size class, handed between threads in
// batches. A producer allocating on one core and a consumer freeing on another meet at a
// mutex once per batch instead of contending on malloc's bins for every message.
#include <cstddef>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "nodus/message.hpp"

namespace nodus::detail {
namespace {

constexpr std::size_t kSizes[] = {32, 48, 64, 80, 96, 112, 128, 192, 256, 384, 512};
constexpr std::size_t kClasses = sizeof(kSizes) / sizeof(kSizes[0]);
constexpr std::size_t kBatch = 64;

constexpr std::size_t class_of(std::size_t size) {
  for (std::size_t c = 0; c < kClasses; ++c) {
    if (size <= kSizes[c]) return c;
  }
  return kClasses;
}

struct FreeNode {
  FreeNode* next;
};

// Batches of free nodes shared by all threads; slabs are kept for the program's life.
struct Depot {
  std::mutex mu;
  std::vector<std::pair<FreeNode*, std::size_t>> batches;  // list and its length
  std::vector<void*> slabs;
};

Depot& depot(std::size_t c) {
  static Depot* d = new Depot[kClasses];  // never destroyed: threads may free late
  return d[c];
}

// Trivial, so an access needs no init guard; CacheReaper hands its nodes back at thread exit.
struct LocalCache {
  FreeNode* head[kClasses];
  std::size_t count[kClasses];

  void refill(std::size_t c);
  void give_batch(std::size_t c, std::size_t n);
  void release_all() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (count[c] > 0) give_batch(c, count[c] < kBatch ? count[c] : kBatch);
    }
  }
};

__attribute__((tls_model("initial-exec"))) constinit thread_local LocalCache t_cache{};

struct CacheReaper {
  ~CacheReaper() { t_cache.release_all(); }
};
thread_local CacheReaper t_reaper;

void LocalCache::refill(std::size_t c) {
  (void)&t_reaper;  // first slow path of this thread: make sure the cache is handed back at exit
  Depot& d = depot(c);
  {
    std::lock_guard lock(d.mu);
    if (!d.batches.empty()) {
      head[c] = d.batches.back().first;
      count[c] = d.batches.back().second;
      d.batches.pop_back();
      return;
    }
  }
  const std::size_t sz = kSizes[c];
  char* slab = static_cast<char*>(::operator new(sz * kBatch));
  {
    std::lock_guard lock(d.mu);
    d.slabs.push_back(slab);
  }
  FreeNode* list = nullptr;
  for (std::size_t i = kBatch; i-- > 0;) {
    auto* f = reinterpret_cast<FreeNode*>(slab + i * sz);
    f->next = list;
    list = f;
  }
  head[c] = list;
  count[c] = kBatch;
}

// Moves `n` nodes from the front of the local list to the depot as one batch.
void LocalCache::give_batch(std::size_t c, std::size_t n) {
  (void)&t_reaper;
  FreeNode* first = head[c];
  FreeNode* last = first;
  for (std::size_t i = 1; i < n; ++i) last = last->next;
  head[c] = last->next;
  last->next = nullptr;
  count[c] -= n;
  Depot& d = depot(c);
  std::lock_guard lock(d.mu);
  d.batches.emplace_back(first, n);
}

}  // namespace

void* node_alloc(std::size_t size) {
  const std::size_t c = class_of(size);
  if (c == kClasses) return ::operator new(size);
  LocalCache& lc = t_cache;
  if (lc.head[c] == nullptr) lc.refill(c);
  FreeNode* f = lc.head[c];
  lc.head[c] = f->next;
  --lc.count[c];
  return f;
}

void node_free(void* p, std::size_t size) noexcept {
  const std::size_t c = class_of(size);
  if (c == kClasses) {
    ::operator delete(p);
    return;
  }
  LocalCache& lc = t_cache;
  auto* f = static_cast<FreeNode*>(p);
  f->next = lc.head[c];
  lc.head[c] = f;
  if (++lc.count[c] >= 2 * kBatch) lc.give_batch(c, kBatch);
}

}  // namespace nodus::detail
