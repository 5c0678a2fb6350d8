// Lookups in the typed-message registry (nodus/wire_type.hpp). Private to src/dist.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "nodus/wire_type.hpp"

namespace nodus::dist {
/// The wire name and codec of a registered message type.
std::optional<std::pair<std::string, detail::WireType>> wire_type_of(const detail::TypeInfo* t);
std::optional<detail::WireType> wire_type_named(std::string_view name);
}  // namespace nodus::dist
