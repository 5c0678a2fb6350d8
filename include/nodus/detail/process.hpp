// The implementation hooks of nodus/process.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/process.hpp at the point they are
// needed; not an interface of its own: include nodus/process.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {
struct Closure {
  void* object = nullptr;
  void (*destroy)(void*) = nullptr;
};
/// `remote_link`: a pid of another node the new process is linked to before it first runs
/// (a spawn_link from that node); `remote_watcher` monitors it under `remote_ref` from the
/// start (a spawn_monitor from that node).
Pid spawn_frame(Proc::handle h, const SpawnOptions& opts, Closure c, Ref* monitor_ref,
                const Pid& remote_link = {}, const Pid& remote_watcher = {}, const Ref& remote_ref = {});
void deliver(const Pid& to, MsgNode* n);
bool deliver_nosuspend(const Pid& to, MsgNode* n);
bool deliver_named(Atom name, MsgNode* n);
std::uint64_t send_after_node(Clock::duration d, const Pid& to, MsgNode* n);
/// monitor(pid) under a reference the caller chose (a protocol that names the monitor in its
/// request, as the task supervisor's does).
void monitor_as(const Pid& pid, const Ref& ref);
/// The calling process is no longer watched under `ref`, and no Down will say it ended: the
/// monitor was handed over to another process, or a protocol tells the watcher it is gone.
void drop_watcher(const Ref& ref);
/// A call under `tag` gave up (timed out): its `{tag, Reply}` is dropped if it comes later,
/// instead of staying in the caller's mailbox (Erlang's call alias). Remembers the last 64.
void ignore_reply(const Ref& tag);
/// True on one of the runtime's scheduler threads (where a body must never block).
bool on_scheduler_thread() noexcept;

template <class F, class... Args>
Pid spawn_with(const SpawnOptions& opts, Ref* mref, F&& f, Args&&... args) {
  using Fn = std::decay_t<F>;
  if constexpr (std::is_pointer_v<Fn> || std::is_empty_v<Fn>) {
    // nothing to keep alive: the frame holds the (by-value) arguments
    Proc p = std::invoke(f, std::forward<Args>(args)...);
    return spawn_frame(p.release(), opts, {}, mref);
  } else {
    // a capturing lambda: its captures must outlive the coroutine that refers to them
    auto* fn = new Fn(std::forward<F>(f));
    Proc p = std::invoke(*fn, std::forward<Args>(args)...);
    return spawn_frame(p.release(), opts, {fn, [](void* o) { delete static_cast<Fn*>(o); }}, mref);
  }
}
}  // namespace detail

}  // namespace nodus

NODUS_API_END
