// Lookups in the typed-message registry (nodus/wire_type.hpp). Private to src/dist.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "nodus/wire_type.hpp"

namespace nodus::dist {
/// A registered message type. Entries are never removed, so a pointer stays valid.
struct WireEntry {
  std::string name;
  detail::WireType type;
};
/// Lookups on every typed send and receive: no allocation, null if not registered.
const WireEntry* wire_type_of(const detail::TypeInfo* t);
const WireEntry* wire_type_named(std::string_view name);
}  // namespace nodus::dist
