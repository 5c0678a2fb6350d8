// The built-in functions every node answers: erpc's "erpc.run" (a spawn function) and the
// task functions found after the user's registered ones (otp/task.cpp). Private to the OTP
// layer and the public Node above it.
#pragma once

#include <optional>
#include <string_view>

#include "nodus/task.hpp"

namespace nodus::erpc::detail {
/// Adds "erpc.run" to the distribution's built-in functions (once; otp/erpc.cpp).
void install();
}  // namespace nodus::erpc::detail

namespace nodus::observe::parts {
/// "nodus.stats", "nodus.processes", "nodus.process_info" (otp/observe.cpp).
std::optional<TaskFunction> builtin(std::string_view name);
}  // namespace nodus::observe::parts
