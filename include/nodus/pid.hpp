// Process and reference identifiers that stay meaningful across nodes.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include "nodus/atom.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// A process identifier: the node that owns the process (its name and incarnation) and the
/// process's slot number and serial on that node. Printed like Erlang: `<0.132.0>` for a local
/// process, `<N.132.0>` for a process of another node (N identifies that node here).
/// A local pid has no node (the empty atom): the wire adds this node's name and creation, and
/// a pid that comes back naming this very node (and incarnation) becomes local again.
struct Pid {
  Atom node;                   ///< owning node, e.g. `kate@localhost`; empty for a local pid
  std::uint32_t creation = 0;  ///< incarnation of that node (a restarted node gets a new one)
  std::uint32_t id = 0;        ///< slot number on the owning node
  std::uint32_t serial = 0;    ///< reuse counter of that slot; 0 never names a process

  /// True for the default-constructed "no process" value.
  bool is_null() const { return serial == 0; }
  /// True if the process lives on this node.
  bool is_local() const;

  friend bool operator==(const Pid&, const Pid&) = default;
  friend bool operator<(const Pid& a, const Pid& b) {
    if (a.node != b.node) return a.node.id() < b.node.id();
    if (a.creation != b.creation) return a.creation < b.creation;
    if (a.id != b.id) return a.id < b.id;
    return a.serial < b.serial;
  }
};

/// A unique reference (`make_ref()`), used for monitors and request tags. Local ones have no
/// node, like local pids.
struct Ref {
  Atom node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;

  bool is_null() const { return id == 0; }
  friend bool operator==(const Ref&, const Ref&) = default;
  friend bool operator<(const Ref& a, const Ref& b) {
    if (a.node != b.node) return a.node.id() < b.node.id();
    if (a.creation != b.creation) return a.creation < b.creation;
    return a.id < b.id;
  }
};

std::string to_string(const Pid& pid);
std::string to_string(const Ref& ref);
std::ostream& operator<<(std::ostream& os, const Pid& pid);
std::ostream& operator<<(std::ostream& os, const Ref& ref);

/// A fresh reference, unique on this node for the life of the node.
Ref make_ref();

/// The name this node answers to (`nonode@nohost` until distribution starts).
Atom node_name();

}  // namespace nodus
#include "nodus/detail/pid.hpp"  // the hooks this header's templates use
namespace nodus {

}  // namespace nodus

template <>
struct std::hash<nodus::Pid> {
  std::size_t operator()(const nodus::Pid& p) const noexcept {
    std::uint64_t h = (std::uint64_t(p.node.id()) << 32) ^ p.creation;
    h = h * 0x9E3779B97F4A7C15ull ^ ((std::uint64_t(p.id) << 32) | p.serial);
    return static_cast<std::size_t>(h * 0x9E3779B97F4A7C15ull);
  }
};

template <>
struct std::hash<nodus::Ref> {
  std::size_t operator()(const nodus::Ref& r) const noexcept {
    return static_cast<std::size_t>((r.id ^ (std::uint64_t(r.node.id()) << 40)) *
                                    0x9E3779B97F4A7C15ull);
  }
};

NODUS_API_END
