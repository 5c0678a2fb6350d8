// The tests use the public harness (nodus/testing.hpp) under their old name.
#pragma once

#include "nodus/testing.hpp"

namespace nodus::test {
using namespace nodus::testing;
}  // namespace nodus::test
