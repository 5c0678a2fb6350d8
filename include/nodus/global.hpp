// global: names that hold across the cluster (Erlang's global name registry).
//
//   nodus::global::start().value();                        // on every node that takes part
//   global::register_name(mb, atom("leader"), self());      // true: the name is ours everywhere
//   if (auto p = global::whereis_name(atom("leader"))) send(*p, atom("hi"));
//
// Each node runs a name server (registered locally as `global_name_server`) holding the whole
// table. register_name reserves the name on every connected node's server, then commits it
// there: two nodes registering the same name at once cannot both succeed (one gets false or
// retries after the other released its reservation). Every server monitors every registered
// pid: a name goes when its process ends, or when its node goes down.
//
// Nodes that were apart (not connected, or partitioned) may each have registered a name. When
// they meet, each server sends the other the names of its own processes; a name held by two
// pids is resolved once, by the node (of the two pids' nodes) whose name sorts first, with the
// resolver given when its pid was registered (OTP's default, random_exit_name: one keeps the
// name, the other is killed), and the outcome is sent to every node. A server that hears of a
// node it is not connected to connects to it, so the nodes that take part form a full mesh (as
// Erlang's global does).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "nodus/error.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/supervisor.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::global {

/// Decides a name two pids hold after a partition heals: the pid that keeps it, or nullopt
/// (neither does). It runs in the name server of the node that resolves (see above); it may
/// kill or message the pids (OTP's resolvers do).
using Resolver = std::function<std::optional<Pid>(Atom name, const Pid& a, const Pid& b)>;
/// OTP's default: keeps one pid at random, kills the other (exit `kill`); logs what it did.
std::optional<Pid> random_exit_name(Atom name, const Pid& a, const Pid& b);
/// Keeps one at random and sends the other {global_name_conflict, Name}.
std::optional<Pid> random_notify_name(Atom name, const Pid& a, const Pid& b);
/// Keeps neither: both get {global_name_conflict, Name, OtherPid}.
std::optional<Pid> notify_all_name(Atom name, const Pid& a, const Pid& b);

/// Starts this node's name server: its pid, or {already_started, Pid}.
Expected<Pid> start();
/// The name server as a child of a supervision tree.
supervisor::ChildSpec child_spec();

/// Registers `name` for `pid` on every connected node: true, or false if the name is taken
/// (anywhere) or, after retries, still reserved by a concurrent registration. The resolver
/// applies if the name must be resolved after a partition (it is kept on this node: it applies
/// when `pid` is of this node, otherwise the default does). Throws nodus::Error noproc if this
/// node runs no name server. On a thread that owns `mb`; in a process body co_await the other.
bool register_name(Mailbox& mb, Atom name, const Pid& pid, Resolver resolver = random_exit_name);
Async<bool> register_name(Atom name, Pid pid, Resolver resolver = random_exit_name);
/// Removes `name` everywhere (whoever registered it). Throws nodus::Error noproc as above.
void unregister_name(Mailbox& mb, Atom name);
Async<void> unregister_name(Atom name);
/// The pid `name` is registered for, as this node knows it (no message is sent).
std::optional<Pid> whereis_name(Atom name);
/// Sends `msg` to the pid registered as `name`: that pid, or Failure badarg (Erlang's
/// global:send exits with {badarg, {Name, Msg}}) if none is.
Expected<Pid> send(Atom name, Term msg);
/// Every globally registered name this node knows.
std::vector<Atom> registered_names();

}  // namespace nodus::global

NODUS_API_END
