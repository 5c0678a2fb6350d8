// The implementation hooks of nodus/pid.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/pid.hpp at the point they are
// needed; not an interface of its own: include nodus/pid.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
struct LocalNode {
  Atom name;
  std::uint32_t creation;
};
/// Identity of this node; set by the runtime (and later by distribution).
LocalNode local_node();
void set_local_node(Atom name, std::uint32_t creation);
}  // namespace detail

}  // namespace nodus

NODUS_API_END
