// One error vocabulary: documented codes (in the style of CAF's `sec`), one base exception that
// carries the exit reason as a Term, one conversion from an exception to an exit reason, and
// a small result type for ordinary failures.
//
//   try { co_await gen_server::call(atom("kv"), atom("get")); }
//   catch (const nodus::Error& e) { if (e.code == Errc::noproc) ...; e.reason; e.exit; }
//
//   Expected<Pid> r = gen_server::start(std::make_unique<Kv>(), {.name = atom("kv")});
//   if (!r) log(r.error().text);   // {already_started, Pid}, the reason init failed with ...
//   Pid p = r.value();             // throws nodus::Error if it failed
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// What went wrong, in one word. Each names the Erlang reason it stands for.
enum class Errc : std::uint8_t {
  noproc,           ///< no such process, or nothing registered under the name (`noproc`)
  timeout,          ///< no answer in time (`timeout`)
  nodedown,         ///< a call's node cannot be reached or went away (`{nodedown, Node}`)
  noconnection,     ///< a link, monitor or spawn whose node is lost (`noconnection`)
  calling_self,     ///< a gen_server call to the calling process (`calling_self`)
  already_started,  ///< the name is taken (`{already_started, Pid}`)
  init_failed,      ///< a started process's init stopped or threw (`{error, Reason}`)
  exited,           ///< the other process ended first; `reason` is its exit reason
  not_found,        ///< no function, child or entry of that name (`not_found`, `undef`)
  badarg,           ///< the caller's input is wrong (`badarg`)
  system_limit,     ///< a limit was reached: processes, atoms, a field's size (`system_limit`)
  not_alive,        ///< distribution is not started on this node (`not_alive`)
  refused,          ///< the peer refused us: cookie, key, name (`refused`)
  exception,        ///< a C++ exception from user code (`{exception, Type, What}`)
};

/// The code's name, as written in the comments above ("noproc", "already_started", ...).
std::string_view to_string(Errc code);

/// The code an Erlang reason stands for: noproc, timeout, {nodedown, _}, noconnection, ...;
/// `exception` for {exception, ...}; `exited` for any other reason.
Errc errc_of(const Term& reason);

/// OTP's "normal" exit reasons: `normal`, `shutdown`, `{shutdown, _}`. They get no crash report
/// and do not restart a transient child.
bool is_normal_exit(const Term& reason);

/// A failure as a value: the code, the Erlang-shaped reason, and a sentence for people.
struct Failure {
  Errc code = Errc::exception;
  Term reason;       ///< noproc, {nodedown, N}, {already_started, Pid}, an init's reason ...
  std::string text;  ///< e.g. "no connection to moebi@localhost"
};

/// The base of the exceptions nodus throws when an operation fails (CallError, TaskError,
/// SpawnError). `reason` is what Erlang names the failure; `exit` is what a process that does
/// not catch it exits with (OTP's shape: a gen_server call gives `{noproc, {gen_server, call,
/// [Server, Request, Timeout]}}`); without one it exits with `reason`.
struct Error : std::runtime_error {
  Error(Errc c, Term why, const std::string& text, std::optional<Term> exit_reason = std::nullopt)
      : std::runtime_error(text), code(c), reason(std::move(why)), exit(std::move(exit_reason)) {}
  explicit Error(Failure f) : Error(f.code, std::move(f.reason), f.text) {}
  Errc code;
  Term reason;
  std::optional<Term> exit;  ///< unset: exits with `reason`
  /// What an uncaught throw of this ends its process with.
  const Term& exit_reason() const { return exit ? *exit : reason; }
  Failure failure() const { return {code, reason, what()}; }
};

/// The one conversion from an exception to an exit reason: ProcessExit's reason;
/// nodus::Error's exit_reason(); any other C++ exception as `{exception, Type, What}`.
/// Processes, supervisors and tasks all end with what this says.
Term exit_reason_of(std::exception_ptr e);

/// A value or the Failure that prevented it. `value()` throws nodus::Error on a failure.
template <class T>
class Expected {
 public:
  Expected(T v) : value_(std::move(v)) {}             // NOLINT: implicit on purpose
  Expected(Failure f) : failure_(std::move(f)) {}     // NOLINT
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& value() & {
    if (!value_) throw Error(*failure_);
    return *value_;
  }
  const T& value() const& {
    if (!value_) throw Error(*failure_);
    return *value_;
  }
  T value() && {
    if (!value_) throw Error(std::move(*failure_));
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }
  /// Only on a failure.
  const Failure& error() const { return *failure_; }
  /// As OTP answers: {ok, Value} or {error, Reason}.
  Term to_term() const {
    return ok() ? tuple(atom("ok"), Term(*value_)) : tuple(atom("error"), failure_->reason);
  }

 private:
  std::optional<T> value_;
  std::optional<Failure> failure_;
};

}  // namespace nodus

NODUS_API_END
