// Links and monitors between local processes and processes of other nodes, by peer node, so
// that losing a node fires every one of them with `noconnection` (docs/runtime.md). Touched by
// process threads and whoever reads the connections; one mutex.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nodus/pid.hpp"

namespace nodus::dist {

class PeerLinks {
 public:
  /// local is linked to remote (a process of remote.node).
  void link(const Pid& local, const Pid& remote) {
    std::lock_guard lock(mu_);
    links_.emplace(remote.node.id(), std::make_pair(local, remote));
  }
  void unlink(const Pid& local, const Pid& remote) {
    std::lock_guard lock(mu_);
    auto [b, e] = links_.equal_range(remote.node.id());
    for (auto it = b; it != e; ++it) {
      if (it->second.first == local && it->second.second == remote) {
        links_.erase(it);
        return;
      }
    }
  }
  /// watcher monitors target (a process of target.node, or only its node while a name or a
  /// spawn is being resolved there) under ref.
  void monitor(const Pid& watcher, const Pid& target, const Ref& ref) {
    std::lock_guard lock(mu_);
    monitors_[ref] = {watcher, target};
  }
  /// The monitor `ref`, if still there, now names `target` (no longer a name).
  void retarget(const Ref& ref, const Pid& target) {
    std::lock_guard lock(mu_);
    if (auto it = monitors_.find(ref); it != monitors_.end()) it->second.second = target;
    names_.erase(ref);
  }
  void demonitor(const Ref& ref) {
    std::lock_guard lock(mu_);
    monitors_.erase(ref);
    names_.erase(ref);
  }
  /// A monitor of `name` on another node: its DEMONITOR must name it too.
  void monitor_name(const Ref& ref, Atom name) {
    std::lock_guard lock(mu_);
    names_[ref] = name;
  }
  std::optional<Atom> name_of(const Ref& ref) const {
    std::lock_guard lock(mu_);
    auto it = names_.find(ref);
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }

  /// What depended on one peer node, taken out of the table as it goes.
  struct Lost {
    std::vector<std::pair<Pid, Pid>> links;          // (local, remote)
    std::vector<std::tuple<Ref, Pid, Pid>> monitors;  // (ref, local watcher, remote target)
  };
  Lost take(Atom node) {
    Lost lost;
    std::lock_guard lock(mu_);
    auto [b, e] = links_.equal_range(node.id());
    for (auto it = b; it != e; ++it) lost.links.push_back(it->second);
    links_.erase(b, e);
    for (auto it = monitors_.begin(); it != monitors_.end();) {
      if (it->second.second.node == node) {
        lost.monitors.emplace_back(it->first, it->second.first, it->second.second);
        names_.erase(it->first);
        it = monitors_.erase(it);
      } else {
        ++it;
      }
    }
    return lost;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return links_.size() + monitors_.size() + names_.size();
  }

 private:
  mutable std::mutex mu_;
  std::multimap<std::uint32_t, std::pair<Pid, Pid>> links_;  // remote node -> (local, remote)
  std::unordered_map<Ref, std::pair<Pid, Pid>> monitors_;    // ref -> (local watcher, remote target)
  std::unordered_map<Ref, Atom> names_;                      // ref -> name, for monitors by name
};

}  // namespace nodus::dist
