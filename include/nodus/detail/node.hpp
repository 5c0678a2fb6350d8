// The implementation hooks of nodus/node.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/node.hpp at the point they are
// needed; not an interface of its own: include nodus/node.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
/// The answer to a spawn_request, delivered to the requesting process.
struct SpawnReply {
  std::uint64_t request = 0;
  Pid pid;            ///< null on failure
  std::string error;  ///< why, on failure
};
}  // namespace detail

namespace detail {
void deliver_remote_name(Atom name, Atom node, MsgNode* n);
/// The calling process takes over a monitor another process sets up for it: a process started
/// (here or on another node) with the caller as watcher under `ref`. Call it before asking for
/// the start, with `target` naming only the node (Pid{node}), so a DOWN that arrives before the
/// answer is kept and a lost node fires it with noconnection; then retarget_monitor with the
/// pid from the answer (or remove_monitor if there is none).
void adopt_monitor(const Pid& target, const Ref& ref);
void retarget_monitor(const Ref& ref, const Pid& target);
/// Erlang's monitor(process, {Name, Node}): a Down when the process registered as `name`
/// there ends, `noproc` if none is registered, `noconnection` if the node goes away.
Ref monitor_name(Atom name, Atom node);
/// monitor_name under a reference the caller chose.
void monitor_name_as(Atom name, Atom node, const Ref& ref);
/// Forgets the caller's monitor `ref` (and its Down, if one arrived) without telling the
/// target: for a monitor the other side has dropped already, or never set up.
void remove_monitor(const Ref& ref);
}

}  // namespace nodus

NODUS_API_END
