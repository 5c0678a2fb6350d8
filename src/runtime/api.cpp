// The public process API (nodus/process.hpp, nodus/receive.hpp) over the runtime internals.
#include <algorithm>
#include <stdexcept>

#include "context.hpp"
#include "counters.hpp"
#include "trace.hpp"
#include "nodus/error.hpp"
#include "nodus/process.hpp"
#include "process.hpp"

namespace nodus {
using runtime::Context;
using runtime::ctx;
using runtime::Process;

namespace {
Process* caller(const char* what) {
  Process* p = runtime::current();
  if (p == nullptr) throw std::logic_error(std::string(what) + " needs a calling process");
  return p;
}

// Adds `other` to the links of `p` (the block of `pid`) if it is still that live process.
bool add_link(Process* p, const Pid& pid, const Pid& other) {
  std::lock_guard lock(p->lock);
  if (!p->is(runtime::ident_of(pid))) return false;
  auto& l = p->ext().links;
  if (std::find(l.begin(), l.end(), other) == l.end()) l.push_back(other);
  return true;
}
}  // namespace

namespace detail {

Pid spawn_frame(Proc::handle h, const SpawnOptions& opts, Closure c, Ref* monitor_ref,
                const Pid& remote_link, const Pid& remote_watcher, const Ref& remote_ref) {
  NODUS_MARK(spawn);
  Context& cx = ctx();
  Process* parent = runtime::current();
  if ((opts.link || opts.monitor) && parent == nullptr) {
    h.destroy();
    if (c.destroy) c.destroy(c.object);
    throw std::logic_error("spawn_link/spawn_monitor need a calling process");
  }
  Process* p = cx.pool.get();
  runtime::prepare(p, false,
                   !opts.group_leader.is_null() ? opts.group_leader
                   : parent                     ? group_leader()
                                                : cx.io_server);
  p->root = h;
  p->resume_point = h;
  p->body.store(h.promise().body, std::memory_order_relaxed);
  runtime::bump(runtime::Count::spawned);
  p->limit_policy.store(opts.max_mailbox.policy, std::memory_order_relaxed);
  p->max_messages.store(opts.max_mailbox.messages, std::memory_order_relaxed);
  if (c.object) {
    std::lock_guard lock(p->lock);
    p->ext().closure = c;
  }
  if (!cx.table.insert(p)) {
    h.destroy();
    if (c.destroy) c.destroy(c.object);
    runtime::retire(p);
    throw std::runtime_error("system_limit: too many processes");
  }
  const Pid pid = p->pid();
  if (!remote_link.is_null()) add_link(p, pid, remote_link);
  if (!remote_watcher.is_null()) {
    std::lock_guard lock(p->lock);
    p->ext().watchers.emplace_back(remote_ref, remote_watcher);
  }
  if (opts.link) {
    add_link(p, pid, parent->pid());
    add_link(parent, parent->pid(), pid);
  }
  if (opts.monitor) {
    const Ref ref = make_ref();
    {
      std::lock_guard lock(p->lock);
      p->ext().watchers.emplace_back(ref, parent->pid());
    }
    {
      std::lock_guard lock(parent->lock);
      parent->ext().monitoring.emplace_back(ref, pid);
    }
    *monitor_ref = ref;
  }
  p->state.store(runtime::State::queued, std::memory_order_release);
  cx.sched.enqueue(p);
  return pid;
}

void deliver(const Pid& to, MsgNode* n) { runtime::deliver_any(to, n); }

bool deliver_nosuspend(const Pid& to, MsgNode* n) {
  if (!to.is_local()) {
    if (const runtime::RemoteHooks* h = runtime::remote_hooks()) return h->deliver_nosuspend(to, n);
  }
  if (to.is_local()) return runtime::deliver_local(to, n);
  runtime::deliver_any(to, n);
  return true;
}

bool deliver_named(Atom name, MsgNode* n) {
  auto pid = ctx().registry.find(name);
  if (!pid) {
    n->type->destroy(n);
    return false;
  }
  runtime::deliver_local(*pid, n);
  return true;
}

std::uint64_t send_after_node(Clock::duration d, const Pid& to, MsgNode* n) {
  return ctx().timers.add(Clock::now() + d, to, n);
}

bool receive_ready(Receiver& r) {
  Process* p = caller("receive");
  p->cursor = r.after_saved ? p->save_tail : &p->save_head;  // a new receive looks at every message again
  p->pending = &r;
  // a send budget holds the process: even a receive that would not wait (a match at hand, a
  // zero timeout) suspends it, to be held; it looks at its mailbox once released
  if (p->held.load(std::memory_order_relaxed)) return false;
  const auto s = runtime::scan(p, r);
  if (s == runtime::Scan::matched) {
    p->pending = nullptr;
    return true;
  }
  if (s == runtime::Scan::must_exit) return false;  // suspend; the worker ends the process
  if (r.has_deadline && Clock::now() >= r.deadline) {
    r.timed_out = true;
    p->pending = nullptr;
    return true;
  }
  return false;
}

void receive_suspend(Receiver& r, std::coroutine_handle<> h) {
  Process* p = runtime::current();
  p->pending = &r;
  p->resume_point = h;
  if (r.has_deadline && p->exit_reason == nullptr) {
    r.token = ++p->next_token;
    r.timer = ctx().timers.add_timeout(r.deadline, p->pid(), r.token);
  }
}

void YieldAwaiter::await_suspend(std::coroutine_handle<> h) {
  Process* p = caller("yield");
  p->yielding = true;
  p->resume_point = h;
}

}  // namespace detail

Pid self() {
  Process* p = runtime::current();
  return p ? p->pid() : Pid{};
}

bool register_name(Atom name, const Pid& pid) {
  Context& cx = ctx();
  if (!pid.is_local()) return false;
  Process* p = cx.table.lookup(pid);
  if (p == nullptr) return false;
  std::lock_guard lock(p->lock);
  if (p->is(runtime::ident_of(pid)) && !(p->extras && p->extras->name) &&
      cx.registry.add(name, pid)) {
    p->ext().name = name;
    return true;
  }
  return false;
}

bool unregister_name(Atom name) {
  Context& cx = ctx();
  auto pid = cx.registry.find(name);
  if (!pid) return false;
  if (Process* p = cx.table.lookup(*pid)) {
    std::lock_guard lock(p->lock);
    if (p->is(runtime::ident_of(*pid)) && p->extras && p->extras->name == name) {
      p->extras->name.reset();
    }
  }
  return cx.registry.erase(name, *pid);
}

std::optional<Pid> whereis(Atom name) { return ctx().registry.find(name); }

void exit(const Pid& pid, Term reason) {
  Process* me = runtime::current();
  if (me != nullptr && pid == me->pid() && runtime::on_worker()) {
    // Erlang's exit(self(), R) takes effect at once for the caller: nothing after it runs
    // (kill: `killed`; a trapping process gets R as a message, unless it is kill)
    if (reason.is_atom("kill")) throw ProcessExit{atom("killed")};
    if (!me->trap_exit) throw ProcessExit{std::move(reason)};
  }
  runtime::send_exit_signal(pid, self(), std::move(reason), false);
}

void exit_self(Term reason) { throw ProcessExit{std::move(reason)}; }

void link(const Pid& pid) {
  Process* me = caller("link");
  const Pid my = me->pid();
  if (pid == my) return;
  if (!pid.is_local()) {
    add_link(me, my, pid);
    if (const auto* h = runtime::remote_hooks()) {
      h->link(my, pid);
    } else {
      runtime::send_exit_signal(my, pid, atoms::noconnection(), true);
    }
    return;
  }
  Process* t = ctx().table.lookup(pid);
  const bool alive = t && add_link(t, pid, my);
  if (!alive) {
    // OTP 25: a trapping caller gets {'EXIT', Pid, noproc}; any other gets a noproc error it
    // may catch (uncaught, it exits with noproc)
    if (me->trap_exit) {
      add_link(me, my, pid);
      runtime::send_exit_signal(my, pid, atoms::noproc(), true);
      return;
    }
    throw Error(Errc::noproc, atoms::noproc(), "noproc: link to " + to_string(pid) + ", which is not alive");
  }
  add_link(me, my, pid);
}

void unlink(const Pid& pid) {
  Process* me = caller("unlink");
  {
    std::lock_guard lock(me->lock);
    if (me->extras) std::erase(me->extras->links, pid);
  }
  if (!pid.is_local()) {
    if (const auto* h = runtime::remote_hooks()) h->unlink(me->pid(), pid);
    return;
  }
  if (Process* t = ctx().table.lookup(pid)) {
    std::lock_guard lock(t->lock);
    if (t->is(runtime::ident_of(pid)) && t->extras) std::erase(t->extras->links, me->pid());
  }
}

Ref monitor(const Pid& pid) {
  const Ref ref = make_ref();
  detail::monitor_as(pid, ref);
  return ref;
}

void detail::monitor_as(const Pid& pid, const Ref& ref) {
  Process* me = caller("monitor");
  const Pid my = me->pid();
  if (!pid.is_local()) {
    const auto* h = runtime::remote_hooks();
    if (h == nullptr) {
      runtime::deliver_local(my, detail::make_node(Down{ref, pid, atoms::noconnection()}));
      return;
    }
    {
      std::lock_guard lock(me->lock);
      me->ext().monitoring.emplace_back(ref, pid);
    }
    h->monitor(my, pid, ref);
    return;
  }
  Process* t = ctx().table.lookup(pid);
  bool alive = false;
  if (t) {
    std::lock_guard lock(t->lock);
    if (t->is(runtime::ident_of(pid))) {
      t->ext().watchers.emplace_back(ref, my);
      alive = true;
    }
  }
  if (alive) {
    std::lock_guard lock(me->lock);
    me->ext().monitoring.emplace_back(ref, pid);
  } else {
    runtime::deliver_local(my, detail::make_node(Down{ref, pid, atoms::noproc()}));
  }
}

bool detail::on_scheduler_thread() noexcept { return runtime::on_worker(); }

void detail::ignore_reply(const Ref& tag) { runtime::ignore_reply(caller("ignore_reply"), tag); }

void detail::drop_watcher(const Ref& ref) {
  Process* me = caller("drop_watcher");
  runtime::remove_watcher(me->pid(), ref);
}

bool demonitor(const Ref& ref, bool flush) {
  Process* me = caller("demonitor");
  std::optional<Pid> target;
  {
    std::lock_guard lock(me->lock);
    if (me->extras) {
      auto& m = me->extras->monitoring;
      auto it = std::find_if(m.begin(), m.end(), [&](const auto& e) { return e.first == ref; });
      if (it != m.end()) {
        target = it->second;
        m.erase(it);
      }
    }
  }
  // the entry taken, no Down comes any more (deliver_down needs it); one that came already is
  // in the mailbox (or was received)
  if (target && target->is_local()) {
    runtime::remove_watcher(*target, ref);
  } else if (target) {
    if (const auto* h = runtime::remote_hooks()) h->demonitor(me->pid(), *target, ref);
  }
  if (flush) runtime::remove_down(me, ref);
  return target.has_value();
}

bool trap_exit(bool on) {
  Process* me = caller("trap_exit");
  return std::exchange(me->trap_exit, on);
}

bool is_process_alive(const Pid& pid) {
  Process* p = ctx().table.lookup(pid);
  if (p == nullptr) return false;
  std::lock_guard lock(p->lock);
  return p->is(runtime::ident_of(pid));
}

Pid group_leader() {
  Process* p = runtime::current();
  if (p == nullptr) return ctx().io_server;
  std::lock_guard lock(p->lock);
  return p->group_leader;
}

void set_group_leader(const Pid& leader, const Pid& pid) {
  if (Process* p = ctx().table.lookup(pid)) {
    std::lock_guard lock(p->lock);
    if (p->is(runtime::ident_of(pid))) p->group_leader = leader;
  }
}

std::optional<std::chrono::milliseconds> cancel_timer(TimerRef t) {
  const auto at = ctx().timers.cancel(t.id);
  if (!at) return std::nullopt;
  return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(*at - Clock::now()));
}

}  // namespace nodus
