// nodus logs through spdlog to stderr (stdout belongs to the program's output).
#pragma once

#include <spdlog/spdlog.h>

namespace nodus {

/// The "nodus" logger. Level from NODUS_LOG (trace, debug, info, warn, error, critical, off;
/// default info), read on first use.
spdlog::logger& logger();

}  // namespace nodus
