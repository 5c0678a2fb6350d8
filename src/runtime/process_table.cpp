// Pid -> Process lookup and the control-block pool.
#include "process_table.hpp"

namespace nodus::runtime {

Process* ProcessPool::get() {
  std::lock_guard lock(mu_);
  if (free_.empty()) {
    constexpr std::size_t n = 1024;
    chunks_.push_back(std::make_unique<Process[]>(n));
    Process* c = chunks_.back().get();
    free_.reserve(free_.size() + n);
    for (std::size_t i = n; i-- > 0;) free_.push_back(&c[i]);
  }
  Process* p = free_.back();
  free_.pop_back();
  return p;
}

void ProcessPool::put(Process* p) {
  std::lock_guard lock(mu_);
  free_.push_back(p);
}

ProcessTable::ProcessTable() : chunks_(new std::atomic<Slot*>[max_chunks]) {
  for (std::uint32_t i = 0; i < max_chunks; ++i) chunks_[i].store(nullptr, std::memory_order_relaxed);
}

ProcessTable::~ProcessTable() {
  for (std::uint32_t i = 0; i < max_chunks; ++i) delete[] chunks_[i].load(std::memory_order_relaxed);
}

ProcessTable::Slot* ProcessTable::slot(std::uint32_t id) const {
  Slot* c = chunks_[id >> chunk_bits].load(std::memory_order_acquire);
  return c ? &c[id & (chunk_size - 1)] : nullptr;
}

bool ProcessTable::insert(Process* p) {
  std::uint32_t id, serial;
  Slot* s;
  {
    std::lock_guard lock(mu_);
    // keep a few thousand ids in reserve so a dying pid's slot is not reused at once
    if (free_ids_.size() > 4096 || next_id_ == max_chunks * chunk_size) {
      if (free_ids_.empty()) return false;
      id = free_ids_.front();
      free_ids_.pop_front();
    } else {
      id = next_id_++;
      if ((id & (chunk_size - 1)) == 0) {
        chunks_[id >> chunk_bits].store(new Slot[chunk_size], std::memory_order_release);
      }
    }
    s = slot(id);
    if (++s->serial == 0) s->serial = 1;  // serial 0 means "no process"
    serial = s->serial;
  }
  p->ident.store((std::uint64_t(id) << 32) | serial, std::memory_order_release);
  s->proc.store(p, std::memory_order_release);
  count_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ProcessTable::remove(Process* p) {
  const std::uint64_t ident = p->ident.load(std::memory_order_relaxed);
  const auto id = static_cast<std::uint32_t>(ident >> 32);
  slot(id)->proc.store(nullptr, std::memory_order_release);
  count_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  free_ids_.push_back(id);
}

Process* ProcessTable::lookup(const Pid& pid) const {
  if (pid.serial == 0 || (pid.id >> chunk_bits) >= max_chunks) return nullptr;
  Slot* s = slot(pid.id);
  if (s == nullptr) return nullptr;
  Process* p = s->proc.load(std::memory_order_acquire);
  if (p == nullptr || p->ident.load(std::memory_order_acquire) != ident_of(pid)) return nullptr;
  return p;
}

std::vector<Process*> ProcessTable::snapshot() const {
  std::vector<Process*> out;
  std::uint32_t n;
  {
    std::lock_guard lock(mu_);
    n = next_id_;
  }
  for (std::uint32_t id = 0; id < n; ++id) {
    Slot* s = slot(id);
    Process* p = s ? s->proc.load(std::memory_order_acquire) : nullptr;
    if (p) out.push_back(p);
  }
  return out;
}

}  // namespace nodus::runtime
