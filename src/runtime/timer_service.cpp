// The timer thread.
#include "timer_service.hpp"

#include <vector>

#include "process.hpp"

namespace nodus::runtime {

TimerService::TimerService() : thread_([this] { loop(); }) {}

TimerService::~TimerService() {
  stop();
  for (auto& [k, e] : by_deadline_) {
    if (e.node) e.node->type->destroy(e.node);
  }
}

void TimerService::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {
// While timers are being added, the timer thread wakes at least this often on its own, so a
// far deadline (a 5 s receive timeout) never needs to wake it...
constexpr auto kTick = std::chrono::milliseconds(50);
// ...for this long after the last add; then it sleeps until the next deadline or a notify.
constexpr auto kLinger = std::chrono::seconds(1);
}  // namespace

std::uint64_t TimerService::add(Clock::time_point deadline, const Pid& to, detail::MsgNode* n) {
  return insert(deadline, Entry{to, n});
}

std::uint64_t TimerService::add_timeout(Clock::time_point deadline, const Pid& to,
                                        std::uint64_t token) {
  return insert(deadline, Entry{to, nullptr, token});
}

std::uint64_t TimerService::insert(Clock::time_point deadline, Entry e) {
  bool notify;
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    by_deadline_.emplace(Key{deadline, id}, e);
    deadline_of_.emplace(id, deadline);
    notify = deadline < wake_at_;  // the thread would look too late
    last_add_ = Clock::now();
  }
  if (notify) cv_.notify_one();
  return id;
}

std::optional<Clock::time_point> TimerService::cancel(std::uint64_t id) {
  detail::MsgNode* n = nullptr;
  Clock::time_point at;
  {
    std::lock_guard lock(mu_);
    auto d = deadline_of_.find(id);
    if (d == deadline_of_.end()) return std::nullopt;
    at = d->second;
    auto it = by_deadline_.find(Key{d->second, id});
    n = it->second.node;
    by_deadline_.erase(it);
    deadline_of_.erase(d);
  }
  if (n) n->type->destroy(n);
  return at;
}

std::size_t TimerService::pending() const {
  std::lock_guard lock(mu_);
  return by_deadline_.size();
}

void TimerService::loop() {
  mark_internal_thread();  // a timer's send never waits on a send budget
  std::vector<Entry> due;
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    if (by_deadline_.empty() || now < by_deadline_.begin()->first.first) {
      auto until = by_deadline_.empty() ? Clock::time_point::max() : by_deadline_.begin()->first.first;
      if (now - last_add_ < kLinger) until = std::min(until, now + kTick);
      wake_at_ = until;
      if (until == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, until);
      }
      wake_at_ = Clock::time_point::min();  // awake: looks at the map before sleeping again
      continue;
    }
    for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first.first <= now;) {
      due.push_back(it->second);
      deadline_of_.erase(it->first.second);
      it = by_deadline_.erase(it);
    }
    lock.unlock();
    for (auto& e : due) {
      if (e.node) {
        deliver_local(e.to, e.node);
      } else {
        fire_timeout(e.to, e.token);
      }
    }
    due.clear();
    lock.lock();
  }
}

}  // namespace nodus::runtime
