// M:N scheduler: a few worker threads run every process; run queues per worker plus a shared
// injection queue; idle workers steal, spin briefly, then sleep on a futex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "process.hpp"

namespace nodus::runtime {

class Scheduler {
 public:
  explicit Scheduler(unsigned workers);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;

  void start();
  /// Stops and joins the workers; processes still queued stay queued (the runtime frees them).
  void stop();
  /// Queues a process whose state the caller moved to `queued`. From a worker it becomes that
  /// worker's runnext (the woken process likely wants the data just sent), else it goes to the
  /// shared queue.
  void enqueue(Process* p) noexcept;
  unsigned workers() const { return static_cast<unsigned>(workers_.size()); }

 private:
  struct Queue {
    std::mutex mu;
    Process* head = nullptr;
    Process* tail = nullptr;
    std::atomic<std::size_t> size{0};
    void push(Process* p);
    Process* pop();
  };
  struct Worker {
    Queue queue;
    /// The process this worker woke last runs next, here (its partner in a ping-pong is about
    /// to wait). Others steal it only once it has sat there for a grace period while this
    /// worker kept running the same process: a woken receiver then finds a batch waiting.
    std::atomic<Process*> runnext{nullptr};
    std::atomic<std::uint64_t> ticks{0};  ///< processes run so far; thieves watch it move
    struct Seen {
      Process* proc = nullptr;
      std::uint64_t tick = 0;
      int times = 0;
    };
    std::vector<Seen> seen;  ///< owner only: last look at each victim's runnext
    std::thread thread;
    unsigned index = 0;
  };

  void loop(Worker& w);
  Process* find_work(Worker& w);
  Process* steal_runnext(Worker& w);
  void run(Worker& w, Process* p);
  void wake_one() noexcept;

  std::vector<std::unique_ptr<Worker>> workers_;
  Queue shared_;
  std::atomic<std::uint32_t> wake_seq_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> spinners_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace nodus::runtime
