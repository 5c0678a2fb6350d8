// Supervisor: the supervision loop (start, watch, restart by strategy, intensity, shutdown).
#include "nodus/supervisor.hpp"

#include <limits>

#include <algorithm>
#include <deque>

#include "runtime/observe_parts.hpp"
#include "nodus/log.hpp"
#include "nodus/system_messages.hpp"

namespace nodus::supervisor {
namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  ChildSpec spec;
  Pid pid;  // null while not running
};

struct State {
  Flags flags;
  std::vector<Child> children;
  std::deque<Clock::time_point> restarts;
  Pid parent;  // linked starter, whose exit stops us
  std::string name;
  // a DynamicSupervisor: children have no ids, are stopped by pid, and are deleted when
  // stopped; at most max_children; start_with gets extra_arguments
  bool dynamic = false;
  std::size_t max_children = std::numeric_limits<std::size_t>::max();
  Term extra = Term::list({});
};

// A management request: local only (it carries a ChildSpec with its std::function).
struct Request {
  enum Kind { start_child, terminate_child, restart_child, delete_child, which_children, count_children } kind;
  From from;
  ChildSpec spec;
  std::string id;
  Pid pid;  // a dynamic supervisor's terminate_child
};

// Stops one child: exit(shutdown) then kill after its shutdown time (or kill at once).
Async<void> shutdown_child(Pid pid, std::chrono::milliseconds how) {
  const Ref ref = monitor(pid);
  unlink(pid);
  exit(pid, how == brutal_kill ? atom("kill") : atom("shutdown"));
  auto is_ours = [ref](const Down& d) { return d.ref == ref; };
  if (how == infinity || how == brutal_kill) {
    co_await receive<Down>(is_ours);
  } else if (!co_await receive<Down>(is_ours, how)) {
    exit(pid, atom("kill"));
    co_await receive<Down>(is_ours);
  }
  // an exit signal that crossed the unlink
  (void)co_await receive<ExitMsg>([pid](const ExitMsg& e) { return e.from == pid; }, std::chrono::milliseconds(0));
}

// Stops running children with index >= from, last started first.
Async<void> shutdown_from(State& s, std::size_t from) {
  for (std::size_t i = s.children.size(); i-- > from;) {
    Child& c = s.children[i];
    if (c.pid.is_null()) continue;
    const Pid pid = std::exchange(c.pid, Pid{});
    co_await shutdown_child(pid, c.spec.shutdown);
  }
}

// Starts child `i` and waits for its init (a GenServer's or supervisor's start acks, as OTP's
// proc_lib does); false (logged) if the start function threw or the child failed to start.
Async<bool> start_one(State& s, std::size_t i, Term* why = nullptr) {
  Child& c = s.children[i];
  std::optional<Term> failed;
  Pid pid;
  bool acks = false;
  try {
    detail::StartCollector started;
    pid = c.spec.start_with ? c.spec.start_with(s.extra) : c.spec.start();
    acks = std::find(started.started.begin(), started.started.end(), pid) != started.started.end();
  } catch (...) {
    failed = exit_reason_of(std::current_exception());
  }
  if (!failed && acks) {
    Message m = co_await receive_any([pid](const MessageRef& r) {
      return (r.is<detail::InitAck>() && r.get<detail::InitAck>().from == pid) ||
             (r.is<ExitMsg>() && r.get<ExitMsg>().from == pid);
    });
    if (m.is<ExitMsg>()) {
      failed = m.get<ExitMsg>().reason;
    } else if (auto& e = m.get<detail::InitAck>().error) {
      failed = *e;
      // it exits with that reason: take its exit signal, so it is not seen as a running child's
      (void)co_await receive<ExitMsg>([pid](const ExitMsg& x) { return x.from == pid; });
    }
  }
  if (failed) {
    logger().error("Supervisor {}: child {} failed to start: {}", s.name, c.spec.id, failed->to_string(1000));
    if (why) *why = *failed;
    co_return false;
  }
  c.pid = pid;
  co_return true;
}

// Counts a restart; false when that goes past the intensity (the supervisor must give up).
bool count_restart(State& s) {
  const auto now = Clock::now();
  s.restarts.push_back(now);
  while (!s.restarts.empty() && now - s.restarts.front() > s.flags.max_seconds) s.restarts.pop_front();
  const bool within = static_cast<int>(s.restarts.size()) <= s.flags.max_restarts;
  if (within) observe::parts::count_supervisor_restart();
  return within;
}

[[noreturn]] void give_up(State& s) {
  observe::parts::count_supervisor_give_up();
  logger().error("Supervisor {}: reached the maximum restart intensity ({} restarts in {} ms); shutting down",
                 s.name, s.flags.max_restarts, s.flags.max_seconds.count());
  exit_self(atom("shutdown"));
}

// Restarts children [from, end) that are not running, in order; a failed start counts as
// another restart.
Async<void> restart_from(State& s, std::size_t from) {
  for (std::size_t i = from; i < s.children.size(); ++i) {
    while (s.children[i].pid.is_null()) {
      if (co_await start_one(s, i)) break;
      if (!count_restart(s)) {
        co_await shutdown_from(s, 0);
        give_up(s);
      }
    }
  }
}

Async<void> on_child_exit(State& s, std::size_t i, Term reason) {
  Child& c = s.children[i];
  c.pid = Pid{};
  if (!is_normal_exit(reason)) {
    logger().error("Supervisor {}: child {} terminated with reason {}", s.name, c.spec.id, reason.to_string(1000));
  }
  const bool restart = c.spec.restart == Restart::permanent ||
                       (c.spec.restart == Restart::transient && !is_normal_exit(reason));
  if (!restart) {
    if (c.spec.restart == Restart::temporary) s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(i));
    co_return;
  }
  if (!count_restart(s)) {
    co_await shutdown_from(s, 0);
    give_up(s);
  }
  logger().info("Supervisor {}: restarting child {}", s.name, c.spec.id);
  std::size_t from = i;
  if (s.flags.strategy == Strategy::one_for_all) {
    co_await shutdown_from(s, 0);
    from = 0;
  } else if (s.flags.strategy == Strategy::rest_for_one) {
    co_await shutdown_from(s, i + 1);
  }
  if (s.flags.strategy != Strategy::one_for_one) {
    // temporary children that were stopped are not restarted
    for (std::size_t k = s.children.size(); k-- > from;) {
      if (k != i && s.children[k].pid.is_null() && s.children[k].spec.restart == Restart::temporary) {
        s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(k));
        if (k < i) --i;
      }
    }
  }
  if (s.flags.strategy == Strategy::one_for_one) {
    co_await restart_from(s, i);  // only i is down
  } else {
    co_await restart_from(s, from);
  }
}

std::optional<std::size_t> find(const State& s, const std::string& id) {
  for (std::size_t i = 0; i < s.children.size(); ++i) {
    if (s.children[i].spec.id == id) return i;
  }
  return std::nullopt;
}

Term error(std::string_view what) { return tuple(atom("error"), atom(what)); }

Async<Term> handle(State& s, Request& r) {
  switch (r.kind) {
    case Request::start_child: {
      if (s.dynamic) {
        std::size_t running = 0;
        for (const Child& c : s.children) running += !c.pid.is_null();
        if (running >= s.max_children) co_return error("max_children");
      } else if (auto i = find(s, r.spec.id)) {
        const Pid p = s.children[*i].pid;
        co_return p.is_null() ? error("already_present") : tuple(atom("error"), tuple(atom("already_started"), p));
      }
      s.children.push_back({std::move(r.spec), Pid{}});
      Term why;
      if (!co_await start_one(s, s.children.size() - 1, &why)) {
        s.children.pop_back();
        co_return tuple(atom("error"), why);
      }
      co_return tuple(atom("ok"), s.children.back().pid);
    }
    case Request::terminate_child: {
      if (s.dynamic) {
        for (std::size_t k = 0; k < s.children.size(); ++k) {
          if (s.children[k].pid != r.pid || r.pid.is_null()) continue;
          const Pid pid = std::exchange(s.children[k].pid, Pid{});
          co_await shutdown_child(pid, s.children[k].spec.shutdown);
          s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(k));
          co_return atom("ok");
        }
        co_return error("not_found");
      }
      auto i = find(s, r.id);
      if (!i) co_return error("not_found");
      if (!s.children[*i].pid.is_null()) {
        const Pid pid = std::exchange(s.children[*i].pid, Pid{});
        co_await shutdown_child(pid, s.children[*i].spec.shutdown);
      }
      if (s.children[*i].spec.restart == Restart::temporary) s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(*i));
      co_return atom("ok");
    }
    case Request::restart_child: {
      auto i = find(s, r.id);
      if (!i) co_return error("not_found");
      if (!s.children[*i].pid.is_null()) co_return error("running");
      Term why;
      if (!co_await start_one(s, *i, &why)) co_return tuple(atom("error"), why);
      co_return tuple(atom("ok"), s.children[*i].pid);
    }
    case Request::delete_child: {
      auto i = find(s, r.id);
      if (!i) co_return error("not_found");
      if (!s.children[*i].pid.is_null()) co_return error("running");
      s.children.erase(s.children.begin() + static_cast<std::ptrdiff_t>(*i));
      co_return atom("ok");
    }
    case Request::which_children: {
      std::vector<Term> out;  // newest first, as OTP answers
      for (auto c = s.children.rbegin(); c != s.children.rend(); ++c) {
        out.push_back(tuple(s.dynamic ? Term(atom("undefined")) : Term(c->spec.id), c->pid.is_null() ? Term(atom("undefined")) : Term(c->pid),
                            atom(c->spec.type == ChildType::worker ? "worker" : "supervisor")));
      }
      co_return Term::list(std::move(out));
    }
    case Request::count_children: {
      long active = 0, sups = 0;
      for (const Child& c : s.children) {
        active += !c.pid.is_null();
        sups += c.spec.type == ChildType::supervisor;
      }
      const long n = static_cast<long>(s.children.size());
      co_return Term::list({tuple(atom("specs"), n), tuple(atom("active"), active), tuple(atom("supervisors"), sups),
                            tuple(atom("workers"), n - sups)});
    }
  }
  co_return error("bad_request");
}

Proc supervisor_loop(std::shared_ptr<State> state, detail::Starter st) {
  State& s = *state;
  trap_exit(true);
  if (!detail::start_begin(st)) co_return;
  if (s.name.empty()) s.name = to_string(self());
  // children start in order, each after the previous one's init returned
  for (std::size_t i = 0; i < s.children.size(); ++i) {
    Term why;
    if (!co_await start_one(s, i, &why)) {
      co_await shutdown_from(s, 0);
      const Term reason = tuple(atom("shutdown"), tuple(atom("failed_to_start_child"), s.children[i].spec.id, why));
      detail::start_ack(st, reason);
      exit_self(reason);
    }
  }
  detail::start_ack(st);
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ExitMsg>()) {
      ExitMsg e = m.take<ExitMsg>();
      if (!s.parent.is_null() && e.from == s.parent) {
        co_await shutdown_from(s, 0);
        exit_self(e.reason);
      }
      for (std::size_t i = 0; i < s.children.size(); ++i) {
        if (s.children[i].pid == e.from) {
          co_await on_child_exit(s, i, std::move(e.reason));
          break;
        }
      }
    } else if (m.is<Term>() && m.get<Term>().is_tuple(2, "$gen_stop")) {
      const Term reason = m.get<Term>()[1];  // supervisor:stop: the children first
      co_await shutdown_from(s, 0);
      exit_self(reason);
    } else if (m.is<Request>()) {
      Request& r = m.get<Request>();
      Term answer = co_await handle(s, r);
      gen_server::reply(r.from, std::move(answer));
    } else {
      log_limited(spdlog::level::warn, s.name, "Supervisor " + s.name + ": unexpected message " + m.to_string(200));
    }
  }
}

detail::RequestSender sender(Request::Kind kind, ChildSpec spec = {}, std::string id = {}, Pid pid = {}) {
  return [kind, spec = std::move(spec), id = std::move(id), pid](const Pid& target, const From& from) {
    send(target, Request{kind, from, spec, id, pid});
  };
}

// Management calls wait as long as the supervisor needs (a shutdown may take its time).
constexpr std::chrono::milliseconds kCallTimeout = std::chrono::hours(24);

}  // namespace

ChildSpec gen_server_child(std::string id, std::function<std::unique_ptr<GenServer>()> make, Atom name) {
  return {std::move(id), [make = std::move(make), name]() {
            return gen_server::start(make(), {.name = name, .link = true}).value();
          }};
}

namespace {
std::function<Proc(const detail::Starter&)> supervisor_body(Flags flags, std::vector<ChildSpec> children,
                                                            const StartOptions& opts) {
  auto s = std::make_shared<State>();
  s->flags = flags;
  for (auto& c : children) s->children.push_back({std::move(c), Pid{}});
  if (!(opts.name == Atom())) s->name = std::string(opts.name.name());
  if (opts.link) s->parent = self();
  return [s](const detail::Starter& st) { return supervisor_loop(s, st); };
}
}  // namespace

Expected<Pid> start(Flags flags, std::vector<ChildSpec> children, StartOptions opts) {
  return detail::start_acked(supervisor_body(flags, std::move(children), opts), opts.name, opts.link,
                             std::chrono::hours(24 * 365), "supervisor::start");
}

Async<Expected<Pid>> start_async(Flags flags, std::vector<ChildSpec> children, StartOptions opts) {
  return detail::start_acked_async(supervisor_body(flags, std::move(children), opts), opts.name, opts.link,
                                   std::chrono::hours(24 * 365));
}

Expected<Term> stop(Mailbox& mb, ServerRef sup, Term reason, std::chrono::milliseconds timeout) {
  return detail::stop_process(mb, sup, std::move(reason), timeout);
}
Async<Expected<Term>> stop(ServerRef sup, Term reason, std::chrono::milliseconds timeout) {
  return detail::stop_process(sup, std::move(reason), timeout);
}

ChildSpec supervisor_child(std::string id, Flags flags, std::vector<ChildSpec> children) {
  auto kids = std::make_shared<std::vector<ChildSpec>>(std::move(children));
  ChildSpec c{std::move(id), [flags, kids]() { return start(flags, *kids, {.link = true}).value(); }};
  c.type = ChildType::supervisor;
  c.shutdown = infinity;
  return c;
}

Async<Term> start_child(ServerRef sup, ChildSpec spec) {
  return detail::call_with(sup, sender(Request::start_child, std::move(spec)), kCallTimeout);
}
Async<Term> terminate_child(ServerRef sup, std::string id) {
  return detail::call_with(sup, sender(Request::terminate_child, {}, std::move(id)), kCallTimeout);
}
Async<Term> restart_child(ServerRef sup, std::string id) {
  return detail::call_with(sup, sender(Request::restart_child, {}, std::move(id)), kCallTimeout);
}
Async<Term> delete_child(ServerRef sup, std::string id) {
  return detail::call_with(sup, sender(Request::delete_child, {}, std::move(id)), kCallTimeout);
}
Async<Term> which_children(ServerRef sup) { return detail::call_with(sup, sender(Request::which_children), kCallTimeout); }
Async<Term> count_children(ServerRef sup) { return detail::call_with(sup, sender(Request::count_children), kCallTimeout); }

Term start_child(Mailbox& mb, ServerRef sup, ChildSpec spec) {
  return detail::call_with(mb, sup, sender(Request::start_child, std::move(spec)), kCallTimeout);
}
Term terminate_child(Mailbox& mb, ServerRef sup, std::string id) {
  return detail::call_with(mb, sup, sender(Request::terminate_child, {}, std::move(id)), kCallTimeout);
}
Term restart_child(Mailbox& mb, ServerRef sup, std::string id) {
  return detail::call_with(mb, sup, sender(Request::restart_child, {}, std::move(id)), kCallTimeout);
}
Term delete_child(Mailbox& mb, ServerRef sup, std::string id) {
  return detail::call_with(mb, sup, sender(Request::delete_child, {}, std::move(id)), kCallTimeout);
}
Term which_children(Mailbox& mb, ServerRef sup) {
  return detail::call_with(mb, sup, sender(Request::which_children), kCallTimeout);
}
Term count_children(Mailbox& mb, ServerRef sup) {
  return detail::call_with(mb, sup, sender(Request::count_children), kCallTimeout);
}

}  // namespace nodus::supervisor

namespace nodus::dynamic_supervisor {

using supervisor::ChildSpec;
namespace {
using namespace supervisor;

std::function<Proc(const detail::Starter&)> body(const Options& o) {
  auto s = std::make_shared<State>();
  s->flags = {.strategy = Strategy::one_for_one, .max_restarts = o.max_restarts, .max_seconds = o.max_seconds};
  s->dynamic = true;
  s->max_children = o.max_children;
  s->extra = o.extra_arguments;
  if (!(o.name == Atom())) s->name = std::string(o.name.name());
  if (o.link) s->parent = self();
  return [s](const detail::Starter& st) { return supervisor_loop(s, st); };
}
}  // namespace

Expected<Pid> start(Options opts) {
  if (!opts.extra_arguments.is_list()) {
    return Failure{Errc::badarg, atom("badarg"), "dynamic_supervisor::start: extra_arguments must be a list"};
  }
  return detail::start_acked(body(opts), opts.name, opts.link, std::chrono::hours(24 * 365), "dynamic_supervisor::start");
}

ChildSpec child_spec(std::string id, Options opts) {
  opts.link = true;
  ChildSpec c{std::move(id), [opts]() { return start(opts).value(); }};
  c.type = ChildType::supervisor;
  c.shutdown = infinity;
  return c;
}

Async<Term> start_child(ServerRef sup, ChildSpec spec) {
  return detail::call_with(sup, sender(Request::start_child, std::move(spec)), kCallTimeout);
}
Term start_child(Mailbox& mb, ServerRef sup, ChildSpec spec) {
  return detail::call_with(mb, sup, sender(Request::start_child, std::move(spec)), kCallTimeout);
}
Async<Term> terminate_child(ServerRef sup, Pid pid) {
  return detail::call_with(sup, sender(Request::terminate_child, {}, {}, pid), kCallTimeout);
}
Term terminate_child(Mailbox& mb, ServerRef sup, Pid pid) {
  return detail::call_with(mb, sup, sender(Request::terminate_child, {}, {}, pid), kCallTimeout);
}

}  // namespace nodus::dynamic_supervisor
