// The implementation hooks of nodus/zmq_port.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/zmq_port.hpp at the point they are
// needed; not an interface of its own: include nodus/zmq_port.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
/// A delivered message's tie to its port. When the message is destroyed it gives the active
/// flow its credit back, and its frames' memory to the port thread, which reads the next
/// messages into it (so a message costs no allocation on one thread and free on another). A
/// copy carries neither: the credit comes back when the original goes.
struct PortToken {
  std::shared_ptr<zmq_port::PortState> s;
  PortToken() = default;
  explicit PortToken(std::shared_ptr<zmq_port::PortState> st) noexcept : s(std::move(st)) {}
  PortToken(PortToken&&) noexcept = default;
  PortToken& operator=(PortToken&&) noexcept = default;
  PortToken(const PortToken&) noexcept {}
  PortToken& operator=(const PortToken&) noexcept { return *this; }
  void release(std::vector<std::string>& parts) noexcept;
};
}  // namespace detail

}  // namespace nodus

NODUS_API_END
