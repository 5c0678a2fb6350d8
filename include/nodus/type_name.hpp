// Compile-time readable names of C++ types, for printing and diagnostics.
#pragma once

#include <string_view>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// The name of `T` as the compiler spells it (e.g. `app::Ping`), computed at compile time.
template <class T>
constexpr std::string_view type_name() {
  std::string_view p = __PRETTY_FUNCTION__;
  // GCC: "... type_name() [with T = app::Ping; std::string_view = ...]"
  // Clang: "... type_name() [T = app::Ping]"
  const auto start = p.find("T = ") + 4;
  const auto end = p.find_first_of(";]", start);
  return p.substr(start, end - start);
}

}  // namespace nodus

NODUS_API_END
