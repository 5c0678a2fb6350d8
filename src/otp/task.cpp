// Task and Task.Supervisor (nodus/task.hpp). A task supervisor speaks Terms
// ({start_task, Owner, Tag, Link, Function, Args}, children, {terminate_child, Pid}) through the
// GenServer call protocol, so it serves callers on other nodes.
#include "nodus/task.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <algorithm>

#include "nodus/log.hpp"
#include "nodus/node.hpp"
#include "nodus/system_messages.hpp"
#include "builtins.hpp"

namespace nodus {
namespace {

std::mutex g_mu;
std::map<std::string, TaskFunction, std::less<>> g_functions;

std::optional<TaskFunction> find_function(std::string_view name) {
  std::lock_guard lock(g_mu);
  auto it = g_functions.find(name);
  if (it == g_functions.end()) return observe::parts::builtin(name);  // "nodus.stats", ...
  return it->second;
}

// Runs a task's function; a failure is logged as Elixir's crash report for a task
// ("Task <pid> started from <owner> terminating"), cut and rate-limited, and ends the task
// with its reason.
// A term of the wrong kind in a task function: the reason names the function, which argument
// it was (when the term is one of the arguments, or inside one) and both kinds.
std::string bad_argument_text(const BadTerm& e, std::string_view function, const Term* args) {
  std::string where;
  if (args != nullptr && args->is_list()) {
    const auto& a = args->elems();
    for (std::size_t i = 0; i < a.size() && where.empty(); ++i) {
      if (a[i] == e.term()) where = "argument " + std::to_string(i + 1) + " is ";
    }
  }
  if (where.empty()) where = "a term it was given is ";
  return std::string(function.substr(0, 255)) + ": " + where + std::string(kind_name(e.term().kind())) + " (" +
         e.term().to_string(100) + "), where " + std::string(kind_name(e.wanted())) + " was expected";
}

Async<Term> run_reported(const std::function<Async<Term>()>& f, const Pid& owner, std::string_view function,
                         const Term* args) {
  try {
    co_return co_await f();
  } catch (...) {
    Term why = exit_reason_of(std::current_exception());
    try {
      throw;
    } catch (const BadTerm& e) {
      why = tuple(atom("badarg"), Term(bad_argument_text(e, function, args)));
    } catch (...) {
    }
    if (!is_normal_exit(why)) {
      std::string text = "Task " + to_string(self()) + " started from " +
                         (owner.is_null() ? std::string("nobody") : to_string(owner)) + " terminating\n** (stop) " +
                         why.to_string(1000) + "\nFunction: " + std::string(function.substr(0, 255));
      if (args) text += "\n    Args: " + args->to_string(1000);
      log_limited(spdlog::level::err, "crash " + to_string(self()), text, 4000);
    }
    exit_self(why);
  }
}

// A local task: monitored (and linked) from before it runs; sends {Tag, Result}.
Proc task_body(Pid owner, Ref tag, std::function<Async<Term>()> f) {
  Term r = co_await run_reported(f, owner, "(a local function)", nullptr);
  send(owner, tuple(Term(tag), std::move(r)));
}

struct SupState {
  Pid parent;
  std::mutex mu;
  std::set<Pid> children;  // running tasks; each one leaves when it ends (LeaveSupervisor)
};

// A task leaves its supervisor when it ends, however it ends (its frame goes first, while the
// process is still itself): it unlinks, so the supervisor gets no exit message per task (it
// would only have to drop the child), and it removes itself from the children.
struct LeaveSupervisor {
  std::shared_ptr<SupState> state;
  Pid sup;
  LeaveSupervisor(std::shared_ptr<SupState> s, Pid p) : state(std::move(s)), sup(p) {}
  LeaveSupervisor(const LeaveSupervisor&) = delete;
  LeaveSupervisor& operator=(const LeaveSupervisor&) = delete;
  ~LeaveSupervisor() {
    try {
      unlink(sup);
    } catch (...) {  // cannot happen in a process; a destructor must not throw anyway
    }
    std::lock_guard lock(state->mu);
    state->children.erase(self());
  }
};

// A task started by a task supervisor for `owner` (maybe on another node). It is born
// monitored by the owner under `tag` (the supervisor hands over the monitor the owner's start
// request came with, StartCall), so even a task that fails at once reports its reason, and no
// extra round trip is needed before it runs.
// The task answers the supervisor's caller itself ({ok, self()}, before running), so that the
// answer, the result and the task's exit signal of a short task leave this node in one batch:
// one message per remote async instead of two (the supervisor answers only errors). When the
// owner asked with `tag` as the call's tag too (StartCall), the result also ends the monitor:
// the task drops it just before sending, and the owner forgets it on reading the result, so no
// DOWN and no DEMONITOR cross the network.
Proc supervised_task(Pid owner, Ref tag, bool link_owner, From caller, std::function<Async<Term>()> f,
                     std::shared_ptr<SupState> state, Pid sup, std::string function, Term args) {
  LeaveSupervisor leave(std::move(state), sup);
  if (link_owner) link(owner);
  gen_server::reply(caller, tuple(atom("ok"), self()));
  Term r = co_await run_reported(f, owner, function, &args);
  if (!owner.is_null()) {
    if (caller.tag == tag) detail::drop_watcher(tag);
    send(owner, tuple(Term(tag), std::move(r)));
  }
}

std::string reason_text(const Term& r, const Pid& pid) {
  if (r.is_atom("noconnection")) return "no connection to " + std::string(pid.node.name());
  if (r.is_atom("noproc")) return "no process: task " + to_string(pid) + " is not alive";
  return "task " + to_string(pid) + " exited: " + r.to_string();
}

// The result is in: the monitor of the task goes (and a Down that came meanwhile).
void release_monitor(const Task& t) {
  if (t.monitor_ends_with_result) {
    detail::remove_monitor(t.mref);
  } else {
    demonitor(t.mref, true);
  }
}

// Elixir's exit for an uncaught await failure: {Reason, {'Elixir.Task', await, [Task, Timeout]}}
// (the task as its pid here).
Term await_exit(const Term& why, const Task& t, std::chrono::milliseconds timeout) {
  return tuple(why, tuple(atom("Elixir.Task"), atom("await"), Term::list({Term(t.pid), Term(static_cast<long>(timeout.count()))})));
}

// Waiting for a task's outcome: its result message or its Down.
struct Outcome {
  const Task& t;
  std::chrono::milliseconds timeout{5000};
  bool matches(const MessageRef& m) const {
    if (m.is<Term>()) {
      const Term& x = m.get<Term>();
      return x.is_tuple() && x.size() == 2 && x[0].is_ref() && x[0].as_ref() == t.tag;
    }
    return m.is<Down>() && m.get<Down>().ref == t.mref;
  }
  // {ok, Result} | {exit, Reason} | nil
  Term as_yield(std::optional<Message> m) const {
    if (!m) return atom("nil");
    if (m->is<Down>()) return tuple(atom("exit"), m->get<Down>().reason);
    release_monitor(t);
    return tuple(atom("ok"), m->get<Term>()[1]);
  }
  Term as_await(std::optional<Message> m) const {
    if (!m) {
      // as Elixir: the task is no longer watched, and its late result (and Down) are dropped
      // rather than left in the caller's mailbox
      demonitor(t.mref, true);
      detail::ignore_reply(t.tag);
      t.watched = false;
      throw TaskError(atom("timeout"), "time out: task " + to_string(t.pid) + " gave no result in time",
                      await_exit(atom("timeout"), t, timeout));
    }
    if (m->is<Down>()) {
      const Term& r = m->get<Down>().reason;
      // as Elixir's Task.await: a lost node is {nodedown, Node}
      const Term why = r.is_atom("noconnection") ? tuple(atom("nodedown"), t.pid.node) : r;
      throw TaskError(why, reason_text(r, t.pid), await_exit(why, t, timeout));
    }
    release_monitor(t);
    return m->get<Term>()[1];
  }
};

void check_owner(const Task& t) {
  if (t.owner != self()) throw std::logic_error("a task can only be awaited by its owner");
}

// ---------------------------------------------------------------- the task supervisor

// nullopt: started, the task answers `from` itself; else the answer (an error).
std::optional<Term> start_task(const std::shared_ptr<SupState>& state, const Term& req, const From& from) {
  // {start_task, Owner, Tag, Link, Function, Args}
  if (!(req.is_tuple() && req.size() == 6 && (req[1].is_pid() || req[1].is_atom("none")) && req[2].is_ref() &&
        req[3].is_atom() && req[4].is_binary())) {
    return tuple(atom("error"), atom("badarg"));
  }
  const std::string& name = req[4].as_binary();
  auto f = find_function(name);
  if (!f) {
    // answered at once (the caller sees {error, {undef, ...}}), and said here, where it is fixed
    const std::string text = name.substr(0, 255) + " is not a task function on " + std::string(node::self().name());
    log_limited(spdlog::level::warn, "task.undef",
                "task supervisor " + to_string(self()) + ": " + text + " (asked by " +
                    (req[1].is_pid() ? to_string(req[1].as_pid()) : std::string("nobody")) +
                    "); register it with nodus::task::register_function");
    return tuple(atom("error"), tuple(atom("undef"), text));
  }
  const Pid owner = req[1].is_pid() ? req[1].as_pid() : Pid{};
  Term args = req[5];
  std::function<Async<Term>()> run = [f = std::move(*f), args]() { return f(args); };
  const Ref tag = req[2].as_ref();
  Proc body = supervised_task(owner, tag, req[3].is_atom("true"), from, std::move(run), state, self(), name,
                              std::move(args));
  {
    // held across the spawn: a task that ends at once leaves only after it was added
    std::lock_guard lock(state->mu);
    const Pid pid = detail::spawn_frame(body.release(), {.link = true}, {}, nullptr, {}, owner, tag);
    state->children.insert(pid);
  }
  // the owner monitored this supervisor under the tag for its request: the task has that
  // monitor now (it was born watched under the tag)
  if (from.tag == tag) detail::drop_watcher(tag);
  return std::nullopt;
}

std::vector<Pid> children_of(SupState& s) {
  std::lock_guard lock(s.mu);
  return {s.children.begin(), s.children.end()};
}

Proc task_supervisor_loop(std::shared_ptr<SupState> state, detail::Starter st) {
  SupState& s = *state;
  trap_exit(true);
  if (!detail::start_begin(st)) co_return;
  detail::start_ack(st);
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ExitMsg>()) {
      const ExitMsg& e = m.get<ExitMsg>();
      if (!s.parent.is_null() && e.from == s.parent) {
        for (const Pid& c : children_of(s)) exit(c, atom("shutdown"));
        exit_self(e.reason);
      }
      std::lock_guard lock(s.mu);
      s.children.erase(e.from);
      continue;
    }
    if (!m.is<Term>()) continue;
    const Term& t = m.get<Term>();
    if (!(t.is_tuple() && t.size() == 3 && t[0].is_atom("$gen_call") && t[1].is_tuple() && t[1].size() == 2 &&
          t[1][0].is_pid() && t[1][1].is_ref())) {
      const std::string who = to_string(self());
      log_limited(spdlog::level::warn, who, "task supervisor " + who + ": unexpected message " + t.to_string(200));
      continue;
    }
    const From from{t[1][0].as_pid(), t[1][1].as_ref()};
    const Term& req = t[2];
    Term answer;
    if (req.is_tuple() && req.size() > 0 && req[0].is_atom("start_task")) {
      auto error = start_task(state, req, from);
      if (!error) continue;  // the task answers
      answer = std::move(*error);
    } else if (req.is_atom("children")) {
      std::vector<Term> pids;
      for (const Pid& c : children_of(s)) pids.emplace_back(c);
      answer = Term::list(std::move(pids));
    } else if (req.is_tuple(2, "terminate_child") && req[1].is_pid()) {
      const Pid pid = req[1].as_pid();
      bool found;
      {
        std::lock_guard lock(s.mu);
        found = s.children.erase(pid) != 0;
      }
      if (found) {
        unlink(pid);
        exit(pid, atom("shutdown"));
        answer = atom("ok");
      } else {
        answer = tuple(atom("error"), atom("not_found"));
      }
    } else {
      answer = tuple(atom("error"), atom("badarg"));
    }
    gen_server::reply(from, std::move(answer));
  }
}

Term start_request(const Task& t, bool link, const std::string& function, Term args) {
  return Term::tuple({atom("start_task"), t.owner.is_null() ? Term(atom("none")) : Term(t.owner), Term(t.tag),
                      atom(link ? "true" : "false"), function, std::move(args)});
}

// A supervised task's start, with one monitor from request to result. The owner monitors the
// supervisor under the task's tag and sends the GenServer call with that tag as the call's; the
// supervisor hands the monitor over to the task it starts (born watched under the tag), and the
// task drops it as it sends its result. A remote async + await is then a MONITOR and the call
// one way, the answer, the result and the task's exit signal the other: no DEMONITOR or DOWN
// (a plain gen_server::call plus the task's own monitor would cost two of each).
struct StartCall {
  Task t;
  ServerRef sup;  // as the errors name it
  Atom node;      // where it runs

  StartCall(const ServerRef& to, const std::string& function, Term args, bool link) : sup(to) {
    t.owner = self();
    if (t.owner.is_null()) throw std::logic_error("task_supervisor::async needs a calling process or Mailbox");
    t.tag = make_ref();
    t.mref = t.tag;
    try {
      node = detail::send_call(sup, t.tag, start_request(t, link, function, std::move(args)));
    } catch (const CallError& e) {
      throw TaskError(e.reason, e.what());
    }
  }

  bool matches(const MessageRef& m) const { return Outcome{t}.matches(m); }

  Task finish(std::optional<Message> m, const std::string& function) {
    if (!m) {
      demonitor(t.tag, true);
      throw TaskError(atom("timeout"), "time out: no reply from " + sup.to_string());
    }
    if (m->is<Down>()) {
      const CallError e = detail::call_failure(m->get<Down>().reason, sup.to_string(), node);
      throw TaskError(e.reason, e.what());
    }
    const Term reply = m->take<Term>()[1];
    if (!reply.is_tuple(2, "ok") || !reply[1].is_pid()) {
      demonitor(t.tag, true);  // the supervisor still has it: no task took it over
      const Term why = reply.is_tuple(2, "error") ? reply[1] : reply;
      throw TaskError(why, "cannot start " + function + " under " + sup.to_string() + ": " + why.to_string());
    }
    t.pid = reply[1].as_pid();
    t.monitor_ends_with_result = true;
    detail::retarget_monitor(t.tag, t.pid);
    return t;
  }
};

// Elixir waits for the supervisor as long as it takes (a missing supervisor is noproc, a lost
// node noconnection, both at once); nodus also bounds a supervisor that does not answer.
constexpr auto kStartTimeout = std::chrono::seconds(10);

}  // namespace

namespace task {

void register_function(std::string name, TaskFunction f) {
  std::lock_guard lock(g_mu);
  g_functions[std::move(name)] = std::move(f);
}

Task async(std::function<Async<Term>()> f) {
  Task t;
  t.owner = self();
  if (t.owner.is_null()) throw std::logic_error("task::async needs a calling process or Mailbox");
  t.tag = make_ref();
  t.pid = detail::spawn_with({.link = true, .monitor = true}, &t.mref, task_body, t.owner, t.tag, std::move(f));
  return t;
}

namespace {
// The task's result message or its Down, whichever comes first (nullopt: the time ran out).
Async<std::optional<Message>> next_outcome(const Task& t, std::chrono::milliseconds timeout) {
  check_owner(t);
  Outcome o{t};
  co_return co_await receive<Message>([&o](const MessageRef& r) { return o.matches(r); }, timeout);
}
std::optional<Message> next_outcome(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout) {
  check_owner(t);
  Outcome o{t};
  return mb.receive<Message>([&o](const MessageRef& r) { return o.matches(r); }, timeout);
}
}  // namespace

Async<Term> await(const Task& t, std::chrono::milliseconds timeout) {
  co_return Outcome{t, timeout}.as_await(co_await next_outcome(t, timeout));
}
Term await(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout) {
  return Outcome{t, timeout}.as_await(next_outcome(mb, t, timeout));
}
Async<Term> yield(const Task& t, std::chrono::milliseconds timeout) {
  co_return Outcome{t}.as_yield(co_await next_outcome(t, timeout));
}
Term yield(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout) {
  return Outcome{t}.as_yield(next_outcome(mb, t, timeout));
}

namespace {
Term shutdown_answer(Term y) {
  // a task we stopped ourselves ended "without an answer"
  if (y.is_tuple(2, "exit") && (y[1].is_atom("shutdown") || y[1].is_atom("killed"))) return atom("nil");
  return y;
}
}  // namespace

namespace {
// Stopping a task: its outcome, or, when an await that timed out dropped the task's monitor,
// the Down of a monitor of our own (only then: two monitors would give two Downs, and one could
// still be on its way when the other is flushed).
struct Stopping {
  const Task& t;
  Ref watch;
  Stopping(const Task& task, bool brutal) : t(task), watch(task.watched ? Ref{} : monitor(task.pid)) {
    unlink(t.pid);
    exit(t.pid, atom(brutal ? "kill" : "shutdown"));
  }
  bool matches(const MessageRef& m) const {
    return Outcome{t}.matches(m) || (!t.watched && m.is<Down>() && m.get<Down>().ref == watch);
  }
  Term finish(std::optional<Message> m) const {
    if (!t.watched && m->is<Down>() && m->get<Down>().ref == watch) {
      return shutdown_answer(tuple(atom("exit"), m->get<Down>().reason));
    }
    if (!t.watched) demonitor(watch, true);  // (a late result came first)
    return shutdown_answer(Outcome{t}.as_yield(std::move(m)));
  }
};
}  // namespace

Async<Term> shutdown(const Task& t, std::chrono::milliseconds timeout) {
  check_owner(t);
  const Stopping s(t, timeout == brutal_kill);
  auto pred = [&s](const MessageRef& r) { return s.matches(r); };
  auto m = co_await receive<Message>(pred, timeout == brutal_kill ? std::chrono::milliseconds(std::chrono::hours(24)) : timeout);
  if (!m) {
    exit(t.pid, atom("kill"));
    m = co_await receive<Message>(pred);
  }
  co_return s.finish(std::move(m));
}
Term shutdown(Mailbox& mb, const Task& t, std::chrono::milliseconds timeout) {
  check_owner(t);
  const Stopping s(t, timeout == brutal_kill);
  auto pred = [&s](const MessageRef& r) { return s.matches(r); };
  auto m = mb.receive<Message>(pred, timeout == brutal_kill ? std::chrono::milliseconds(std::chrono::hours(24)) : timeout);
  if (!m) {
    exit(t.pid, atom("kill"));
    m = mb.receive<Message>(pred, std::chrono::hours(24));
  }
  return s.finish(std::move(m));
}

namespace {
Proc unowned_task(std::function<Async<Term>()> f) { (void)co_await run_reported(f, Pid{}, "(a local function)", nullptr); }


// Waiting on several tasks at once: the outcome of each, as yield gives it.
struct Many {
  const std::vector<Task>& tasks;
  std::vector<std::optional<Term>> out;
  std::size_t left;
  explicit Many(const std::vector<Task>& ts) : tasks(ts), out(ts.size()), left(ts.size()) {
    for (const Task& t : tasks) check_owner(t);
  }
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::size_t which(const MessageRef& m) const {
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (!out[i] && Outcome{tasks[i]}.matches(m)) return i;
    }
    return none;
  }
  bool matches(const MessageRef& m) const { return which(m) != none; }
  std::size_t take(std::optional<Message> m) {
    const std::size_t i = which(*m);
    out[i] = Outcome{tasks[i]}.as_yield(std::move(m));
    --left;
    return i;
  }
  std::vector<Term> yields() const {
    std::vector<Term> r;
    r.reserve(out.size());
    for (const auto& o : out) r.push_back(o ? *o : Term(atom("nil")));
    return r;
  }
  // await_many's failure: the others are no longer watched (their late results are dropped,
  // and the caller drains what already came: `matches` still names them), then it is thrown
  std::optional<TaskError> error;
  void fail(const Term& why, const std::string& text, std::chrono::milliseconds timeout) {
    std::vector<Term> pids;
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      pids.emplace_back(tasks[i].pid);
      if (out[i]) continue;
      demonitor(tasks[i].mref, true);
      detail::ignore_reply(tasks[i].tag);
      tasks[i].watched = false;
    }
    error.emplace(why, text,
                  tuple(why, tuple(atom("Elixir.Task"), atom("await_many"),
                                   Term::list({Term::list(std::move(pids)), Term(static_cast<long>(timeout.count()))}))));
  }
  // await_many: a task that exited ends the wait
  void check_exit(std::size_t i, std::chrono::milliseconds timeout) {
    const Term& o = *out[i];
    if (!o.is_tuple(2, "exit")) return;
    const Term& r = o[1];
    const Term why = r.is_atom("noconnection") ? tuple(atom("nodedown"), tasks[i].pid.node) : r;
    fail(why, reason_text(r, tasks[i].pid), timeout);
  }
  std::vector<Term> results() const {
    std::vector<Term> r;
    r.reserve(out.size());
    for (const auto& o : out) r.push_back((*o)[1]);
    return r;
  }
};
}  // namespace

Pid start(std::function<Async<Term>()> f) { return spawn(unowned_task, std::move(f)); }
Pid start_link(std::function<Async<Term>()> f) { return spawn_link(unowned_task, std::move(f)); }

Async<std::vector<Term>> await_many(const std::vector<Task>& tasks, std::chrono::milliseconds timeout) {
  Many w(tasks);
  const auto deadline = Clock::now() + timeout;
  while (w.left > 0) {
    auto m = co_await receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, detail::time_left(deadline));
    if (!m) {
      w.fail(atom("timeout"), "time out: tasks gave no result in time", timeout);
    } else {
      w.check_exit(w.take(std::move(m)), timeout);
    }
    if (w.error) {
      while (co_await receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, std::chrono::milliseconds(0))) {
      }
      throw *w.error;
    }
  }
  co_return w.results();
}
std::vector<Term> await_many(Mailbox& mb, const std::vector<Task>& tasks, std::chrono::milliseconds timeout) {
  Many w(tasks);
  const auto deadline = Clock::now() + timeout;
  while (w.left > 0) {
    auto m = mb.receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, detail::time_left(deadline));
    if (!m) {
      w.fail(atom("timeout"), "time out: tasks gave no result in time", timeout);
    } else {
      w.check_exit(w.take(std::move(m)), timeout);
    }
    if (w.error) {
      while (mb.receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, std::chrono::milliseconds(0))) {
      }
      throw *w.error;
    }
  }
  return w.results();
}

Async<std::vector<Term>> yield_many(const std::vector<Task>& tasks, std::chrono::milliseconds timeout) {
  Many w(tasks);
  const auto deadline = Clock::now() + timeout;
  while (w.left > 0) {
    auto m = co_await receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, detail::time_left(deadline));
    if (!m) break;
    w.take(std::move(m));
  }
  co_return w.yields();
}
std::vector<Term> yield_many(Mailbox& mb, const std::vector<Task>& tasks, std::chrono::milliseconds timeout) {
  Many w(tasks);
  const auto deadline = Clock::now() + timeout;
  while (w.left > 0) {
    auto m = mb.receive<Message>([&w](const MessageRef& r) { return w.matches(r); }, detail::time_left(deadline));
    if (!m) break;
    w.take(std::move(m));
  }
  return w.yields();
}

namespace {
// async_stream's window of running tasks over the inputs.
struct Stream {
  std::vector<Term> items;
  // shared with the tasks (one killed at a timeout may still be running when the stream ends)
  std::shared_ptr<const std::function<Async<Term>(Term)>> f;
  StreamOptions opts;
  struct Running {
    Task task;
    std::size_t index;
    Clock::time_point deadline;
  };
  std::vector<Running> running;
  std::vector<std::optional<Term>> ordered;  // by input index
  std::vector<Term> done;                    // unordered: as they complete
  std::size_t next = 0;

  Stream(std::vector<Term> in, std::function<Async<Term>(Term)> fn, StreamOptions o)
      : items(std::move(in)), f(std::make_shared<const std::function<Async<Term>(Term)>>(std::move(fn))), opts(o),
        ordered(items.size()) {
    if (opts.max_concurrency == 0) opts.max_concurrency = std::max(1u, std::thread::hardware_concurrency());
  }
  void fill() {
    while (running.size() < opts.max_concurrency && next < items.size()) {
      running.push_back({async([fn = f, item = items[next]]() { return (*fn)(item); }), next, Clock::now() + opts.timeout});
      ++next;
    }
  }
  bool finished() const { return running.empty() && next == items.size(); }
  std::size_t which(const MessageRef& m) const {
    for (std::size_t i = 0; i < running.size(); ++i) {
      if (Outcome{running[i].task}.matches(m)) return i;
    }
    return Many::none;
  }
  bool matches(const MessageRef& m) const { return which(m) != Many::none; }
  std::chrono::milliseconds wait() const {
    Clock::time_point first = Clock::time_point::max();
    for (const Running& r : running) first = std::min(first, r.deadline);
    return detail::time_left(first);
  }
  void record(std::size_t index, Term outcome) {
    if (opts.ordered) {
      ordered[index] = std::move(outcome);
    } else {
      done.push_back(std::move(outcome));
    }
  }
  void take(std::optional<Message> m) {
    const std::size_t i = which(*m);
    Running r = std::move(running[i]);
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
    record(r.index, Outcome{r.task}.as_yield(std::move(m)));
  }
  // The time ran out for the tasks past their deadline: each is unlinked and killed, its
  // monitor dropped; what it sent already is drained by the caller (`stale`), then `error`
  // (the whole stream fails) is thrown.
  std::vector<Task> stale;
  std::optional<TaskError> error;
  bool is_stale(const MessageRef& m) const {
    for (const Task& t : stale) {
      if (Outcome{t}.matches(m)) return true;
    }
    return false;
  }
  void timed_out() {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < running.size();) {
      if (running[i].deadline > now) {
        ++i;
        continue;
      }
      if (!opts.kill_on_timeout) {
        for (const Running& r : running) kill(r.task);
        running.clear();
        error.emplace(atom("timeout"), "time out: an async_stream task gave no result in time",
                      tuple(atom("timeout"), tuple(atom("Elixir.Task.Supervised"), atom("stream"),
                                                   Term::list({Term(static_cast<long>(opts.timeout.count()))}))));
        return;
      }
      kill(running[i].task);
      record(running[i].index, tuple(atom("exit"), atom("timeout")));
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  void kill(const Task& t) {
    stale.push_back(t);
    unlink(t.pid);
    exit(t.pid, atom("kill"));
    demonitor(t.mref, true);
    detail::ignore_reply(t.tag);
  }
  std::vector<Term> results() {
    if (!opts.ordered) return std::move(done);
    std::vector<Term> r;
    r.reserve(ordered.size());
    for (auto& o : ordered) r.push_back(std::move(*o));
    return r;
  }
};
}  // namespace

Async<std::vector<Term>> async_stream(std::vector<Term> items, std::function<Async<Term>(Term)> f, StreamOptions opts) {
  Stream s(std::move(items), std::move(f), opts);
  s.fill();
  while (!s.finished()) {
    auto m = co_await receive<Message>([&s](const MessageRef& r) { return s.matches(r); }, s.wait());
    if (m) {
      s.take(std::move(m));
    } else {
      s.timed_out();
      while (co_await receive<Message>([&s](const MessageRef& r) { return s.is_stale(r); }, std::chrono::milliseconds(0))) {
      }
      s.stale.clear();
      if (s.error) throw *s.error;
    }
    s.fill();
  }
  co_return s.results();
}
std::vector<Term> async_stream(Mailbox& mb, std::vector<Term> items, std::function<Async<Term>(Term)> f,
                               StreamOptions opts) {
  Stream s(std::move(items), std::move(f), opts);
  s.fill();
  while (!s.finished()) {
    auto m = mb.receive<Message>([&s](const MessageRef& r) { return s.matches(r); }, s.wait());
    if (m) {
      s.take(std::move(m));
    } else {
      s.timed_out();
      while (mb.receive<Message>([&s](const MessageRef& r) { return s.is_stale(r); }, std::chrono::milliseconds(0))) {
      }
      s.stale.clear();
      if (s.error) throw *s.error;
    }
    s.fill();
  }
  return s.results();
}

}  // namespace task

namespace detail {
std::optional<TaskFunction> find_task_function(std::string_view name) { return find_function(name); }
}  // namespace detail

namespace task_supervisor {

Expected<Pid> start(supervisor::StartOptions opts) {
  auto s = std::make_shared<SupState>();
  if (opts.link) s->parent = self();
  return detail::start_acked([s](const detail::Starter& st) { return task_supervisor_loop(s, st); }, opts.name,
                             opts.link, std::chrono::hours(24 * 365), "task_supervisor::start");
}

Async<Expected<Pid>> start_async(supervisor::StartOptions opts) {
  auto s = std::make_shared<SupState>();
  if (opts.link) s->parent = self();
  return detail::start_acked_async([s](const detail::Starter& st) { return task_supervisor_loop(s, st); }, opts.name,
                                   opts.link, std::chrono::hours(24 * 365));
}

supervisor::ChildSpec child_spec(Atom name) {
  supervisor::ChildSpec c{std::string(name.name()), [name]() { return start({.name = name, .link = true}).value(); }};
  c.type = supervisor::ChildType::supervisor;
  c.shutdown = supervisor::infinity;
  return c;
}

namespace {
Async<Task> async_impl(ServerRef sup, std::string function, Term args, bool link) {
  StartCall c(sup, function, std::move(args), link);
  auto m = co_await detail::receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, kStartTimeout);
  co_return c.finish(std::move(m), function);
}
Task async_impl(Mailbox& mb, ServerRef sup, std::string function, Term args, bool link) {
  StartCall c(sup, function, std::move(args), link);
  return c.finish(mb.receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, kStartTimeout), function);
}
}  // namespace

Async<Task> async(ServerRef sup, std::string function, Term args) {
  return async_impl(std::move(sup), std::move(function), std::move(args), true);
}
Async<Task> async_nolink(ServerRef sup, std::string function, Term args) {
  return async_impl(std::move(sup), std::move(function), std::move(args), false);
}
Task async(Mailbox& mb, ServerRef sup, std::string function, Term args) {
  return async_impl(mb, std::move(sup), std::move(function), std::move(args), true);
}
Task async_nolink(Mailbox& mb, ServerRef sup, std::string function, Term args) {
  return async_impl(mb, std::move(sup), std::move(function), std::move(args), false);
}

Async<Term> start_child(ServerRef sup, std::string function, Term args) {
  Task t;
  t.tag = make_ref();
  co_return co_await gen_server::call(sup, start_request(t, false, function, std::move(args)), kStartTimeout);
}
Term start_child(Mailbox& mb, ServerRef sup, std::string function, Term args) {
  Task t;
  t.tag = make_ref();
  return gen_server::call(mb, sup, start_request(t, false, function, std::move(args)), kStartTimeout);
}
Async<Term> children(ServerRef sup) { return gen_server::call(std::move(sup), atom("children")); }
Term children(Mailbox& mb, ServerRef sup) { return gen_server::call(mb, std::move(sup), atom("children")); }
Async<Term> terminate_child(ServerRef sup, Pid pid) {
  return gen_server::call(std::move(sup), tuple(atom("terminate_child"), pid));
}
Term terminate_child(Mailbox& mb, ServerRef sup, Pid pid) {
  return gen_server::call(mb, std::move(sup), tuple(atom("terminate_child"), pid));
}

}  // namespace task_supervisor
}  // namespace nodus
