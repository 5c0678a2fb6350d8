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

  /// Observability: one worker as seen now.
  struct WorkerStats {
    std::uint64_t runs = 0;     ///< process slices run so far
    std::int64_t busy_ns = 0;   ///< time not idle since the scheduler started
    std::int64_t up_ns = 0;     ///< time since the scheduler started
    std::size_t queue = 0;      ///< processes in its run queue (and its runnext)
    Process* running = nullptr; ///< the process it runs now (only compare it, never follow it)
  };
  std::vector<WorkerStats> worker_stats() const;
  /// Processes in the shared queue.
  std::size_t shared_queue() const { return shared_.size.load(std::memory_order_relaxed); }

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
    // observability: written by the worker only, at idle transitions (no clock read per run)
    std::atomic<Process*> running{nullptr};
    std::atomic<std::int64_t> idle_ns{0};     ///< idle time before the current idle spell
    std::atomic<std::int64_t> idle_since{0};  ///< steady ns when the current idle spell began (0: busy)
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
  std::int64_t started_ns_ = 0;
};

}  // namespace nodus::runtime
