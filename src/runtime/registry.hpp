// Registered names: atom -> local pid.
#pragma once

#include <optional>
#include <shared_mutex>
#include <unordered_map>

#include "nodus/atom.hpp"
#include "nodus/pid.hpp"

namespace nodus::runtime {

class Registry {
 public:
  Registry();
  /// False if `name` is taken.
  bool add(Atom name, const Pid& pid);
  /// Removes `name` if it still maps to `owner`.
  bool erase(Atom name, const Pid& owner);
  /// What `name` maps to; from the calling thread's cache while no Registry changed since.
  std::optional<Pid> find(Atom name) const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<Atom, Pid> names_;
};

}  // namespace nodus::runtime
