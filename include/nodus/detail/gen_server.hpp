// The implementation hooks of nodus/gen_server.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/gen_server.hpp at the point they are
// needed; not an interface of its own: include nodus/gen_server.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
/// A call whose request is sent by `send_request(from)` (for servers that take typed local
/// requests, such as supervisors): waits for `{from.tag, Reply}` with the same monitoring and
/// failure reasons as gen_server::call.
using RequestSender = std::function<void(const Pid& target, const From& from)>;
Async<Term> call_with(ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout);
Term call_with(Mailbox& mb, ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout);
/// The synchronous start every OTP process here uses (proc_lib's start/init_ack).
/// Who started a process, and how: the new process calls start_begin first and start_ack once
/// it is ready (or failed).
struct Starter {
  Pid ack_to;   ///< gets the InitAck
  Pid link_to;  ///< the new process links to it first (a start from a thread); null: none
  Atom name;    ///< registered by start_begin (null: none)
};
/// A started process's answer to its starter. Local only.
struct InitAck {
  Pid from;
  std::optional<Term> error;  ///< why it did not start (nullopt: it did)
};
/// In the new process, first: links to `link_to`, registers the name. False (the starter got
/// {already_started, Pid}) if the name is taken: the process then ends (normal).
bool start_begin(const Starter& s);
void start_ack(const Starter& s, std::optional<Term> error = std::nullopt);
/// Starts the body `make(starter)` builds and waits for its start_ack, as gen_server::start
/// does (see there: blocking on a thread, deferred in a supervisor, logic_error elsewhere).
Expected<Pid> start_acked(const std::function<Proc(const Starter&)>& make, Atom name, bool link,
                        std::chrono::milliseconds timeout, const char* what);
Async<Expected<Pid>> start_acked_async(std::function<Proc(const Starter&)> make, Atom name, bool link,
                                     std::chrono::milliseconds timeout);
/// While a supervisor runs a ChildSpec::start, the processes start_acked starts there (the
/// supervisor then waits for their acks).
struct StartCollector {
  std::vector<Pid> started;
  StartCollector* previous;
  StartCollector();
  ~StartCollector();
  StartCollector(const StartCollector&) = delete;
  StartCollector& operator=(const StartCollector&) = delete;
};
/// The OTP shape of an uncaught call failure: {Reason, {gen_server, call, [Server, Request,
/// Timeout]}}.
Term call_exit(const Term& reason, const ServerRef& to, const Term& request, std::chrono::milliseconds timeout);
/// gen_server:stop for any OTP process here (servers, supervisors): sends {'$gen_stop',
/// Reason} and waits for its Down.
Expected<Term> stop_process(Mailbox& mb, const ServerRef& server, Term reason, std::chrono::milliseconds timeout);
Async<Expected<Term>> stop_process(ServerRef server, Term reason, std::chrono::milliseconds timeout);
/// A server reference as a Term: the pid, the name, or {Name, Node}.
Term server_term(const ServerRef& to);
/// Sends `request` as a call ({'$gen_call', {self(), tag}, request}) to `to`, monitored under
/// `tag`; the node it runs on. CallError noproc if `to` names no process registered here.
Atom send_call(const ServerRef& to, const Ref& tag, Term request);
/// How a call to `what` (on `node`) that ended with a Down of `reason` fails: noproc,
/// {nodedown, Node} for a Down of noconnection ("no connection to moebi@localhost"), or the
/// server's exit reason.
CallError call_failure(const Term& reason, const std::string& what, Atom node);
}  // namespace detail

}  // namespace nodus

NODUS_API_END
