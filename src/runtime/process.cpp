// Mailbox delivery, wake-up, selective-receive scanning, exit signals and termination.
#include "process.hpp"
#include "trace.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <typeinfo>

#include "context.hpp"
#include "counters.hpp"
#include "nodus/error.hpp"
#include "nodus/log.hpp"

namespace nodus::runtime {
namespace {
NODUS_TLS Process* tl_current = nullptr;
using detail::MsgNode;

template <class T>
T& value_of(MsgNode* n) {
  return static_cast<detail::TypedNode<T>*>(n)->value;
}

void destroy(MsgNode* n) noexcept { n->type->destroy(n); }

// max_mailbox bookkeeping (owner): a node left the mailbox.
inline void taken(Process* p) noexcept {
  const std::uint32_t max = p->max_messages.load(std::memory_order_relaxed);
  if (max == 0) return;
  const std::int64_t len = p->mailbox_len.fetch_sub(1, std::memory_order_relaxed) - 1;
  if (len < max && p->limit_policy.load(std::memory_order_relaxed) == MailboxLimit::Policy::refuse) {
    p->overflowed.store(false, std::memory_order_relaxed);  // a later refusal warns again
  }
}

void append(Process* p, MsgNode* n) {
  n->next.store(nullptr, std::memory_order_relaxed);
  *p->save_tail = n;
  p->save_tail = reinterpret_cast<MsgNode**>(&n->next);
}

// A receive took a message (observability: the mailbox length is pushed - handled - dropped).
inline void handled(Process* p) noexcept {
  p->handled.store(p->handled.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
// A node left the mailbox without a receive taking it (a signal acted on, a stray, a late reply).
inline void discarded(Process* p) noexcept {
  taken(p);
  p->dropped.store(p->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

MsgNode* next_of(MsgNode* n) { return n->next.load(std::memory_order_relaxed); }
MsgNode** link_of(MsgNode* n) { return reinterpret_cast<MsgNode**>(&n->next); }

// Vyukov's MPSC push, in two halves so the sender can read the owner's state in between: the
// seq_cst exchange is what pairs with the owner's seq_cst "store waiting; load inbox_head".
MsgNode* claim(Process* p, MsgNode* n) noexcept {
  n->next.store(nullptr, std::memory_order_relaxed);
  return p->inbox_head.exchange(n, std::memory_order_seq_cst);
}
void publish(MsgNode* prev, MsgNode* n) noexcept { prev->next.store(n, std::memory_order_release); }
void link_in(Process* p, MsgNode* n) noexcept { publish(claim(p, n), n); }

// Vyukov's MPSC pop (owner only). nullptr when empty or when the next push is still in flight.
MsgNode* pop(Process* p) noexcept {
  MsgNode* tail = p->inbox_tail;
  MsgNode* next = tail->next.load(std::memory_order_acquire);
  if (tail == &p->stub) {
    if (next == nullptr) return nullptr;
    p->inbox_tail = next;
    tail = next;
    next = next->next.load(std::memory_order_acquire);
  }
  if (next) {
    p->inbox_tail = next;
    return tail;
  }
  if (tail != p->inbox_head.load(std::memory_order_acquire)) return nullptr;  // push in flight
  link_in(p, &p->stub);
  next = tail->next.load(std::memory_order_acquire);
  if (next) {
    p->inbox_tail = next;
    return tail;
  }
  return nullptr;
}

// Pops the next node meant for this incarnation (strays for a former one are dropped).
MsgNode* pop_own(Process* p) noexcept {
  const std::uint64_t me = p->ident.load(std::memory_order_relaxed);
  for (;;) {
    MsgNode* n = pop(p);
    if (n == nullptr) {
      // empty (no node, no push in flight, nothing saved): the mailbox length is 0 exactly
      if (p->save_head == nullptr && p->inbox_tail == &p->stub &&
          p->inbox_head.load(std::memory_order_relaxed) == &p->stub) {
        const auto in = static_cast<std::int64_t>(p->pushed.load(std::memory_order_relaxed));
        const auto out = static_cast<std::int64_t>(p->handled.load(std::memory_order_relaxed));
        p->dropped.store(in - out, std::memory_order_relaxed);
      }
      return n;
    }
    if (n->stamp == me) return n;
    destroy(n);
    discarded(p);
  }
}

void set_exit(Process* p, Term reason) {
  if (p->exit_reason == nullptr) p->exit_reason = new Term(std::move(reason));
}

bool remove_link(Process* p, const Pid& other) {
  std::lock_guard lock(p->lock);
  if (p->extras == nullptr) return false;
  auto& l = p->extras->links;
  auto it = std::find(l.begin(), l.end(), other);
  if (it == l.end()) return false;
  l.erase(it);
  return true;
}

// Erlang's rules for an exit signal reaching a process. Returns the {'EXIT', From, Reason}
// message it becomes when the process traps exits, else nullptr.
MsgNode* handle_exit_signal(Process* p, MsgNode* n) {
  MsgNode* out = nullptr;
  auto& sig = value_of<ExitSignal>(n);
  const bool relevant = !sig.from_link || remove_link(p, sig.from);
  if (relevant) {
    const bool is_kill = sig.reason.is_atom() && sig.reason.as_atom() == atoms::kill();
    const bool is_normal = sig.reason.is_atom() && sig.reason.as_atom() == atoms::normal();
    if (is_kill && !sig.from_link) {
      set_exit(p, atoms::killed());  // untrappable
    } else if (p->trap_exit) {
      out = detail::make_node(ExitMsg{sig.from, std::move(sig.reason)});
      out->stamp = n->stamp;
    } else if (!is_normal) {
      set_exit(p, std::move(sig.reason));
    } else if (!sig.from_link && sig.from == p->pid()) {
      set_exit(p, atoms::normal());  // exit(self(), normal) does end the caller
    }
  }
  destroy(n);
  return out;
}

// Acts on a signal node. Returns the message the node amounts to: `n` itself for an ordinary
// message, a trapped exit's ExitMsg, or nullptr when nothing is left for the mailbox.
MsgNode* handle_signal(Process* p, MsgNode* n) {
  switch (n->type->kind) {
    case detail::NodeKind::message: return n;
    case detail::NodeKind::exit_signal: return handle_exit_signal(p, n);
    case detail::NodeKind::encoded: {
      auto* e = static_cast<detail::EncodedNode*>(n);
      MsgNode* m = e->decode(e);
      destroy(n);
      return m;  // nullptr: malformed, dropped (the decoder logged it)
    }
  }
  return nullptr;
}

// A reply to a call that gave up (ignore_reply): dropped.
bool is_late_reply(Process* p, MsgNode* n) {
  if (n->type != &detail::type_info_v<Term>) return false;
  const Term& t = value_of<Term>(n);
  if (!t.is_tuple() || t.size() != 2 || !t[0].is_ref()) return false;
  auto& tags = p->extras->late_replies;
  const auto it = std::find(tags.begin(), tags.end(), t[0].as_ref());
  if (it == tags.end()) return false;
  tags.erase(it);
  p->has_late_replies = !tags.empty();
  return true;
}

// An arrival as the mailbox keeps it: signals acted on, late replies dropped (nullptr).
MsgNode* admit(Process* p, MsgNode* n) {
  n = handle_signal(p, n);
  if (n != nullptr && p->has_late_replies && is_late_reply(p, n)) {
    destroy(n);
    n = nullptr;
  }
  if (n == nullptr) {
    discarded(p);
  }
  return n;
}

// Moves every arrival into the save list, acting on signals.
void take_arrivals(Process* p) {
  while (MsgNode* n = pop_own(p)) {
    if (MsgNode* m = admit(p, n)) append(p, m);
  }
}

// take_arrivals, and also what is published behind a push still in flight (a sender between
// its claim and its publish: pop stops there, and a node published behind it stays out of
// reach until it links). Only for a look that must not miss what is already delivered.
void take_all_arrivals(Process* p) {
  for (unsigned spins = 0;; ++spins) {
    take_arrivals(p);
    if (p->inbox_tail == p->inbox_head.load(std::memory_order_acquire)) return;
    if (spins > 64) std::this_thread::yield();
  }
}

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = (status == 0 && d) ? d : name;
  std::free(d);
  return out;
}
}  // namespace

bool remove_watcher(const Pid& target, const Ref& ref) {
  if (!target.is_local()) return false;  // the remote side is told by demonitor (see terminate)
  Process* t = ctx().table.lookup(target);
  if (t == nullptr) return false;
  std::lock_guard lock(t->lock);
  if (t->is(ident_of(target)) && t->extras) {
    return std::erase_if(t->extras->watchers, [&](const auto& e) { return e.first == ref; }) > 0;
  }
  return false;
}

bool deliver_down(const Pid& watcher, const Ref& ref, MsgNode* n) noexcept {
  Context* c = ctx_if();
  Process* w = (c && !c->shutting_down.load(std::memory_order_relaxed)) ? c->table.lookup(watcher) : nullptr;
  if (w != nullptr) {
    std::lock_guard lock(w->lock);
    if (w->is(ident_of(watcher)) && w->extras &&
        std::erase_if(w->extras->monitoring, [&](const auto& e) { return e.first == ref; }) > 0) {
      n->stamp = ident_of(watcher);
      push(w, n);  // (a Down is never refused by max_mailbox)
      return true;
    }
  }
  destroy(n);
  return false;
}

bool remove_monitoring(const Pid& watcher, const Ref& ref) {
  Process* w = ctx().table.lookup(watcher);
  if (w == nullptr) return false;
  std::lock_guard lock(w->lock);
  if (w->is(ident_of(watcher)) && w->extras) {
    return std::erase_if(w->extras->monitoring, [&](const auto& e) { return e.first == ref; }) > 0;
  }
  return false;
}

bool retarget_monitoring(const Pid& watcher, const Ref& ref, const Pid& target) {
  Process* w = ctx().table.lookup(watcher);
  if (w == nullptr) return false;
  std::lock_guard lock(w->lock);
  if (!w->is(ident_of(watcher)) || !w->extras) return false;
  for (auto& [r, t] : w->extras->monitoring) {
    if (r == ref) {
      t = target;
      return true;
    }
  }
  return false;
}

Process* current() noexcept { return tl_current; }
void set_current(Process* p) noexcept { tl_current = p; }

Pid Process::pid() const {
  const auto id = ident.load(std::memory_order_relaxed);
  return Pid{Atom(), 0, static_cast<std::uint32_t>(id >> 32), static_cast<std::uint32_t>(id)};
}

Process::~Process() {
  drain(this);
  delete thread_wait;
}

Extras& Process::ext() {
  if (extras == nullptr) extras = new Extras;
  return *extras;
}

void destroy_chain(MsgNode* n) noexcept {
  while (n) {
    MsgNode* next = next_of(n);
    destroy(n);
    n = next;
  }
}

namespace {
// max_mailbox (sender): counts the node in; false if the refuse policy turns it away. Signals
// (exit signals, DOWNs) are counted but never refused.
bool within_limit(Process* p, MsgNode* n, std::uint32_t max) noexcept {
  const std::int64_t len = p->mailbox_len.fetch_add(1, std::memory_order_relaxed) + 1;
  if (len <= max) return true;
  const bool signal = n->type->kind == detail::NodeKind::exit_signal || n->type == &detail::type_info_v<Down>;
  if (signal) return true;
  if (p->limit_policy.load(std::memory_order_relaxed) == MailboxLimit::Policy::refuse) {
    p->mailbox_len.fetch_sub(1, std::memory_order_relaxed);
    if (!p->overflowed.exchange(true, std::memory_order_relaxed)) {
      logger().warn("process {} refused a message: its mailbox holds its max_mailbox ({} messages)",
                       to_string(p->pid()), max);
    }
    destroy(n);
    return false;
  }
  p->overflowed.store(true, std::memory_order_relaxed);  // the owner exits at its next look
  return true;
}
}  // namespace

bool push(Process* p, MsgNode* n) noexcept {
  if (const std::uint32_t max = p->max_messages.load(std::memory_order_relaxed); max != 0) {
    if (!within_limit(p, n, max)) return false;
  }
  p->pushed.store(p->pushed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  MsgNode* prev = claim(p, n);
  const State st = p->state.load(std::memory_order_seq_cst);
  publish(prev, n);
  if (st == State::waiting) {
    wake(p);  // after publishing, so the woken owner finds the node linked
  } else if (st == State::held && n->type->kind == detail::NodeKind::exit_signal) {
    // a send budget holds it, but an exit signal acts at once (it stays held unless it dies)
    State expected = State::held;
    if (p->state.compare_exchange_strong(expected, State::queued, std::memory_order_acq_rel)) ctx().sched.enqueue(p);
  }
  return true;
}

void fire_timeout(const Pid& to, std::uint64_t token) noexcept {
  Context* c = ctx_if();
  Process* p = c ? c->table.lookup(to) : nullptr;
  if (p == nullptr) return;
  // Dekker with the owner's park: it stores `waiting` then loads `timeout_fired`; we store
  // `timeout_fired` then load `state`. A block recycled meanwhile gets a harmless extra look.
  p->timeout_fired.store(token, std::memory_order_seq_cst);
  if (p->state.load(std::memory_order_seq_cst) == State::waiting) wake(p);
}

namespace {
NODUS_TLS bool tl_internal = false;
}
void mark_internal_thread() noexcept { tl_internal = true; }
bool on_internal_thread() noexcept { return tl_internal; }

std::uint64_t hold_current() noexcept {
  if (!on_worker()) return 0;
  Process* p = tl_current;
  if (p == nullptr || p->is_thread.load(std::memory_order_relaxed)) return 0;
  if (p->held.exchange(true, std::memory_order_relaxed)) return 0;  // on another list already
  return p->ident.load(std::memory_order_relaxed);
}

void release_held(Process* p, std::uint64_t ident) noexcept {
  if (p->ident.load(std::memory_order_relaxed) != ident) return;
  // Dekker with park_held: it stores `held` state then loads the flag; we clear the flag then
  // load the state. Whoever wins the CAS out of `held` owns the process.
  p->held.store(false, std::memory_order_seq_cst);
  State expected = State::held;
  if (p->state.load(std::memory_order_seq_cst) == State::held &&
      p->state.compare_exchange_strong(expected, State::queued, std::memory_order_acq_rel)) {
    ctx().sched.enqueue(p);
  }
}

bool park_held(Process* p) noexcept {
  p->state.store(State::held, std::memory_order_seq_cst);
  // input that came before `held` was published may hold an exit signal whose sender saw us
  // running: look at it first (held_look) instead of sleeping on it
  if (p->held.load(std::memory_order_seq_cst) && !has_input(p)) return true;
  State expected = State::held;
  return !p->state.compare_exchange_strong(expected, State::running, std::memory_order_acq_rel);
}

bool held_look(Process* p) {
  take_arrivals(p);  // exit signals act (a receive pending finds the rest in the save list)
  return p->exit_reason != nullptr;
}

void drain(Process* p) noexcept {
  while (MsgNode* n = pop(p)) destroy(n);
  p->mailbox_len.store(0, std::memory_order_relaxed);
  destroy_chain(std::exchange(p->save_head, nullptr));
  p->save_tail = &p->save_head;
  p->cursor = &p->save_head;
}

void prepare(Process* p, bool is_thread, const Pid& group_leader) {
  drain(p);  // strays for a former incarnation of this block
  p->is_thread.store(is_thread, std::memory_order_relaxed);
  p->trap_exit = false;
  p->started = is_thread;
  p->yielding = false;
  p->has_late_replies = false;
  p->held.store(false, std::memory_order_relaxed);
  p->max_messages.store(0, std::memory_order_relaxed);
  p->overflowed.store(false, std::memory_order_relaxed);
  p->exit_reason = nullptr;
  p->pending = nullptr;
  p->run_next = nullptr;
  p->pushed.store(0, std::memory_order_relaxed);
  p->dropped.store(0, std::memory_order_relaxed);
  p->handled.store(0, std::memory_order_relaxed);
  p->body.store(nullptr, std::memory_order_relaxed);
  p->root = {};
  // a stale pid holder may be looking at this block under its lock (and will see the old
  // identity, or this one once published)
  std::lock_guard lock(p->lock);
  p->alive = true;
  p->extras = nullptr;
  p->group_leader = group_leader;
}

void retire(Process* p) {
  Extras* e;
  {
    std::lock_guard lock(p->lock);
    p->alive = false;
    e = std::exchange(p->extras, nullptr);
  }
  delete e;
  ctx().pool.put(p);
}

void wake(Process* p) noexcept {
  State expected = State::waiting;
  if (!p->state.compare_exchange_strong(expected, State::queued, std::memory_order_acq_rel)) return;
  if (p->is_thread.load(std::memory_order_relaxed)) {
    { std::lock_guard lock(p->thread_wait->mu); }
    p->thread_wait->cv.notify_one();
  } else {
    ctx().sched.enqueue(p);
  }
}

bool deliver_local(const Pid& to, MsgNode* n) noexcept {
  Context* c = ctx_if();
  Process* p = (c && !c->shutting_down.load(std::memory_order_relaxed)) ? c->table.lookup(to) : nullptr;
  if (p == nullptr) {
    destroy(n);
    return true;  // gone: dropped, as Erlang drops it (not a refusal)
  }
  n->stamp = ident_of(to);
  return push(p, n);
}

namespace {
std::atomic<const RemoteHooks*> g_remote{nullptr};
}

void set_remote_hooks(const RemoteHooks* h) noexcept { g_remote.store(h, std::memory_order_release); }
const RemoteHooks* remote_hooks() noexcept { return g_remote.load(std::memory_order_acquire); }

void deliver_remote(const Pid& to, MsgNode* n) noexcept {
  if (const RemoteHooks* h = remote_hooks()) {
    h->deliver(to, n);
  } else {
    destroy(n);  // not distributed: no other node can be reached
  }
}

void deliver_any(const Pid& to, MsgNode* n) noexcept {
  if (to.is_local()) {
    deliver_local(to, n);
  } else {
    deliver_remote(to, n);
  }
}

bool add_remote_link(const Pid& target, const Pid& remote) {
  Process* t = ctx().table.lookup(target);
  if (t == nullptr) return false;
  std::lock_guard lock(t->lock);
  if (!t->is(ident_of(target))) return false;
  auto& l = t->ext().links;
  if (std::find(l.begin(), l.end(), remote) == l.end()) l.push_back(remote);
  return true;
}

void remove_remote_link(const Pid& target, const Pid& remote) {
  Process* t = ctx().table.lookup(target);
  if (t == nullptr) return;
  std::lock_guard lock(t->lock);
  if (t->is(ident_of(target)) && t->extras) std::erase(t->extras->links, remote);
}

bool add_monitoring(const Pid& watcher, const Ref& ref, const Pid& target) {
  Process* w = ctx().table.lookup(watcher);
  if (w == nullptr) return false;
  std::lock_guard lock(w->lock);
  if (!w->is(ident_of(watcher))) return false;
  w->ext().monitoring.emplace_back(ref, target);
  return true;
}

bool add_remote_watcher(const Pid& target, const Ref& ref, const Pid& remote_watcher) {
  Process* t = ctx().table.lookup(target);
  if (t == nullptr) return false;
  std::lock_guard lock(t->lock);
  if (!t->is(ident_of(target))) return false;
  t->ext().watchers.emplace_back(ref, remote_watcher);
  return true;
}

void send_exit_signal(const Pid& to, const Pid& from, Term reason, bool from_link) {
  deliver_any(to, new detail::TypedNode<ExitSignal>(
                        &detail::type_info_v<ExitSignal, detail::NodeKind::exit_signal>,
                        ExitSignal{from, std::move(reason), from_link}));
}

namespace {
// How many arrivals a scan takes between looks at the receive's deadline: a flood that keeps
// the queue non-empty cannot hold a timeout back by more than this many messages.
constexpr unsigned kDeadlineEvery = 64;

bool deadline_passed(const Process* p, const detail::Receiver& r) {
  if (!r.has_deadline) return false;
  if (r.token != 0 && p->timeout_fired.load(std::memory_order_acquire) == r.token) return true;
  return Clock::now() >= r.deadline;
}


// max_mailbox, exit policy: a sender saw the mailbox pass the limit (it set the flag before it
// linked its node, so the owner sees the flag once it has popped that node).
bool overflow_exit(Process* p) {
  if (!p->overflowed.load(std::memory_order_relaxed) ||
      p->limit_policy.load(std::memory_order_relaxed) != MailboxLimit::Policy::exit || p->exit_reason != nullptr) {
    return false;
  }
  logger().error("process {} exceeded its max_mailbox ({} messages): exiting with mailbox_overflow",
                 to_string(p->pid()), p->max_messages.load(std::memory_order_relaxed));
  set_exit(p, atom("mailbox_overflow"));
  return true;
}
}  // namespace

Scan scan(Process* p, detail::Receiver& r) {
  if (overflow_exit(p)) return Scan::must_exit;
  // messages skipped earlier, from where this receive stopped last time (a receive that can
  // match nothing, sleep_for, has nothing to look for there)
  if (r.matches != nullptr) {
    MsgNode** link = p->cursor;
    for (MsgNode* n = *link; n; link = link_of(n), n = *link) {
      if (r.matches(&r, n)) {
        *link = next_of(n);
        if (p->save_tail == link_of(n)) p->save_tail = link;
        n->next.store(nullptr, std::memory_order_relaxed);
        p->cursor = &p->save_head;
        r.matched = n;
        taken(p);
        handled(p);
        return Scan::matched;
      }
    }
  }
  // new arrivals: a match is taken straight from the queue, the rest are saved
  unsigned popped = 0;
  while (p->exit_reason == nullptr) {
    if (++popped % kDeadlineEvery == 0 && deadline_passed(p, r)) {
      r.timed_out = true;
      break;
    }
    MsgNode* n = pop_own(p);
    if (n == nullptr) break;
    n = admit(p, n);
    if (n == nullptr) continue;
    if (r.matches != nullptr && r.matches(&r, n)) {
      n->next.store(nullptr, std::memory_order_relaxed);
      p->cursor = &p->save_head;
      r.matched = n;
      taken(p);
      handled(p);
      return Scan::matched;
    }
    append(p, n);
  }
  p->cursor = p->save_tail;  // everything saved so far has been looked at
  if (p->exit_reason || overflow_exit(p)) return Scan::must_exit;
  // (the clock too, not only the timer: a process a flood keeps waking sees its deadline
  // without waiting for the timer thread to get a core)
  if (!r.timed_out && deadline_passed(p, r)) r.timed_out = true;
  return r.timed_out ? Scan::timed_out : Scan::no_match;
}

void ignore_reply(Process* p, const Ref& tag) {
  {
    std::lock_guard lock(p->lock);  // others may allocate extras too (a link, a monitor)
    (void)p->ext();
  }
  auto& tags = p->extras->late_replies;  // the owner's alone
  if (tags.size() >= 64) tags.erase(tags.begin());
  tags.push_back(tag);
  p->has_late_replies = true;
}

bool remove_down(Process* p, const Ref& ref) {
  take_all_arrivals(p);
  bool found = false;
  for (MsgNode** link = &p->save_head; *link; link = link_of(*link)) {
    MsgNode* n = *link;
    if (n->type == &detail::type_info_v<Down> && value_of<Down>(n).ref == ref) {
      *link = next_of(n);
      if (p->save_tail == link_of(n)) p->save_tail = link;
      destroy(n);
      discarded(p);
      found = true;
      break;
    }
  }
  p->cursor = &p->save_head;
  return found;
}

std::vector<Message> take_all(Process* p) {
  take_arrivals(p);
  std::vector<Message> out;
  for (MsgNode* n = p->save_head; n;) {
    MsgNode* next = next_of(n);
    n->next.store(nullptr, std::memory_order_relaxed);
    out.emplace_back(n);
    taken(p);
    handled(p);
    n = next;
  }
  p->save_head = nullptr;
  p->save_tail = &p->save_head;
  p->cursor = &p->save_head;
  return out;
}

namespace {
Count exit_class(const Term& reason) {
  static const Atom shutdown = atom("shutdown");
  if (reason.is_atom()) {
    const Atom a = reason.as_atom();
    if (a == atoms::normal()) return Count::exit_normal;
    if (a == shutdown) return Count::exit_shutdown;
    if (a == atoms::killed()) return Count::exit_killed;
    if (a == atoms::noconnection()) return Count::exit_noconnection;
    return Count::exit_other;
  }
  if (reason.is_tuple() && reason.size() >= 2 && reason[0].is_atom()) {
    if (reason[0].as_atom() == shutdown) return Count::exit_shutdown;
    if (reason[0].as_atom() == atoms::exception()) return Count::exit_exception;
  }
  return Count::exit_other;
}
}  // namespace

void terminate(Process* p, Term reason) {
  NODUS_MARK(terminate);
  bump(exit_class(reason));
  Context& c = ctx();
  // the body goes first, while the process is still itself (destructors may send)
  if (p->root) {
    p->root.destroy();
    p->root = {};
  }
  const Pid me = p->pid();
  Extras* e;
  {
    std::lock_guard lock(p->lock);
    p->alive = false;
    e = std::exchange(p->extras, nullptr);
  }
  delete std::exchange(p->exit_reason, nullptr);
  if (e && e->name) c.registry.erase(*e->name, me);
  c.table.remove(p);
  if (e) {
    for (const Pid& l : e->links) send_exit_signal(l, me, reason, true);
    for (const auto& [ref, w] : e->watchers) {
      if (w.is_local()) {
        deliver_down(w, ref, detail::make_node(Down{ref, me, reason}));
      } else {
        deliver_remote(w, detail::make_node(Down{ref, me, reason}));
      }
    }
    for (const auto& [ref, t] : e->monitoring) {
      if (t.is_local()) {
        remove_watcher(t, ref);
      } else if (const RemoteHooks* h = remote_hooks()) {
        h->demonitor(me, t, ref);
      }
    }
    if (e->closure.destroy) e->closure.destroy(e->closure.object);
    delete e;
  }
  drain(p);  // late arrivals are dropped by the block's next owner (their stamp differs)
  p->pending = nullptr;
  p->state.store(State::exited, std::memory_order_release);
  c.pool.put(p);
}

Term reason_from_exception(std::exception_ptr e, bool* is_crash) {
  *is_crash = true;
  try {
    std::rethrow_exception(e);
  } catch (ProcessExit& x) {
    *is_crash = false;
    return std::move(x.reason);
  } catch (Error& x) {
    return x.exit_reason();
  } catch (std::exception& x) {
    return tuple(atoms::exception(), demangle(typeid(x).name()), std::string(x.what()));
  } catch (...) {
    const std::type_info* ti = abi::__cxa_current_exception_type();
    return tuple(atoms::exception(), ti ? demangle(ti->name()) : std::string("unknown"),
                 std::string());
  }
}

}  // namespace nodus::runtime

namespace nodus {
Term exit_reason_of(std::exception_ptr e) {
  bool crash = false;
  return runtime::reason_from_exception(std::move(e), &crash);
}
}  // namespace nodus
