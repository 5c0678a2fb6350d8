// Worker threads: take a runnable process, resume it until it waits, exits or yields.
#include "scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "context.hpp"
#include "trace.hpp"
#include "nodus/log.hpp"

namespace nodus::runtime {
namespace {
NODUS_TLS Scheduler* tl_sched = nullptr;
NODUS_TLS void* tl_worker = nullptr;

// Records for other nodes leave before the process can run on another thread.
inline void flush_remote() noexcept {
  if (tl_remote_pending) {
    if (const RemoteHooks* h = remote_hooks()) {
      h->flush();
    } else {
      tl_remote_pending = false;
    }
  }
}
}  // namespace

thread_local __attribute__((tls_model("initial-exec"))) bool tl_remote_pending = false;
std::atomic<bool> g_remote_staged{false};
std::atomic<int> g_inbound_pollers{0};
bool on_worker() noexcept { return tl_worker != nullptr; }

namespace {
using SteadyClock = std::chrono::steady_clock;
// An idle worker polls this long before sleeping (it must outlast kRunnextGrace). It also
// decides remote round-trip latency: a reply that arrives while the worker still polls avoids
// a futex wake-up. On the 2-core VM, dist_pingpong p50 was ~150 us at 50 us of polling and
// ~50 us at 100 us (200 us: no better, and local_send lost ~15% to the polling worker).
constexpr auto kIdleSpin = std::chrono::microseconds(100);
// How long a woken process may wait in a busy worker's runnext before another worker takes it.
// Longer grace = bigger batches for a streaming receiver (local_send: 10M/s at ~1 us, 20M/s at
// ~5 us on the 2-core test VM) at the cost of that much wake-up latency behind a busy sender.
constexpr auto kRunnextGrace = std::chrono::microseconds(5);
constexpr int kWakeBudget = 64;  // re-scans in a row before yielding the worker
// A busy worker sends the records staged on channels after this many process slices at most
// (an idle one at once). Staging puts the records of many processes in one ZeroMQ message:
// 64 callers of remote tasks sent one message per call each way before.
constexpr int kStagedSlices = 16;
constexpr int kStaleSightings = 16;
}  // namespace

void Scheduler::Queue::push(Process* p) {
  p->run_next = nullptr;
  std::lock_guard lock(mu);
  if (tail) {
    tail->run_next = p;
  } else {
    head = p;
  }
  tail = p;
  size.fetch_add(1, std::memory_order_release);
}

Process* Scheduler::Queue::pop() {
  if (size.load(std::memory_order_acquire) == 0) return nullptr;
  std::lock_guard lock(mu);
  Process* p = head;
  if (p == nullptr) return nullptr;
  head = p->run_next;
  if (head == nullptr) tail = nullptr;
  size.fetch_sub(1, std::memory_order_relaxed);
  return p;
}

Scheduler::Scheduler(unsigned n) {
  // 0: $NODUS_SCHEDULERS if set (like erl +S), else one per core
  if (n == 0) {
    if (const char* e = std::getenv("NODUS_SCHEDULERS")) n = static_cast<unsigned>(std::strtoul(e, nullptr, 10));
  }
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  n = std::min(n, 1024u);
  for (unsigned i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>());
    workers_.back()->index = i;
    workers_.back()->seen.resize(n);
  }
}

Scheduler::~Scheduler() { stop(); }

namespace {
std::int64_t steady_ns(SteadyClock::time_point t = SteadyClock::now()) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

std::vector<Scheduler::WorkerStats> Scheduler::worker_stats() const {
  const std::int64_t now = steady_ns();
  std::vector<WorkerStats> out;
  out.reserve(workers_.size());
  for (const auto& w : workers_) {
    WorkerStats s;
    s.runs = w->ticks.load(std::memory_order_relaxed);
    s.up_ns = started_ns_ ? now - started_ns_ : 0;
    std::int64_t idle = w->idle_ns.load(std::memory_order_relaxed);
    if (const std::int64_t since = w->idle_since.load(std::memory_order_relaxed); since != 0) idle += now - since;
    s.busy_ns = std::clamp<std::int64_t>(s.up_ns - idle, 0, s.up_ns);
    s.queue = w->queue.size.load(std::memory_order_relaxed) +
              (w->runnext.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
    s.running = w->running.load(std::memory_order_relaxed);
    out.push_back(s);
  }
  return out;
}

void Scheduler::start() {
  started_ns_ = steady_ns();
  for (auto& w : workers_) {
    w->idle_since.store(started_ns_, std::memory_order_relaxed);  // idle until it finds work
    Worker* wp = w.get();
    w->thread = std::thread([this, wp] { loop(*wp); });
  }
}

void Scheduler::stop() {
  if (stop_.exchange(true)) return;
  wake_seq_.fetch_add(1);
  wake_seq_.notify_all();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void Scheduler::enqueue(Process* p) noexcept {
  if (tl_sched == this) {
    Worker& w = *static_cast<Worker*>(tl_worker);
    if (Process* old = w.runnext.exchange(p, std::memory_order_acq_rel)) w.queue.push(old);
  } else {
    NODUS_MARK(enqueue_ext);
    shared_.push(p);
  }
  // only pay for a futex wake when nobody is already looking for work
  if (spinners_.load(std::memory_order_seq_cst) == 0 && sleepers_.load(std::memory_order_seq_cst) > 0) {
    wake_one();
  }
}

void Scheduler::wake_one() noexcept {
  NODUS_MARK(futex_wake);
  wake_seq_.fetch_add(1, std::memory_order_seq_cst);
  wake_seq_.notify_one();
}

Process* Scheduler::steal_runnext(Worker& w) {
  const auto n = workers_.size();
  for (std::size_t i = 1; i < n; ++i) {
    Worker& v = *workers_[(w.index + i) % n];
    Worker::Seen& seen = w.seen[v.index];
    Process* r = v.runnext.load(std::memory_order_acquire);
    const auto tick = v.ticks.load(std::memory_order_acquire);
    if (r != nullptr && r == seen.proc && tick == seen.tick) {
      if (++seen.times >= kStaleSightings &&
          v.runnext.compare_exchange_strong(r, nullptr, std::memory_order_acq_rel)) {
        seen = {};
        return r;
      }
      continue;
    }
    seen = {r, tick, 1};
  }
  return nullptr;
}

Process* Scheduler::find_work(Worker& w) {
  if (Process* p = w.runnext.exchange(nullptr, std::memory_order_acq_rel)) return p;
  if (Process* p = w.queue.pop()) return p;
  if (Process* p = shared_.pop()) return p;
  const auto n = workers_.size();
  for (std::size_t i = 1; i < n; ++i) {
    if (Process* p = workers_[(w.index + i) % n]->queue.pop()) return p;
  }
  return steal_runnext(w);
}

void Scheduler::loop(Worker& w) {
  tl_sched = this;
  tl_worker = &w;
  int slices = 0;
  auto send_staged = [&slices] {
    slices = 0;
    if (g_remote_staged.load(std::memory_order_acquire)) {
      if (const RemoteHooks* h = remote_hooks()) h->flush_staged();
    }
  };
  // idle time is measured at the transitions only: when a look for work finds none, and when
  // work comes after that
  auto busy_again = [&w] {
    if (const std::int64_t since = w.idle_since.load(std::memory_order_relaxed); since != 0) {
      w.idle_ns.store(w.idle_ns.load(std::memory_order_relaxed) + (steady_ns() - since), std::memory_order_relaxed);
      w.idle_since.store(0, std::memory_order_relaxed);
    }
  };
  while (!stop_.load(std::memory_order_acquire)) {
    if (Process* p = find_work(w)) {
      busy_again();
      run(w, p);
      if (++slices >= kStagedSlices) send_staged();
      continue;
    }
    send_staged();
    // spin a little: a message is often about to arrive
    spinners_.fetch_add(1, std::memory_order_seq_cst);
    Process* p = nullptr;
    const auto spin_start = SteadyClock::now();
    const auto spin_end = spin_start + kIdleSpin;
    if (w.idle_since.load(std::memory_order_relaxed) == 0) w.idle_since.store(steady_ns(spin_start), std::memory_order_relaxed);
    const RemoteHooks* hooks = remote_hooks();
    const bool polls = hooks && hooks->poll_inbound;
    if (polls) g_inbound_pollers.fetch_add(1, std::memory_order_seq_cst);
    for (int i = 1; !p && !stop_.load(std::memory_order_relaxed); ++i) {
      cpu_relax();
      if ((i & 15) == 0) {
        // a message from another node: handled here, its process woken into this worker's
        // runnext (the I/O thread would take a wake-up more to get it there)
        if ((i & 31) == 0 && polls) hooks->poll_inbound();
        p = find_work(w);
        if (p || SteadyClock::now() >= spin_end) break;
        // let a runnable thread (the node's I/O thread, ZeroMQ's) have this core: with few
        // cores, pure spinning delayed the very message the worker waits for
        if ((i & 127) == 0) std::this_thread::yield();
      }
    }
    spinners_.fetch_sub(1, std::memory_order_seq_cst);
    // the last poller: the I/O thread watches the input again (at once when this worker goes
    // to sleep; one that found work leaves it to the I/O thread's short wait, see NodeImpl::loop)
    const bool last_poller = polls && g_inbound_pollers.fetch_sub(1, std::memory_order_seq_cst) == 1;
    if (p) {
      busy_again();
      run(w, p);
      continue;
    }
    if (last_poller && hooks->pollers_gone) hooks->pollers_gone();
    // sleep: announce, re-check, then wait for the sequence to move
    const auto seq = wake_seq_.load(std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    p = find_work(w);
    if (!p && !stop_.load(std::memory_order_acquire)) wake_seq_.wait(seq, std::memory_order_seq_cst);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    if (p) {
      busy_again();
      run(w, p);
    }
  }
  tl_sched = nullptr;
  tl_worker = nullptr;
}

void Scheduler::run(Worker& w, Process* p) {
  NODUS_MARK(run);
  w.ticks.fetch_add(1, std::memory_order_release);
  w.running.store(p, std::memory_order_relaxed);
  set_current(p);
  p->state.store(State::running, std::memory_order_relaxed);
  for (int budget = 0;; ++budget) {
    bool resume = false;
    if (p->started && p->held.load(std::memory_order_relaxed)) {
      // held by a send budget, running only to act on exit signals
      if (held_look(p)) {
        Term reason = *p->exit_reason;
        terminate(p, std::move(reason));
        break;
      }
      if (park_held(p)) break;
      if (p->held.load(std::memory_order_relaxed)) continue;  // more input came: look again
    }
    if (!p->started) {
      p->started = true;
      resume = true;
    } else if (p->yielding) {
      p->yielding = false;
      resume = true;
    } else {
      detail::Receiver& r = *p->pending;
      const Scan s = scan(p, r);
      if (s == Scan::must_exit) {
        Term reason = *p->exit_reason;
        terminate(p, std::move(reason));
        break;
      }
      if (s != Scan::no_match) {
        if (r.timer != 0) ctx().timers.cancel(r.timer);  // a no-op if it fired
        r.timer = 0;
        p->pending = nullptr;
        resume = true;
      }
    }
    if (resume) {
      p->resume_point.resume();
      if (p->root.done()) {
        bool crash = false;
        Term reason = p->root.promise().error
                          ? reason_from_exception(p->root.promise().error, &crash)
                          : Term(atoms::normal());
        if (crash) {
          logger().error("Process {} raised an exception: {}", to_string(p->pid()), reason.to_string());
        }
        terminate(p, std::move(reason));
        break;
      }
      if (p->exit_reason) {
        Term reason = *p->exit_reason;
        terminate(p, std::move(reason));
        break;
      }
      if (p->yielding) {
        flush_remote();
        if (p->held.load(std::memory_order_relaxed) && park_held(p)) break;  // resumed when released
        p->state.store(State::queued, std::memory_order_relaxed);
        shared_.push(p);  // behind everyone else, for fairness
        break;
      }
    }
    if (push_in_flight(p)) {  // a sender is mid-push: look again (bounded), do not park
      if (budget < kWakeBudget) continue;
      flush_remote();
      if (p->held.load(std::memory_order_relaxed) && park_held(p)) break;
      p->state.store(State::queued, std::memory_order_relaxed);
      shared_.push(p);
      break;
    }
    // park: publish `waiting`, then make sure no sender slipped in meanwhile. From here on the
    // process may already be running on another worker: only its atomics may be touched.
    NODUS_MARK(park);
    flush_remote();
    if (p->held.load(std::memory_order_relaxed) && park_held(p)) break;  // a send budget holds it
    const std::uint64_t timer_token = pending_timer_token(p);
    p->state.store(State::waiting, std::memory_order_seq_cst);
    if (!has_input(p) && !timeout_due(p, timer_token)) break;
    State expected = State::waiting;
    if (budget >= kWakeBudget) {
      if (p->state.compare_exchange_strong(expected, State::queued)) shared_.push(p);
      break;
    }
    if (!p->state.compare_exchange_strong(expected, State::running)) break;  // a sender queued it
  }
  flush_remote();  // what terminate() sent (exit signals, downs)
  set_current(nullptr);
  w.running.store(nullptr, std::memory_order_relaxed);
}

}  // namespace nodus::runtime
