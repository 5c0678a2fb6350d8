// Mailbox delivery, wake-up, selective-receive scanning, exit signals and termination.
#include "process.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <typeinfo>

#include "context.hpp"

namespace nodus::runtime {
namespace {
thread_local Process* tl_current = nullptr;

template <class T>
T& value_of(detail::MsgNode* n) {
  return static_cast<detail::TypedNode<T>*>(n)->value;
}

void append(Process* p, detail::MsgNode* n) {
  n->next = nullptr;
  *p->save_tail = n;
  p->save_tail = &n->next;
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

// Erlang's rules for an exit signal reaching a process.
void handle_exit_signal(Process* p, detail::MsgNode* n) {
  auto& sig = value_of<ExitSignal>(n);
  const bool relevant = !sig.from_link || remove_link(p, sig.from);
  if (relevant) {
    const bool is_kill = sig.reason.is_atom() && sig.reason.as_atom() == atoms::kill();
    const bool is_normal = sig.reason.is_atom() && sig.reason.as_atom() == atoms::normal();
    if (is_kill && !sig.from_link) {
      set_exit(p, atoms::killed());  // untrappable
    } else if (p->trap_exit) {
      append(p, detail::make_node(ExitMsg{sig.from, std::move(sig.reason)}));
    } else if (!is_normal) {
      set_exit(p, std::move(sig.reason));
    } else if (!sig.from_link && sig.from == p->pid()) {
      set_exit(p, atoms::normal());  // exit(self(), normal) does end the caller
    }
  }
  n->type->destroy(n);
}

// Moves everything from the inbox to the save list in arrival order, acting on signals.
void intake(Process* p) {
  detail::MsgNode* n = p->inbox.exchange(nullptr, std::memory_order_acquire);
  if (n == nullptr) return;
  detail::MsgNode* fifo = nullptr;
  while (n) {
    detail::MsgNode* next = n->next;
    n->next = fifo;
    fifo = n;
    n = next;
  }
  while (fifo) {
    detail::MsgNode* next = fifo->next;
    switch (fifo->type->kind) {
      case detail::NodeKind::message: append(p, fifo); break;
      case detail::NodeKind::exit_signal: handle_exit_signal(p, fifo); break;
      case detail::NodeKind::timeout_signal:
        if (p->pending && p->pending->token == value_of<TimeoutSignal>(fifo).token) {
          p->pending->timed_out = true;
        }
        fifo->type->destroy(fifo);
        break;
    }
    fifo = next;
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

void remove_watcher(const Pid& target, const Ref& ref) {
  Process* t = ctx().table.lookup(target);
  if (t == nullptr) return;
  {
    std::lock_guard lock(t->lock);
    if (t->alive && t->extras) {
      auto& w = t->extras->watchers;
      std::erase_if(w, [&](const auto& e) { return e.first == ref; });
    }
  }
  t->release();
}

void remove_monitoring(const Pid& watcher, const Ref& ref) {
  Process* w = ctx().table.lookup(watcher);
  if (w == nullptr) return;
  {
    std::lock_guard lock(w->lock);
    if (w->alive && w->extras) {
      std::erase_if(w->extras->monitoring, [&](const auto& e) { return e.first == ref; });
    }
  }
  w->release();
}

Process* current() noexcept { return tl_current; }
void set_current(Process* p) noexcept { tl_current = p; }

Pid Process::pid() const {
  const auto me = detail::local_node();
  const auto id = ident.load(std::memory_order_relaxed);
  return Pid{me.name, me.creation, static_cast<std::uint32_t>(id >> 32),
             static_cast<std::uint32_t>(id)};
}

Extras& Process::ext() {
  if (extras == nullptr) extras = new Extras;
  return *extras;
}

void Process::release() noexcept {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // last reference: messages that arrived after the exit go, and the block is recycled
  destroy_chain(inbox.exchange(nullptr, std::memory_order_acquire));
  delete thread_wait;
  thread_wait = nullptr;
  ident.store(0, std::memory_order_relaxed);
  if (Context* c = ctx_if()) c->pool.put(this);
}

void destroy_chain(detail::MsgNode* n) noexcept {
  while (n) {
    detail::MsgNode* next = n->next;
    n->type->destroy(n);
    n = next;
  }
}

void push(Process* p, detail::MsgNode* n) noexcept {
  detail::MsgNode* head = p->inbox.load(std::memory_order_relaxed);
  do {
    n->next = head;
  } while (!p->inbox.compare_exchange_weak(head, n, std::memory_order_seq_cst,
                                           std::memory_order_relaxed));
  // pairs with the owner's "store waiting; load inbox" (both seq_cst): one of us sees the other
  if (p->state.load(std::memory_order_seq_cst) == State::waiting) wake(p);
}

void wake(Process* p) noexcept {
  State expected = State::waiting;
  if (!p->state.compare_exchange_strong(expected, State::queued, std::memory_order_acq_rel)) return;
  if (p->is_thread) {
    { std::lock_guard lock(p->thread_wait->mu); }
    p->thread_wait->cv.notify_one();
  } else {
    ctx().sched.enqueue(p);
  }
}

void deliver_local(const Pid& to, detail::MsgNode* n) noexcept {
  Context* c = ctx_if();
  Process* p = (c && !c->shutting_down.load(std::memory_order_relaxed)) ? c->table.lookup(to) : nullptr;
  if (p == nullptr) {
    n->type->destroy(n);
    return;
  }
  push(p, n);
  p->release();
}

void send_exit_signal(const Pid& to, const Pid& from, Term reason, bool from_link) {
  deliver_local(to, new detail::TypedNode<ExitSignal>(
                        &detail::type_info_v<ExitSignal, detail::NodeKind::exit_signal>,
                        ExitSignal{from, std::move(reason), from_link}));
}

Scan scan(Process* p, detail::Receiver& r) {
  intake(p);
  if (p->exit_reason) return Scan::must_exit;
  detail::MsgNode** link = p->cursor;
  for (detail::MsgNode* n = *link; n; link = &n->next, n = *link) {
    if (r.matches(&r, n)) {
      *link = n->next;
      if (p->save_tail == &n->next) p->save_tail = link;
      n->next = nullptr;
      p->cursor = &p->save_head;
      r.matched = n;
      return Scan::matched;
    }
  }
  p->cursor = link;  // the next look resumes here: earlier messages did not match
  return r.timed_out ? Scan::timed_out : Scan::no_match;
}

void remove_down(Process* p, const Ref& ref) {
  intake(p);
  for (detail::MsgNode** link = &p->save_head; *link; link = &(*link)->next) {
    detail::MsgNode* n = *link;
    if (n->type == &detail::type_info_v<Down> && value_of<Down>(n).ref == ref) {
      *link = n->next;
      if (p->save_tail == &n->next) p->save_tail = link;
      n->type->destroy(n);
      break;
    }
  }
  p->cursor = &p->save_head;
}

std::vector<Message> take_all(Process* p) {
  intake(p);
  std::vector<Message> out;
  for (detail::MsgNode* n = p->save_head; n;) {
    detail::MsgNode* next = n->next;
    n->next = nullptr;
    out.emplace_back(n);
    n = next;
  }
  p->save_head = nullptr;
  p->save_tail = &p->save_head;
  p->cursor = &p->save_head;
  return out;
}

void terminate(Process* p, Term reason) {
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
      remove_monitoring(w, ref);
      deliver_local(w, detail::make_node(Down{ref, me, reason}));
    }
    for (const auto& [ref, t] : e->monitoring) remove_watcher(t, ref);
    if (e->closure.destroy) e->closure.destroy(e->closure.object);
    delete e;
  }
  destroy_chain(std::exchange(p->save_head, nullptr));
  p->save_tail = &p->save_head;
  p->cursor = &p->save_head;
  destroy_chain(p->inbox.exchange(nullptr, std::memory_order_acquire));
  p->pending = nullptr;
  p->state.store(State::exited, std::memory_order_release);
  p->release();
}

Term reason_from_exception(std::exception_ptr e, bool* is_crash) {
  *is_crash = true;
  try {
    std::rethrow_exception(e);
  } catch (ProcessExit& x) {
    *is_crash = false;
    return std::move(x.reason);
  } catch (std::exception& x) {
    return tuple(atoms::exception(), demangle(typeid(x).name()), std::string(x.what()));
  } catch (...) {
    const std::type_info* ti = abi::__cxa_current_exception_type();
    return tuple(atoms::exception(), ti ? demangle(ti->name()) : std::string("unknown"),
                 std::string());
  }
}

}  // namespace nodus::runtime

