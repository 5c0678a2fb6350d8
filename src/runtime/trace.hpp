// Latency tracing for development (meson -Dtrace=true; off by default, then every mark compiles
// to nothing). Each mark records (steady time, point, thread) into a fixed buffer; at exit the
// process writes them to $NODUS_TRACE_DIR/<pid>.trace (default /tmp), one "ns point tid" line
// each. scripts/trace_report.py merges the files of two nodes into a per-call timeline.
#pragma once

#ifdef NODUS_TRACE
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace nodus::trace {
// The traced points; scripts/trace_report.py names them in the same order.
enum Point : int {
  zmq_sent = 1,      // a batch went to a peer's connection (sendmsg, or zmq_send in CURVE mode, returned)
  router_read = 2,   // a message read off the inbound side (I/O thread or idle worker)
  run = 3,           // a worker starts a process's slice
  spawn = 4,         // spawn_frame
  io_woke = 5,       // the I/O thread's poll returned
  enqueue_ext = 6,   // a process queued from outside the scheduler (shared queue)
  futex_wake = 7,    // a sleeping worker woken
  park = 8,          // a process waits (its records leave the thread)
  terminate = 9,     // a process ends
};
struct Event {
  long long ns;
  int point;
  int tid;
};
inline constexpr unsigned kCapacity = 1u << 20;
inline Event g_events[kCapacity];
inline std::atomic<unsigned> g_count{0};

inline void mark(Point p) noexcept {
  static thread_local const int tid = static_cast<int>(::gettid());
  const unsigned i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= kCapacity) return;
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  g_events[i] = {ts.tv_sec * 1'000'000'000LL + ts.tv_nsec, p, tid};
}

struct Writer {
  ~Writer() {
    const unsigned n = std::min(g_count.load(), kCapacity);
    if (n == 0) return;
    const char* dir = std::getenv("NODUS_TRACE_DIR");
    char path[512];
    std::snprintf(path, sizeof(path), "%s/%d.trace", dir && *dir ? dir : "/tmp", static_cast<int>(::getpid()));
    if (FILE* f = std::fopen(path, "w")) {
      for (unsigned i = 0; i < n; ++i) std::fprintf(f, "%lld %d %d\n", g_events[i].ns, g_events[i].point, g_events[i].tid);
      std::fclose(f);
    }
  }
};
inline Writer g_writer;
}  // namespace nodus::trace
#define NODUS_MARK(point) ::nodus::trace::mark(::nodus::trace::point)
#else
#define NODUS_MARK(point) ((void)0)
#endif
