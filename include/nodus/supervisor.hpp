// Supervisor: starts children, watches them, restarts them by strategy and restart type, and
// gives up (escalates) past its restart intensity — OTP's supervisor, for C++ processes.
//
//   using namespace nodus::supervisor;
//   Pid sup = start({.strategy = Strategy::one_for_one},
//                   {worker("cache", cache_body), worker("poller", poller_body, 5s)},
//                   {.name = atom("app_sup"), .link = true}).value();
//   Term children = co_await which_children(sup);   // [{Id, Pid, worker}, ...]
//
// Children start in list order (each after the previous one's init) and stop in reverse order;
// start returns once they all run, like OTP's start_link.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nodus/gen_server.hpp"
#include "nodus/process.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::supervisor {

enum class Strategy {
  one_for_one,   ///< restart only the child that ended
  one_for_all,   ///< stop all the others, then restart them all
  rest_for_one,  ///< stop the children started after it, then restart those and it
};
enum class Restart {
  permanent,  ///< always restarted
  transient,  ///< restarted only after an abnormal exit (not normal, shutdown, {shutdown, _})
  temporary,  ///< never restarted (and forgotten once it ends)
};
enum class ChildType { worker, supervisor };

/// Shutdown values besides a timeout: kill at once, or wait as long as it takes.
inline constexpr std::chrono::milliseconds brutal_kill{0};
inline constexpr std::chrono::milliseconds infinity{-1};

struct ChildSpec {
  std::string id;
  /// Runs in the supervisor's process and starts the child linked to it (spawn_link,
  /// gen_server::start with .link, supervisor::start with .link); returns its pid. Throw to
  /// fail the start.
  std::function<Pid()> start;
  Restart restart = Restart::permanent;
  /// Time between `exit(child, shutdown)` and `kill`; brutal_kill; infinity (default for
  /// supervisors, 5 s for workers).
  std::chrono::milliseconds shutdown{5000};
  ChildType type = ChildType::worker;
  /// Used instead of `start` when set: gets the dynamic supervisor's extra_arguments (a list;
  /// Elixir prepends them to the child's start arguments), or [] under a supervisor.
  std::function<Pid(const Term& extra_arguments)> start_with{};
};

/// A worker child running `body(args...)` (any process body), started with spawn_link.
template <class F, class... A>
ChildSpec worker(std::string id, F body, A... args) {
  return {std::move(id), [body, args...]() { return spawn_link(body, args...); }};
}
/// A GenServer child: `make()` builds a fresh server object for each (re)start.
ChildSpec gen_server_child(std::string id, std::function<std::unique_ptr<GenServer>()> make, Atom name = {});

struct Flags {
  Strategy strategy = Strategy::one_for_one;
  int max_restarts = 3;                          ///< more than this many restarts ...
  std::chrono::milliseconds max_seconds{5000};   ///< ... within this window: give up
};

struct StartOptions {
  Atom name;          ///< register the supervisor under this local name
  bool link = false;  ///< link it to the caller (a supervisor's child supervisor does this)
};

/// Starts a supervisor process; returns once its children started, in list order, each after
/// the previous one's init returned (OTP's start_link). If a child fails to start the others
/// are stopped and the result is a Failure with reason {shutdown, {failed_to_start_child, Id,
/// Reason}} (the supervisor exits with it); a taken name gives {already_started, Pid}. Past its
/// intensity it stops its children in reverse start order and exits with `shutdown`. Restarts
/// and give-ups are logged with the child id and exit reason. Where it may wait: as
/// gen_server::start (a thread blocks; a supervisor's child start defers; elsewhere in a
/// process use start_async).
Expected<Pid> start(Flags flags, std::vector<ChildSpec> children, StartOptions opts = {});
Async<Expected<Pid>> start_async(Flags flags, std::vector<ChildSpec> children, StartOptions opts = {});
/// OTP's supervisor:stop: stops the children (reverse start order), then the supervisor exits
/// with `reason`; returns `ok` once it is gone (Failure noproc, timeout, exited otherwise).
Expected<Term> stop(Mailbox& mb, ServerRef sup, Term reason = Term(atom("normal")),
                  std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
Async<Expected<Term>> stop(ServerRef sup, Term reason = Term(atom("normal")),
                         std::chrono::milliseconds timeout = std::chrono::hours(24 * 365));
/// A nested supervisor as a child spec (type supervisor, shutdown infinity).
ChildSpec supervisor_child(std::string id, Flags flags, std::vector<ChildSpec> children);

// Managing a running supervisor, from a process (co_await) or a thread's Mailbox. Results are
// Terms, as in Erlang: start_child -> {ok, Pid} | {error, Reason}; terminate_child,
// restart_child, delete_child -> ok | {ok, Pid} | {error, not_found | running | restarting};
// which_children -> [{Id, Pid | undefined, worker | supervisor}], newest first (as OTP's);
// count_children -> [{specs, N}, {active, N}, {supervisors, N}, {workers, N}].
Async<Term> start_child(ServerRef sup, ChildSpec spec);
Async<Term> terminate_child(ServerRef sup, std::string id);
Async<Term> restart_child(ServerRef sup, std::string id);
Async<Term> delete_child(ServerRef sup, std::string id);
Async<Term> which_children(ServerRef sup);
Async<Term> count_children(ServerRef sup);
Term start_child(Mailbox& mb, ServerRef sup, ChildSpec spec);
Term terminate_child(Mailbox& mb, ServerRef sup, std::string id);
Term restart_child(Mailbox& mb, ServerRef sup, std::string id);
Term delete_child(Mailbox& mb, ServerRef sup, std::string id);
Term which_children(Mailbox& mb, ServerRef sup);
Term count_children(Mailbox& mb, ServerRef sup);

}  // namespace nodus::supervisor

// DynamicSupervisor: children started on demand, with no ids (one_for_one, restart types,
// intensity and shutdown as a supervisor's). Results are Terms, as Elixir's:
// start_child -> {ok, Pid} | {error, max_children} | {error, Reason}; terminate_child(pid) ->
// ok | {error, not_found} (the child is stopped and forgotten); supervisor::which_children
// gives [{undefined, Pid, worker | supervisor}] and count_children works on it too.
namespace nodus::dynamic_supervisor {

struct Options {
  Atom name;
  bool link = false;
  int max_restarts = 3;
  std::chrono::milliseconds max_seconds{5000};
  /// More running children than this: start_child answers {error, max_children}.
  std::size_t max_children = static_cast<std::size_t>(-1);
  /// Handed to every child spec's `start_with` (a list).
  Term extra_arguments = Term::list({});
};

/// Starts one (returns once it runs): its pid, {already_started, Pid}, or badarg.
Expected<Pid> start(Options opts = {});
/// As a child of a supervision tree.
supervisor::ChildSpec child_spec(std::string id, Options opts = {});
Async<Term> start_child(ServerRef sup, supervisor::ChildSpec spec);
Term start_child(Mailbox& mb, ServerRef sup, supervisor::ChildSpec spec);
Async<Term> terminate_child(ServerRef sup, Pid pid);
Term terminate_child(Mailbox& mb, ServerRef sup, Pid pid);

}  // namespace nodus::dynamic_supervisor

NODUS_API_END
