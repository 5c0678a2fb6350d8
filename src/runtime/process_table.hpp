// Pid -> Process lookup (lock-free reads) and the type-stable pool of control blocks.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "process.hpp"

namespace nodus::runtime {

/// Control blocks are never returned to the system while the runtime lives (type-stable
/// memory), so lookups may touch a block that has just been recycled and notice it.
class ProcessPool {
 public:
  ProcessPool() = default;
  ProcessPool(const ProcessPool&) = delete;
  Process* get();
  void put(Process* p);

 private:
  std::mutex mu_;
  std::vector<Process*> free_;
  std::vector<std::unique_ptr<Process[]>> chunks_;
};

/// Slots indexed by a pid's id; a slot's serial counts its reuses, so an old pid of a reused
/// slot does not resolve. Free ids are reused oldest first, to delay reuse.
class ProcessTable {
 public:
  static constexpr std::uint32_t chunk_bits = 12;
  static constexpr std::uint32_t chunk_size = 1u << chunk_bits;
  static constexpr std::uint32_t max_chunks = 1u << 14;  // 64M processes

  ProcessTable();
  ~ProcessTable();
  ProcessTable(const ProcessTable&) = delete;

  /// Publishes `p` under a fresh id/serial (sets p->ident). False if the table is full.
  bool insert(Process* p);
  void remove(Process* p);
  /// The block of the live local process `pid` names, or nullptr. No reference is taken: the
  /// block may be recycled at any time, so callers re-check identity under its lock (or, for
  /// delivery, stamp the node with it).
  Process* lookup(const Pid& pid) const;
  /// Every published process, for shutdown (workers stopped).
  std::vector<Process*> snapshot() const;
  std::size_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    std::atomic<Process*> proc{nullptr};
    std::uint32_t serial = 0;  // guarded by mu_
  };
  Slot* slot(std::uint32_t id) const;

  std::unique_ptr<std::atomic<Slot*>[]> chunks_;
  mutable std::mutex mu_;
  std::deque<std::uint32_t> free_ids_;
  std::uint32_t next_id_ = 0;
  std::atomic<std::size_t> count_{0};
};

}  // namespace nodus::runtime
