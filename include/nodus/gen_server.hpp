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
//   Pid p = nodus::gen_server::start(std::make_unique<Counter>(), {.name = atom("counter")});
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

#include "nodus/atom.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/term.hpp"

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
/// e.g. "no connection to moebi@localhost".
struct CallError : std::runtime_error {
  CallError(Term why, const std::string& text) : std::runtime_error(text), reason(std::move(why)) {}
  Term reason;
};

/// The caller of a call, kept to answer later with gen_server::reply (a deferred reply).
struct From {
  Pid pid;
  Ref tag;
};

/// Subclass and override what the server needs. Callbacks run in the server's process, one
/// message at a time; an exception thrown by one ends the server with `{exception, ...}` (its
/// callers get CallError with that reason).
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
  /// Runs first, in the server's process (self() is the server). Throw to fail the start.
  virtual void init() {}
  /// Default: the server stops with {bad_call, Request}, as OTP's default does.
  virtual CallResult handle_call(const Term& request, const From& from);
  virtual void handle_cast(const Term& msg);
  /// Any other message (typed messages, ExitMsg when trapping exits, Down, plain Terms).
  virtual void handle_info(Message& msg);
  /// Runs when the server stops by a callback's request, or on a shutdown exit from its parent
  /// while it traps exits (call trap_exit(true) in init to get this on supervisor shutdown).
  virtual void terminate(const Term& reason);

 protected:
  /// From handle_cast / handle_info: stop with `reason` after this callback.
  void stop_after(Term reason) { stop_reason_ = std::move(reason); }

 private:
  friend struct GenServerAccess;
  std::optional<Term> stop_reason_;
  Pid parent_;
};

namespace gen_server {

struct StartOptions {
  Atom name;          ///< register the server under this local name (null: no name)
  bool link = false;  ///< link it to the caller (start_link; a supervisor's children do this)
};

/// Starts `server` in a new process and returns its pid. The name is registered before this
/// returns; init() runs in the new process (a failing init ends it: a linked caller sees the
/// exit). std::invalid_argument if the name is taken.
Pid start(std::unique_ptr<GenServer> server, StartOptions opts = {});

/// In a process: sends `request` and waits for the reply (Erlang's default: 5 s).
Async<Term> call(ServerRef to, Term request, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// On a thread that owns `mb`: the same, blocking.
Term call(Mailbox& mb, ServerRef to, Term request, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Fire and forget (never fails, like Erlang's cast).
void cast(ServerRef to, Term msg);
/// Answers a call handle_call left pending.
void reply(const From& to, Term value);

}  // namespace gen_server

namespace detail {
/// A call whose request is sent by `send_request(from)` (for servers that take typed local
/// requests, such as supervisors): waits for `{from.tag, Reply}` with the same monitoring and
/// failure reasons as gen_server::call.
using RequestSender = std::function<void(const Pid& target, const From& from)>;
Async<Term> call_with(ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout);
Term call_with(Mailbox& mb, ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout);
/// Spawns `body` (linked to the caller if `link`) and registers it as `name` (unless null);
/// std::invalid_argument, and no process left behind, if the name is taken.
Pid start_registered(Proc body, Atom name, bool link);
/// Sends `request` as a call ({'$gen_call', {self(), tag}, request}) to `to`, monitored under
/// `tag`; the node it runs on. CallError noproc if `to` names no process registered here.
Atom send_call(const ServerRef& to, const Ref& tag, Term request);
/// How a call to `what` (on `node`) that ended with a Down of `reason` fails: noproc,
/// {nodedown, Node} for a Down of noconnection ("no connection to moebi@localhost"), or the
/// server's exit reason.
CallError call_failure(const Term& reason, const std::string& what, Atom node);
}  // namespace detail
}  // namespace nodus
