// Process groups, as OTP's pg: named groups of processes across the cluster, kept eventually
// consistent by one scope process per node.
//
//   pg::start();                                     // the default scope `pg` on this node
//   pg::join(atom("room"), self());                  // a local process joins
//   for (const Pid& p : pg::get_members(atom("room"))) send(p, tuple(atom("say"), "hi"));
//
// A scope is a process registered under the scope's name on every node that takes part. Scopes
// of the same name find each other as nodes connect (net_kernel:monitor_nodes), exchange their
// local members, then send each other every join and leave. Members leave when they exit, and
// every member of a node leaves when that node goes down (or its scope process ends). Groups
// are any Term. Reads (get_members, which_groups) are local and do not wait.
#pragma once

#include <vector>

#include "nodus/error.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/supervisor.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::pg {

/// The default scope's name, `pg`.
Atom default_scope();

/// Starts the scope process `scope` on this node (registered under that name): its pid, or
/// {already_started, Pid}. Where it may wait: as gen_server::start.
Expected<Pid> start(Atom scope = default_scope());
/// The scope as a child of a supervision tree.
supervisor::ChildSpec child_spec(Atom scope = default_scope());

/// Joins local process `pid` to `group` (a process may join a group several times, and must
/// leave as often). Visible to get_members here at once, on other nodes soon after. Failure
/// badarg if `pid` is not a live local process, noproc if the scope is not running.
Expected<Term> join(Atom scope, const Term& group, const Pid& pid);
Expected<Term> join(const Term& group, const Pid& pid);
/// Leaves once: `ok`, or `not_joined` (as OTP's).
Expected<Term> leave(Atom scope, const Term& group, const Pid& pid);
Expected<Term> leave(const Term& group, const Pid& pid);

/// Every member of `group` on every node (a pid appears once per join), in no set order.
std::vector<Pid> get_members(Atom scope, const Term& group);
std::vector<Pid> get_members(const Term& group);
/// The members on this node only.
std::vector<Pid> get_local_members(Atom scope, const Term& group);
std::vector<Pid> get_local_members(const Term& group);
/// Groups with at least one member anywhere.
std::vector<Term> which_groups(Atom scope = default_scope());

/// OTP's monitor_scope: the calling process gets `{Ref, join, Group, [Pid]}` and `{Ref, leave,
/// Group, [Pid]}` for every change (from any node) after this call; returns the Ref and the
/// groups as they are now (`#{Group => [Pid]}` as a map Term). demonitor_scope(Ref) ends it.
std::pair<Ref, Term> monitor_scope(Atom scope = default_scope());
void demonitor_scope(const Ref& ref, Atom scope = default_scope());

}  // namespace nodus::pg

NODUS_API_END
