// A one-byte spin lock for short critical sections (link/monitor tables of one process).
#pragma once

#include <sched.h>

#include <atomic>

// Hot thread-locals of the runtime: the initial-exec model avoids a __tls_get_addr call per
// access from a shared library (nodus is linked at startup, never dlopen'ed late).
#define NODUS_TLS static thread_local __attribute__((tls_model("initial-exec")))

namespace nodus::runtime {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class SpinLock {
 public:
  void lock() noexcept {
    while (flag_.exchange(true, std::memory_order_acquire)) {
      // a holder that lost its core would keep a pure spinner going for a whole time slice
      // (2 cores, more threads): after a short spin, give the core away
      for (int i = 1; flag_.load(std::memory_order_relaxed); ++i) {
        if (i % 64 == 0) {
          sched_yield();
        } else {
          cpu_relax();
        }
      }
    }
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

}  // namespace nodus::runtime
