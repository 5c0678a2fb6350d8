// The implementation hooks of nodus/task.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/task.hpp at the point they are
// needed; not an interface of its own: include nodus/task.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
/// The task function registered as `name` on this node, if any.
std::optional<TaskFunction> find_task_function(std::string_view name);
}  // namespace detail

}  // namespace nodus

NODUS_API_END
