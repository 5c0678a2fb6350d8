// Everything a running runtime owns, reachable from any thread through ctx().
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <vector>

#include "nodus/pid.hpp"
#include "nodus/runtime.hpp"
#include "process_table.hpp"
#include "registry.hpp"
#include "scheduler.hpp"
#include "timer_service.hpp"

namespace nodus::runtime {

struct Context {
  explicit Context(const RuntimeOptions& o) : sched(o.schedulers) {}

  ProcessPool pool;
  ProcessTable table;
  Registry registry;
  TimerService timers;
  Scheduler sched;
  Pid io_server;
  std::atomic<bool> shutting_down{false};
  std::atomic<bool> stopping{false};  // set first thing in ~Runtime (before the stop hooks)
  // run first when the Runtime is destroyed, newest first, while every process still exists
  // (services with threads of their own that deliver to processes: ZeroMQ ports)
  std::mutex stop_mu;
  std::vector<std::function<void()>> stop_hooks;
};

/// Adds a hook for the Runtime's destruction (see Context::stop_hooks).
void on_stop(std::function<void()> hook);

/// The running runtime's context; throws std::logic_error if no Runtime exists.
Context& ctx();
/// Same, or nullptr.
Context* ctx_if() noexcept;

}  // namespace nodus::runtime
