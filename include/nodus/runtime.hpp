// The node's runtime: owns the schedulers, the process table, timers and the I/O server.
#pragma once

#include <cstddef>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

struct RuntimeOptions {
  /// Worker threads running processes; 0 means $NODUS_SCHEDULERS if it is set (like erl +S),
  /// else one per hardware thread.
  unsigned schedulers = 0;
};

/// One per OS process, like a BEAM node: construct it in `main` (or a test) before using the
/// process API; destroying it stops every process (writing out pending group-leader output).
class Runtime {
 public:
  explicit Runtime(RuntimeOptions opts = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  unsigned schedulers() const;
  /// Live processes (including the runtime's own, such as the I/O server).
  std::size_t process_count() const;
  /// True while a Runtime exists.
  static bool running();
};

}  // namespace nodus

NODUS_API_END
