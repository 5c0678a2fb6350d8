// The `nodus shell` command.
#pragma once

#include "nodus/node.hpp"

namespace nodus::tools {
/// Runs an interactive node shell on stdin/stdout until end of input. Exit status.
int run_shell(const NodeOptions& opts);
}  // namespace nodus::tools
