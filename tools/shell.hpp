// The `nodus shell` command.
#pragma once

#include <functional>

#include "nodus/node.hpp"

namespace nodus::tools {
/// Runs an interactive node shell on stdin/stdout until end of input. Exit status. `setup`
/// runs before the node starts (what must exist before other nodes find it).
int run_shell(const NodeOptions& opts, const std::function<void()>& setup = {});
}  // namespace nodus::tools
