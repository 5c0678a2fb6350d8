// nodus logs through spdlog to stderr (stdout belongs to the program's output).
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// The "nodus" logger. Level from NODUS_LOG (trace, debug, info, warn, error, critical, off;
/// default info), read on first use.
spdlog::logger& logger();

/// A log line about something others control (a peer's input, an unexpected message): at most
/// a few lines a second per `kind` (the next line that goes says how many were suppressed in
/// between), each cut to `max_bytes`. Kinds are the program's own words, or a process's name:
/// the table of them is bounded.
void log_limited(spdlog::level::level_enum level, std::string_view kind, std::string line,
                 std::size_t max_bytes = 400);

}  // namespace nodus

NODUS_API_END
