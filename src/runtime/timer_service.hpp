// One thread delivers every timed message (send_after, receive timeouts): no thread per timer.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/receive.hpp"

namespace nodus::runtime {

class TimerService {
 public:
  TimerService();
  ~TimerService();
  TimerService(const TimerService&) = delete;

  /// Delivers `n` to `to` at `deadline`. Takes ownership of `n`. Returns the timer id (never 0).
  std::uint64_t add(Clock::time_point deadline, const Pid& to, detail::MsgNode* n);
  /// At `deadline`, marks receive `token` of `to` timed out (fire_timeout). Returns the id.
  std::uint64_t add_timeout(Clock::time_point deadline, const Pid& to, std::uint64_t token);
  /// Removes a pending timer and frees its node: its deadline; nullopt if it fired already or
  /// never existed.
  std::optional<Clock::time_point> cancel(std::uint64_t id);
  void stop();
  std::size_t pending() const;

 private:
  struct Entry {
    Pid to;
    detail::MsgNode* node;  ///< null for a receive timeout
    std::uint64_t token = 0;
  };
  std::uint64_t insert(Clock::time_point deadline, Entry e);
  using Key = std::pair<Clock::time_point, std::uint64_t>;
  void loop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, Entry> by_deadline_;
  std::unordered_map<std::uint64_t, Clock::time_point> deadline_of_;
  std::uint64_t next_id_ = 1;
  bool stop_ = false;
  // When the timer thread will next look at the map: max while it waits for a notify, min
  // while it is awake (it looks again before sleeping). add() notifies only for a deadline
  // before it, so timers that come and go (a receive timeout per call) cost no thread wake-up.
  Clock::time_point wake_at_ = Clock::time_point::min();
  Clock::time_point last_add_{};
  std::thread thread_;
};

}  // namespace nodus::runtime
