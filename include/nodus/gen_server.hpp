// GenServer: a process that serves calls (request -> reply), casts and other messages, with
// OTP's protocol and failure semantics. Requests, replies and casts are Terms, so a server is
// reachable from other nodes as `{name, node}` without any registration.
//
//   struct Counter : nodus::GenServer {
//     long n = 0;
//     CallResult handle_call(const Term& req, const From&) override {
//       if (req.is_atom("get")) return reply(n);
//       return reply(atom("error"));
//     }
//     void handle_cast(const Term& msg) override { if (msg.is_atom("inc")) ++n; }
//   };
//   Pid p = nodus::gen_server::start(std::make_unique<Counter>(), {.name = atom("counter")}).value();
//   nodus::gen_server::cast(atom("counter"), atom("inc"));
//   Term v = co_await nodus::gen_server::call(atom("counter"), atom("get"));   // in a process
//   Term w = nodus::gen_server::call(mailbox, atom("counter"), atom("get"));  // on a thread
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/atom.hpp"
#include "nodus/error.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// Where a call or cast goes: a pid (of any node), a locally registered name, or a name
/// registered on another node (Erlang's `{Name, Node}`).
struct ServerRef {
  ServerRef(const Pid& p) : pid(p) {}                   // NOLINT: implicit on purpose
  ServerRef(Atom n) : name(n) {}                        // NOLINT
  ServerRef(Atom n, Atom on_node) : name(n), node(on_node) {}
  Pid pid;
  Atom name;
  Atom node;  ///< null: this node
  std::string to_string() const;
};

/// A call that did not get its reply. `reason` is what Erlang's gen_server:call exits with:
/// `noproc` (no such process or name), `{nodedown, Node}` (its node cannot be reached, or went
/// away), `calling_self` (the server is the caller: it fails at once, as in OTP), `timeout`,
/// or the server's exit reason if it ended while serving the call. what() says it in words,
/// e.g. "no connection to moebi@localhost". Uncaught, it exits the caller as OTP's call does:
/// `{Reason, {gen_server, call, [Server, Request, Timeout]}}` (`exit`).
struct CallError : Error {
  CallError(Term why, const std::string& text, std::optional<Term> exit_reason = std::nullopt)
      : Error(errc_of(why), why, text, std::move(exit_reason)) {}
};

/// The caller of a call, kept to answer later with gen_server::reply (a deferred reply).
struct From {
  Pid pid;
  Ref tag;
};

/// Subclass and override what the server needs. Callbacks run in the server's process, one
/// message at a time. A callback that throws (an exception, or exit_self) ends the server as
/// OTP's does: terminate(reason) runs, a crash report is logged (unless the reason is normal,
/// shutdown or {shutdown, _}), and the server exits with that reason (`{exception, Type,
/// What}` for a C++ exception); its callers get CallError with it. An exit signal it does not
/// trap ends it without terminate, as in OTP.
class GenServer {
 public:
  /// What handle_call returns: the reply now, or none (answer later with
  /// gen_server::reply(from, ...)); either may also stop the server afterwards.
  struct CallResult {
    std::optional<Term> reply;
    std::optional<Term> stop;  ///< the server's exit reason
  };
  static CallResult reply(Term value) { return {std::move(value), std::nullopt}; }
  static CallResult noreply() { return {}; }
  static CallResult stop(Term reason, Term value) { return {std::move(value), std::move(reason)}; }

  virtual ~GenServer() = default;
  /// Runs first, in the server's process (self() is the server), before start returns. Throw
  /// or exit_self(Reason) to fail the start: start returns {error, Reason} (a Failure, code
  /// init_failed) and the server exits with Reason.
  virtual void init() {}
  /// Runs after init, before the first message (OTP's handle_continue after {ok, S, {continue,
  /// C}}): work that must not hold up start's caller.
  virtual void handle_continue() {}
  /// Default: the server stops with {bad_call, Request}, as OTP's default does.
  virtual CallResult handle_call(const Term& request, const From& from);
  virtual void handle_cast(const Term& msg);
  /// Any other message (typed messages, ExitMsg when trapping exits, Down, plain Terms).
  virtual void handle_info(Message& msg);
  /// Runs when the server stops by a callback's request, or on a shutdown exit from its parent
  /// while it traps exits (call trap_exit(true) in init to get this on supervisor shutdown).
  virtual void terminate(const Term& reason);
  /// The state as a crash report prints it (OTP's format_status); nullopt: not printed.
  virtual std::optional<Term> format_status() const { return std::nullopt; }

 protected:
  /// From handle_cast / handle_info: stop with `reason` after this callback.
  void stop_after(Term reason) { stop_reason_ = std::move(reason); }

 private:
  friend struct GenServerAccess;
  std::optional<Term> stop_reason_;
  Pid parent_;
  bool terminated_ = false;
};

namespace gen_server {

struct StartOptions {
  Atom name;          ///< register the server under this local name (null: no name)
  bool link = false;  ///< link it to the caller (start_link; a supervisor's children do this)
  /// How long start waits for init (OTP's `timeout` start option); past it the server is
  /// killed and start fails with `timeout`.
  std::chrono::milliseconds timeout = std::chrono::hours(24 * 365);
};

/// Starts `server` in a new process and returns once its init() returned, as OTP's start does:
/// the pid, or a Failure whose reason is `{already_started, Pid}` (code already_started: the
/// name is taken; the server is not started) or what init failed with (code init_failed; the
/// server exits with it, and a linked caller gets that exit signal, as in OTP 25).
/// On a thread (main, a Mailbox owner) it blocks. In a supervisor's ChildSpec::start it returns
/// at once and the supervisor waits for init before it starts the next child. Anywhere else in
/// a process body it cannot block its worker: use `co_await start_async(...)` there (start
/// throws std::logic_error).
Expected<Pid> start(std::unique_ptr<GenServer> server, StartOptions opts = {});
/// start, for process bodies: the caller waits in its mailbox, the worker runs others.
Async<Expected<Pid>> start_async(std::unique_ptr<GenServer> server, StartOptions opts = {});
/// Stops the server as OTP's gen_server:stop does: it runs terminate(reason) and exits with
/// `reason`; returns once it is gone. Failure noproc if it is not alive, timeout (the server
/// keeps running) if it does not end in time.
Expected<Term> stop(Mailbox& mb, ServerRef server, Term reason = Term(atom("normal")),
                  std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
Async<Expected<Term>> stop(ServerRef server, Term reason = Term(atom("normal")),
                         std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));

/// In a process: sends `request` and waits for the reply (Erlang's default: 5 s).
Async<Term> call(ServerRef to, Term request, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// On a thread that owns `mb`: the same, blocking.
Term call(Mailbox& mb, ServerRef to, Term request, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Fire and forget (never fails, like Erlang's cast).
void cast(ServerRef to, Term msg);
/// Answers a call handle_call left pending.
void reply(const From& to, Term value);

/// What gen_server:multi_call answers: the replies, as {Node, Reply}, in the order of the
/// nodes asked, and the nodes that gave none (not reachable, nothing registered under the
/// name, the server ended, or no reply in time).
struct MultiCallResult {
  std::vector<std::pair<Atom, Term>> replies;
  std::vector<Atom> bad_nodes;
  /// OTP's {[{Node, Reply}], [BadNode]}.
  Term to_term() const;
};
/// gen_server:multi_call: calls the server registered as `name` on each of `nodes` (this node
/// too, if listed); every request leaves before any reply is awaited, and `timeout` bounds the
/// whole (OTP's default is infinity: a lost node still ends its wait, through its monitor).
Async<MultiCallResult> multi_call(std::vector<Atom> nodes, Atom name, Term request,
                                  std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
MultiCallResult multi_call(Mailbox& mb, const std::vector<Atom>& nodes, Atom name, const Term& request,
                           std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
/// gen_server:abcast: casts `msg` to the server registered as `name` on each of `nodes`.
void abcast(const std::vector<Atom>& nodes, Atom name, const Term& msg);

}  // namespace gen_server

}  // namespace nodus
#include "nodus/detail/gen_server.hpp"  // the hooks this header's templates use
namespace nodus {
}  // namespace nodus

NODUS_API_END
