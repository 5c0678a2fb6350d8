// The process API: spawn, send, links, monitors, exit signals, registered names, timers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/receive.hpp"
#include "nodus/system_messages.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// An optional bound on a process's mailbox (`SpawnOptions::max_mailbox`), off by default:
/// messages in it (arrived and not yet taken by a receive, including the ones receives skipped).
struct MailboxLimit {
  /// What a message past the limit does.
  enum class Policy : std::uint8_t {
    exit,    ///< the process exits with reason `mailbox_overflow` (logged at error level), as
             ///< Erlang's max_heap_size kills a process that outgrows it
    refuse,  ///< the message is not delivered: send_nosuspend returns false, a plain send drops
             ///< it (one warning per overflow), a message from another node is dropped there
  };
  std::uint32_t messages = 0;  ///< 0: no limit
  Policy policy = Policy::exit;
};

struct SpawnOptions {
  bool link = false;     ///< link the new process to the caller (spawn_link)
  bool monitor = false;  ///< monitor it from the caller (spawn_monitor)
  Pid group_leader{};    ///< null: inherit the caller's group leader
  MailboxLimit max_mailbox{};  ///< off by default
};

/// Thrown by `exit_self(reason)` inside a process body: ends the process with `reason` (no crash
/// report), like Erlang's `exit/1`.
struct ProcessExit {
  Term reason;
};

}  // namespace nodus
#include "nodus/detail/process.hpp"  // the hooks this header's templates use
namespace nodus {

/// A callable that makes a process body from the given arguments.
template <class F, class... Args>
concept ProcessBody = std::is_invocable_r_v<Proc, std::decay_t<F>&, Args...>;

/// Starts a process running `f(args...)`, which returns a Proc. Arguments are passed by value.
template <class F, class... Args>
  requires ProcessBody<F, Args...>
Pid spawn(F&& f, Args&&... args) {
  return detail::spawn_with({}, nullptr, std::forward<F>(f), std::forward<Args>(args)...);
}
/// spawn + link to the caller, atomically (the child cannot exit unseen).
template <class F, class... Args>
  requires ProcessBody<F, Args...>
Pid spawn_link(F&& f, Args&&... args) {
  return detail::spawn_with({.link = true}, nullptr, std::forward<F>(f),
                            std::forward<Args>(args)...);
}
/// spawn + monitor from the caller: the pid and the monitor reference.
template <class F, class... Args>
  requires ProcessBody<F, Args...>
std::pair<Pid, Ref> spawn_monitor(F&& f, Args&&... args) {
  Ref ref;
  Pid pid = detail::spawn_with({.monitor = true}, &ref, std::forward<F>(f),
                               std::forward<Args>(args)...);
  return {pid, ref};
}
template <class F, class... Args>
  requires ProcessBody<F, Args...>
Pid spawn_opt(const SpawnOptions& opts, F&& f, Args&&... args) {
  return detail::spawn_with(opts, nullptr, std::forward<F>(f), std::forward<Args>(args)...);
}

/// The calling process (a process body, or a thread owning a Mailbox); null elsewhere.
Pid self();

/// Sends `msg` to `to`; never fails (a dead pid drops it, as in Erlang).
/// Atoms, numbers, strings, pids and refs travel as Term; other types travel as themselves.
/// A message to another node whose send budget is passed (NodeOptions::dist_buffer) is still
/// queued, and then the sender waits for that queue to drain, as Erlang suspends it: a process
/// at its next suspension point (its worker runs other processes meanwhile), a plain thread
/// here. Sending only to this node or to other peers never waits.
template <class M>
void send(const Pid& to, M&& msg) {
  detail::deliver(to, detail::make_node(std::forward<M>(msg)));
}
/// Erlang's `erlang:send(Pid, Msg, [nosuspend])`: sends unless that would make the caller
/// wait. False, and `msg` is not sent, if `to`'s node is over its send budget (or `to` is a
/// local process whose `max_mailbox` with the `refuse` policy is full); true otherwise (sent,
/// as `send` sends it).
template <class M>
bool send_nosuspend(const Pid& to, M&& msg) {
  return detail::deliver_nosuspend(to, detail::make_node(std::forward<M>(msg)));
}
/// Sends to a registered name; false if no process has that name.
template <class M>
bool send(Atom name, M&& msg) {
  return detail::deliver_named(name, detail::make_node(std::forward<M>(msg)));
}

/// Registers `pid` under `name`: false if the name is taken or the process is not alive.
bool register_name(Atom name, const Pid& pid);
bool unregister_name(Atom name);
std::optional<Pid> whereis(Atom name);

/// Sends an exit signal to `pid` (Erlang's exit/2): `kill` cannot be trapped, `normal` is
/// ignored unless `pid` traps exits (then it is a message), anything else kills a
/// non-trapping process. To the calling process itself (in a process body) it takes effect at
/// once, as in Erlang: it throws ProcessExit (`killed` for kill; any reason, `normal` too, when
/// not trapping). A signal from another process reaches a busy process at its next
/// suspension point (receive, yield, a send that waits): bodies are cooperative.
void exit(const Pid& pid, Term reason);
/// Ends the calling process with `reason` (Erlang's exit/1). Throws ProcessExit. (Not called
/// `exit`: with `using namespace nodus`, `exit(1)` would pick ::exit and end the OS process.)
[[noreturn]] void exit_self(Term reason);

/// Links the caller and `pid`. A local `pid` that is not alive: a caller that traps exits
/// gets an ExitMsg `noproc`; any other gets nodus::Error (code noproc) thrown, which it may
/// catch (uncaught, it exits with `noproc`), as OTP 25's link/1 raises noproc. A pid of
/// another node that is not alive gives the exit signal `noproc` later, as in Erlang.
void link(const Pid& pid);
void unlink(const Pid& pid);
/// Monitors `pid`: one `Down` message when it exits (`noproc` at once if it is not alive).
Ref monitor(const Pid& pid);
/// Removes a monitor; with `flush`, also removes its Down message if already delivered.
/// False if the monitor was not active.
bool demonitor(const Ref& ref, bool flush = false);
/// Sets trap_exit for the caller; returns the previous value.
bool trap_exit(bool on);
bool is_process_alive(const Pid& pid);

/// The caller's group leader (where nodus::io output goes).
Pid group_leader();
void set_group_leader(const Pid& leader, const Pid& pid);

/// A timer from send_after; cancel it with cancel_timer.
struct TimerRef {
  std::uint64_t id = 0;
};
/// Delivers `msg` to `to` after `d` (one shared timer thread; no thread per timer).
template <class M, class Rep, class Period>
TimerRef send_after(std::chrono::duration<Rep, Period> d, const Pid& to, M&& msg) {
  return {detail::send_after_node(std::chrono::duration_cast<Clock::duration>(d), to,
                                  detail::make_node(std::forward<M>(msg)))};
}
/// Erlang's cancel_timer: the time that was left (0 if it was due), or nullopt (Erlang's
/// `false`) if the timer already fired or was cancelled.
std::optional<std::chrono::milliseconds> cancel_timer(TimerRef t);

}  // namespace nodus

NODUS_API_END
