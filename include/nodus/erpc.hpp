// erpc: run a registered task function on another node and get its result (Erlang's erpc).
//
//   // on kate: nodus::task::register_function("Kv.get", kv_get);   (Async<Term>(Term args))
//   Expected<Term> r = co_await erpc::call(atom("kate@localhost"), "Kv.get", Term::list({"k"}));
//   if (!r) r.error().reason;   // {erpc, noconnection}, {erpc, timeout}, {exception, Reason}, ...
//
// As Erlang's erpc, each call runs in a new process on the target node, monitored by the caller;
// the result travels back as that process's exit reason (one DOWN message), so a call is a
// spawn request, its reply and the DOWN. A call on the caller's own node runs there the same way.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "nodus/error.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/proc.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::erpc {

/// Runs `function(args)` (a task function, nodus::task::register_function) on `node` and
/// returns its result, or a Failure whose reason is Erlang's:
/// - `{erpc, noconnection}` (code noconnection): the node cannot be reached, or went down
///   before the result came (then the function may or may not have run);
/// - `{erpc, timeout}` (code timeout): no result within `timeout`; the process running it is
///   killed and a result that comes later is dropped;
/// - `{exception, undef}` (code not_found): the node has no such function;
/// - `{exception, Reason}` (code exception): the function failed; Reason is its exit reason
///   (`{exception, Type, What}` for a C++ exception, the reason of an exit_self);
/// - `{exit, Reason}` (code exited): the process running it was killed by somebody else.
/// In a process body: the caller waits in its mailbox.
Async<Expected<Term>> call(Atom node, std::string function, Term args = Term::list({}),
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// On a thread that owns `mb`: the same, blocking.
Expected<Term> call(Mailbox& mb, Atom node, std::string function, Term args = Term::list({}),
                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// Runs `function(args)` on `node` and forgets it: no result, no error (as erpc:cast). Blocks
/// until the node accepted the spawn or could not be reached (bounded by 7 s).
void cast(Atom node, std::string function, Term args = Term::list({}));

/// erpc:multicall: `call` on every node of `nodes` at once (the requests all leave before any
/// result is awaited), the outcomes in the order of `nodes`. `timeout` bounds the whole call.
Async<std::vector<Expected<Term>>> multicall(std::vector<Atom> nodes, std::string function,
                                             Term args = Term::list({}),
                                             std::chrono::milliseconds timeout = std::chrono::seconds(5));
std::vector<Expected<Term>> multicall(Mailbox& mb, const std::vector<Atom>& nodes, const std::string& function,
                                      const Term& args = Term::list({}),
                                      std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace nodus::erpc
#include "nodus/detail/erpc.hpp"  // the hooks this header's templates use
namespace nodus::erpc {

}  // namespace nodus::erpc

NODUS_API_END
