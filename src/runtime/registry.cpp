// Registered names.
#include "registry.hpp"

#include <mutex>

namespace nodus::runtime {

bool Registry::add(Atom name, const Pid& pid) {
  std::unique_lock lock(mu_);
  return names_.emplace(name, pid).second;
}

bool Registry::erase(Atom name, const Pid& owner) {
  std::unique_lock lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end() || it->second != owner) return false;
  names_.erase(it);
  return true;
}

std::optional<Pid> Registry::find(Atom name) const {
  std::shared_lock lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return std::nullopt;
  return it->second;
}

}  // namespace nodus::runtime
