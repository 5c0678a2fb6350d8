// The implementation hooks of nodus/erpc.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/erpc.hpp at the point they are
// needed; not an interface of its own: include nodus/erpc.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::erpc {

namespace detail {
/// The process body a call runs in, on the target node (registered there as "erpc.run").
Proc run(Term args);
}  // namespace detail

}  // namespace nodus::erpc

NODUS_API_END
