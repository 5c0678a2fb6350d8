// The tests use the public harness (nodus/testing.hpp) under their old name.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "nodus/testing.hpp"

namespace nodus::test {
using namespace nodus::testing;
/// Seconds after which test_main.cpp's watchdog aborts a hung binary ($NODUS_TEST_WATCHDOG
/// wins); a binary with long tests raises it at static initialisation.
inline int watchdog_seconds = 120;

/// `a` followed by `b` (argument lists).
inline std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Where network namespaces could not be made (`ok` false, `why` says which step failed),
/// says so with the "Excluding tags: [netns]" line; the test then returns.
inline bool netns_or_skip(bool ok, const std::string& why) {
  if (ok) return true;
  std::printf("Excluding tags: [netns] (%s)\n", why.c_str());
  WARN("Excluding tags: [netns]: " << why);
  return false;
}

/// A peer's main: made first, blocks SIGTERM and SIGINT in this thread and every thread started
/// after it (the runtime's), so wait() can take the one that ends the peer.
class TermSignals {
 public:
  TermSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  void wait() {
    int sig = 0;
    sigwait(&set_, &sig);
  }

 private:
  sigset_t set_;
};

/// One stream of sequence numbers as a sink sees it: duplicates, numbers that went backwards,
/// and gaps (a jump from A to B > A + 1, which see() returns).
struct SeqCheck {
  std::int64_t last = 0, count = 0, dups = 0, back = 0;
  enum class Seen { next, gap, dup, back };
  Seen see(std::int64_t n) {
    ++count;
    if (n == last) {
      ++dups;
      return Seen::dup;
    }
    if (n < last) {
      ++back;
      return Seen::back;
    }
    const Seen s = n > last + 1 ? Seen::gap : Seen::next;
    last = n;
    return s;
  }
};
}  // namespace nodus::test
