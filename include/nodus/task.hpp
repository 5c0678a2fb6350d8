// Task and Task.Supervisor: a process that computes one result for its owner, started
// directly or by a (possibly remote) task supervisor — Elixir's Task, for C++.
//
//   // a task function: a coroutine returning Async<Term>
//   Async<Term> receive_message(Term args) { nodus::io::puts(args[0].as_binary()); co_return atom("ok"); }
//   nodus::task::register_function("Chat.receive_message", receive_message);  // on the node that runs it
//
//   // in a process on another node (the lesson's Chat.send_message):
//   Task t = co_await task_supervisor::async({atom("Chat.TaskSupervisor"), atom("kate@localhost")},
//                                            "Chat.receive_message", Term::list({"hi"}));
//   Term r = co_await task::await(t);   // throws TaskError: "no connection to kate@localhost", ...
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/gen_server.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/supervisor.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// A running task, owned by the process that started it (only the owner may await it).
struct Task {
  Pid pid;
  Ref tag;    ///< tags the result message {Tag, Result}
  Ref mref;   ///< the owner's monitor of pid
  Pid owner;
  /// The task drops the owner's monitor as it sends its result (a supervised task does), so
  /// taking the result ends the monitor here without telling the task's node.
  bool monitor_ends_with_result = false;
  /// False once an await of this Task timed out: its monitor is gone (shutdown then watches
  /// it with a monitor of its own).
  mutable bool watched = true;
};

/// A task that produced no result. `reason` is the task's exit reason (its exception as
/// {exception, Type, What}, `noproc`, `{nodedown, Node}` for a lost node, `killed`...) or `timeout`; what() says it in
/// words, as Elixir does: "no connection to moebi@localhost".
/// Uncaught, it exits the caller as Elixir's Task.await does: `{Reason, {'Elixir.Task', await,
/// [TaskPid, Timeout]}}`.
struct TaskError : Error {
  TaskError(Term why, const std::string& text, std::optional<Term> exit_reason = std::nullopt)
      : Error(errc_of(why), why, text, std::move(exit_reason)) {}
};

/// A function tasks run by name (on this node, for local or remote task supervisors).
using TaskFunction = std::function<Async<Term>(Term args)>;

namespace task {

/// Registers `f` as `name` on this node; replaces an earlier one.
void register_function(std::string name, TaskFunction f);

/// Starts `f()` (returning Async<Term>) in a new process linked to the caller.
Task async(std::function<Async<Term>()> f);

/// Waits for the result (default 5 s, like Elixir). Throws TaskError if the task ended
/// without one or the time ran out (the task keeps running then, as in Elixir, but is no
/// longer watched: its late result and Down are dropped, not left in the caller's mailbox).
Async<Term> await(const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
Term await(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Like await, as a value: {ok, Result}, {exit, Reason}, or `nil` if no answer yet (the task
/// keeps running and may be awaited again).
Async<Term> yield(const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
Term yield(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Stops the task (unless it finished): {ok, Result} if it had, {exit, Reason}, or `nil`.
/// It gets exit `shutdown`, and `kill` after `timeout`; with `task::brutal_kill` it is killed
/// at once (Elixir's Task.shutdown(task, :brutal_kill)).
Async<Term> shutdown(const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
Term shutdown(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// shutdown's "kill at once" (the same value as supervisor::brutal_kill).
inline constexpr std::chrono::milliseconds brutal_kill{0};

/// Task.start: runs `f()` in a new process nobody awaits (its result is dropped; a failure is
/// logged as a task's crash report). start_link links it to the caller.
Pid start(std::function<Async<Term>()> f);
Pid start_link(std::function<Async<Term>()> f);

/// Task.await_many: the results of all `tasks`, in their order, waiting at most `timeout` for
/// all of them together. The first task that exits without a result, or the time running out,
/// throws TaskError (uncaught, the caller exits with `{Reason, {'Elixir.Task', await_many,
/// [Tasks, Timeout]}}`); the tasks not yet done are then no longer watched (as await's timeout).
Async<std::vector<Term>> await_many(const std::vector<Task>& tasks,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));
std::vector<Term> await_many(Mailbox& mb, const std::vector<Task>& tasks,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Task.yield_many: waits up to `timeout` for all `tasks`; for each, in order, {ok, Result},
/// {exit, Reason} or `nil` (still running: it may be yielded, awaited or shut down later).
Async<std::vector<Term>> yield_many(const std::vector<Task>& tasks,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));
std::vector<Term> yield_many(Mailbox& mb, const std::vector<Task>& tasks,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

struct StreamOptions {
  /// How many tasks run at once (Elixir's default: the number of schedulers; 0 here means the
  /// hardware's threads).
  unsigned max_concurrency = 0;
  /// Results in the order of the inputs (true) or as they complete.
  bool ordered = true;
  /// Per task, from its start.
  std::chrono::milliseconds timeout = std::chrono::seconds(5);
  /// On a task's timeout: kill it and give {exit, timeout} for it (Elixir's `on_timeout:
  /// :kill_task`) instead of failing the whole stream (the default, `:exit`: the running tasks
  /// are killed and TaskError timeout is thrown).
  bool kill_on_timeout = false;
};
/// Task.async_stream, run to the end: `f(item)` for every item in tasks linked to the caller,
/// at most `max_concurrency` at a time; for each item {ok, Result}, or {exit, Reason} for a
/// task that ended without one (seen only by a caller that traps exits, as in Elixir: a
/// linked task's crash is the caller's).
Async<std::vector<Term>> async_stream(std::vector<Term> items, std::function<Async<Term>(Term)> f,
                                      StreamOptions opts = {});
std::vector<Term> async_stream(Mailbox& mb, std::vector<Term> items, std::function<Async<Term>(Term)> f,
                               StreamOptions opts = {});

}  // namespace task

}  // namespace nodus
#include "nodus/detail/task.hpp"  // the hooks this header's templates use
namespace nodus {

namespace task_supervisor {

/// Starts a task supervisor (its tasks are temporary children): its pid, or {already_started,
/// Pid}. Where it may wait: as gen_server::start.
Expected<Pid> start(supervisor::StartOptions opts = {});
/// The same in a process body (it waits in the caller's mailbox).
Async<Expected<Pid>> start_async(supervisor::StartOptions opts = {});
/// As a child of a supervision tree (the lesson's `{Task.Supervisor, name: Chat.TaskSupervisor}`).
supervisor::ChildSpec child_spec(Atom name);

/// Starts the task function `function(args)` under `sup` (a pid, a name, or {name, node}),
/// linked to the caller, and returns the task to await. Fails with TaskError when `sup` cannot
/// be reached or does not know the function.
Async<Task> async(ServerRef sup, std::string function, Term args);
/// The same without the link: a crash becomes an {exit, Reason} from yield (await throws).
Async<Task> async_nolink(ServerRef sup, std::string function, Term args);
Task async(Mailbox& mb, ServerRef sup, std::string function, Term args);
Task async_nolink(Mailbox& mb, ServerRef sup, std::string function, Term args);
/// Starts a task nobody awaits: {ok, Pid} or {error, Reason}.
Async<Term> start_child(ServerRef sup, std::string function, Term args);
Term start_child(Mailbox& mb, ServerRef sup, std::string function, Term args);
/// The running tasks' pids, as a list.
Async<Term> children(ServerRef sup);
Term children(Mailbox& mb, ServerRef sup);
/// Stops a task: ok, or {error, not_found}.
Async<Term> terminate_child(ServerRef sup, Pid pid);
Term terminate_child(Mailbox& mb, ServerRef sup, Pid pid);

}  // namespace task_supervisor
}  // namespace nodus

NODUS_API_END
