// The tests use the public harness (nodus/testing.hpp) under their old name.
#pragma once

#include "nodus/testing.hpp"

namespace nodus::test {
using namespace nodus::testing;
/// Seconds after which test_main.cpp's watchdog aborts a hung binary ($NODUS_TEST_WATCHDOG
/// wins); a binary with long tests raises it at static initialisation.
inline int watchdog_seconds = 120;
}  // namespace nodus::test
