// The timer thread.
#include "timer_service.hpp"

#include <vector>

#include "process.hpp"

namespace nodus::runtime {

TimerService::TimerService() : thread_([this] { loop(); }) {}

TimerService::~TimerService() {
  stop();
  for (auto& [k, e] : by_deadline_) e.node->type->destroy(e.node);
}

void TimerService::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t TimerService::add(Clock::time_point deadline, const Pid& to, detail::MsgNode* n) {
  bool earliest;
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    auto it = by_deadline_.emplace(Key{deadline, id}, Entry{to, n}).first;
    deadline_of_.emplace(id, deadline);
    earliest = it == by_deadline_.begin();
  }
  if (earliest) cv_.notify_one();
  return id;
}

bool TimerService::cancel(std::uint64_t id) {
  detail::MsgNode* n = nullptr;
  {
    std::lock_guard lock(mu_);
    auto d = deadline_of_.find(id);
    if (d == deadline_of_.end()) return false;
    auto it = by_deadline_.find(Key{d->second, id});
    n = it->second.node;
    by_deadline_.erase(it);
    deadline_of_.erase(d);
  }
  n->type->destroy(n);
  return true;
}

std::size_t TimerService::pending() const {
  std::lock_guard lock(mu_);
  return by_deadline_.size();
}

void TimerService::loop() {
  std::vector<Entry> due;
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (by_deadline_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto next = by_deadline_.begin()->first.first;
    if (Clock::now() < next) {
      cv_.wait_until(lock, next);
      continue;
    }
    const auto now = Clock::now();
    for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first.first <= now;) {
      due.push_back(it->second);
      deadline_of_.erase(it->first.second);
      it = by_deadline_.erase(it);
    }
    lock.unlock();
    for (auto& e : due) deliver_local(e.to, e.node);
    due.clear();
    lock.lock();
  }
}

}  // namespace nodus::runtime
