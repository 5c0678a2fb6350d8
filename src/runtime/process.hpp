// The process control block and the operations on it: delivery, wake-up, selective-receive
// scanning, exit signals and termination. Private to the runtime.
#pragma once

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/term.hpp"
#include "spin_lock.hpp"

namespace nodus::runtime {

/// Scheduling state. A sender that finds `waiting` and wins the CAS to `queued` schedules it.
/// `held`: suspended because a node it sends to is over its send budget (messages do not wake
/// it; the channel does, once drained or lost: release_held).
enum class State : std::uint8_t { queued, running, waiting, exited, held };

/// How a plain thread owning a Mailbox sleeps.
struct ThreadWait {
  std::mutex mu;
  std::condition_variable cv;
};

/// Rarely needed parts of a process, allocated on first use. Guarded by Process::lock.
struct Extras {
  std::vector<Pid> links;
  std::vector<std::pair<Ref, Pid>> watchers;    ///< monitors on this process: (ref, watcher)
  std::vector<std::pair<Ref, Pid>> monitoring;  ///< monitors this process holds: (ref, target)
  std::optional<Atom> name;
  detail::Closure closure;
  /// Owner only: tags of calls that timed out; a `{Tag, _}` reply with one of them is dropped
  /// when it arrives (Erlang drops it at the call's deactivated alias). At most 64, oldest
  /// forgotten first.
  std::vector<Ref> late_replies;
};

/// An exit signal in a mailbox (links, exit/2). Handled when the process next looks at its
/// mailbox, in arrival order with its messages.
struct ExitSignal {
  Pid from;
  Term reason;
  bool from_link;
};

/// Control blocks live in a type-stable pool: once allocated, the memory stays a Process for the
/// runtime's life. A sender resolves a pid to a block and checks its identity without taking a
/// reference; the node it pushes carries the identity it was meant for, so a node that lands in
/// a block recycled in between is dropped by the new owner instead of being delivered.
///
/// The mailbox is Vyukov's intrusive MPSC queue (producers exchange `inbox_head`; the owner pops
/// at `inbox_tail`) plus the owner's save list of messages a receive skipped.
struct Process {
  Process() { inbox_head.store(&stub, std::memory_order_relaxed); }
  ~Process();  // at runtime teardown: frees strays left in the mailbox
  Process(const Process&) = delete;

  // --- first cache line: what senders touch (the owner writes `state` only when it parks)
  std::atomic<detail::MsgNode*> inbox_head{nullptr};
  std::atomic<State> state{State::exited};
  std::atomic<bool> is_thread{false};
  /// Set by the owner when a send found the destination node over its send budget (and put
  /// the process on that channel's list); cleared by the channel once it drained. The
  /// scheduler holds the process at its next suspension point while it is set.
  std::atomic<bool> held{false};
  // max_mailbox (set before the process is published; 0: no limit, and nothing below is kept)
  std::atomic<MailboxLimit::Policy> limit_policy{MailboxLimit::Policy::exit};
  std::atomic<std::uint32_t> max_messages{0};
  std::atomic<std::int64_t> mailbox_len{0};  ///< pushed minus taken out (only with a limit)
  std::atomic<bool> overflowed{false};       ///< exit policy: passed the limit; refuse: warned
  /// Observability: messages pushed into this mailbox, bumped by each sender with a relaxed
  /// load and store (no read-modify-write), so two senders at once may count one. The owner
  /// counts `handled` (what receives took) and `dropped` (what left otherwise: signals acted
  /// on, strays), and sets `dropped = pushed - handled` whenever it finds the mailbox empty,
  /// which repairs such a miss: the length, pushed - handled - dropped, is exact for a process
  /// with one sender and at every empty mailbox, approximate in between.
  std::atomic<std::uint64_t> pushed{0};
  SpinLock lock;  ///< guards `alive`, `extras`, `group_leader`
  bool alive = false;
  std::atomic<std::uint64_t> ident{0};  ///< (slot << 32) | serial
  Pid group_leader;                     ///< guarded by `lock` (set_group_leader may come from anywhere)
  Extras* extras = nullptr;
  ThreadWait* thread_wait = nullptr;  ///< made on first use by a Mailbox; kept with the block
  /// The token of the last receive whose timeout the timer thread fired. A flag rather than a
  /// signal in the queue, so a timeout is seen at once however many messages are queued ahead
  /// of it. Tokens are never reused by a block (`next_token` survives incarnations), so a late
  /// timer of a former incarnation matches no receive of this one.
  std::atomic<std::uint64_t> timeout_fired{0};
  // --- the owner's side (the worker running it, or the Mailbox thread), written per message
  alignas(64) detail::MsgNode* inbox_tail = &stub;
  detail::MsgNode stub;
  bool trap_exit = false;
  bool started = false;
  bool yielding = false;
  bool has_late_replies = false;  ///< extras->late_replies is not empty (checked per arrival)
  Term* exit_reason = nullptr;  ///< set once an exit signal decided this process must die
  detail::MsgNode* save_head = nullptr;  ///< messages a receive skipped, in arrival order
  detail::MsgNode** save_tail = &save_head;
  detail::MsgNode** cursor = &save_head;  ///< where the pending receive stopped scanning
  detail::Receiver* pending = nullptr;
  std::coroutine_handle<> resume_point;
  Proc::handle root;
  std::uint64_t next_token = 0;  ///< never reset (see `timeout_fired`)
  Process* run_next = nullptr;  ///< intrusive run-queue link
  // observability, written by the owner only (relaxed stores), read by anyone
  std::atomic<std::int64_t> dropped{0};   ///< see `pushed` (negative after a repair of missed pushes)
  std::atomic<std::uint64_t> handled{0};  ///< messages a receive took (matched, or flush)
  std::atomic<const char*> body{nullptr};  ///< the body's function (its signature), if known

  Pid pid() const;
  Extras& ext();  ///< allocates extras; call with `lock` held or before publication
  /// True if this block currently is the live process `ident` (call with `lock` held).
  bool is(std::uint64_t id) const { return alive && ident.load(std::memory_order_relaxed) == id; }
};

inline std::uint64_t ident_of(const Pid& pid) { return (std::uint64_t(pid.id) << 32) | pid.serial; }

/// What a look at the mailbox found for the pending receive.
enum class Scan { matched, timed_out, no_match, must_exit };

/// The process whose code runs on this thread (a worker's current process, or a Mailbox).
Process* current() noexcept;
void set_current(Process* p) noexcept;

/// Pushes `n` into `p`'s mailbox and wakes `p` if it waits. Takes ownership of `n`. False if
/// `p`'s max_mailbox refuses it (then `n` is freed).
bool push(Process* p, detail::MsgNode* n) noexcept;
/// Owner only, before parking: a push is half done (its sender claimed a place and has not
/// linked it yet), so the owner should look again rather than park.
inline bool push_in_flight(const Process* p) noexcept { return p->inbox_tail != &p->stub; }
/// After publishing `waiting` (when the process may already belong to another worker, so only
/// atomics may be read): has anything been pushed since the owner last emptied the queue?
inline bool has_input(const Process* p) noexcept {
  return p->inbox_head.load(std::memory_order_seq_cst) != &p->stub;
}
/// Called by the timer thread at a receive's deadline: marks receive `token` of `to` timed
/// out and wakes the process if it waits.
void fire_timeout(const Pid& to, std::uint64_t token) noexcept;
/// Owner only, before parking: the token of the pending receive's timer (0: none). Read it
/// before publishing `waiting`; after, compare with `timeout_fired` to not park past a timeout.
inline std::uint64_t pending_timer_token(const Process* p) noexcept {
  return (p->pending && p->pending->timer != 0) ? p->pending->token : 0;
}
inline bool timeout_due(const Process* p, std::uint64_t token) noexcept {
  return token != 0 && p->timeout_fired.load(std::memory_order_seq_cst) == token;
}
/// The calling worker's process must be held (hold_current) until release_held: its identity,
/// or 0 if the caller is not a process on a worker (or is already held elsewhere).
std::uint64_t hold_current() noexcept;
/// A channel that drained (or went down) lets a held process go; `ident` is what hold_current
/// returned (a block recycled meanwhile is left alone).
void release_held(Process* p, std::uint64_t ident) noexcept;
/// Owner, at a suspension point with `held` set: parks the process as held. False if it was
/// released meanwhile (it goes on running); true if it parked (the caller must let it go).
bool park_held(Process* p) noexcept;
/// Owner, a held process that runs (an exit signal woke it, or park_held saw input): acts on
/// what arrived; true if it must exit now, else it parks held again.
bool held_look(Process* p);
/// Marks the calling thread as one of the runtime's or the node's own (timer, I/O, resolver):
/// a send from it never blocks, whatever the budget.
void mark_internal_thread() noexcept;
bool on_internal_thread() noexcept;
/// Owner only: destroys whatever is in the mailbox (new incarnation, or termination).
void drain(Process* p) noexcept;
/// Readies a block from the pool for a new process (not yet published).
void prepare(Process* p, bool is_thread, const Pid& group_leader);
/// Gives back a prepared block that was never published.
void retire(Process* p);
/// Makes a waiting process runnable (scheduler) or wakes its thread.
void wake(Process* p) noexcept;
/// Looks for a match for `r`: first among skipped messages (from the cursor), then in new
/// arrivals, acting on signals on the way.
Scan scan(Process* p, detail::Receiver& r);
/// Takes every ordinary message, oldest first (signals are acted on).
std::vector<Message> take_all(Process* p);
/// Runs the exit: destroys the body, notifies links and monitors, frees the slot.
void terminate(Process* p, Term reason);
/// The reason an escaped exception gives: `{exception, Type, What}` (or a ProcessExit reason).
Term reason_from_exception(std::exception_ptr e, bool* is_crash);

/// Owner only: a `{tag, _}` message that arrives from now on is dropped (a call that gave up).
void ignore_reply(Process* p, const Ref& tag);

/// Destroys every node of a chain.
void destroy_chain(detail::MsgNode* n) noexcept;

}  // namespace nodus::runtime

namespace nodus::runtime {
/// Installed by the distribution layer (which the runtime does not include). `deliver` sends a
/// node (a message, an ExitSignal or a Down) to a pid of another node and takes ownership of
/// it; the others tell the other node about links and monitors between a local and a remote
/// process.
struct RemoteHooks {
  void (*deliver)(const Pid& to, detail::MsgNode* n);
  void (*link)(const Pid& local, const Pid& remote);
  void (*unlink)(const Pid& local, const Pid& remote);
  void (*monitor)(const Pid& watcher, const Pid& target, const Ref& ref);
  void (*demonitor)(const Pid& watcher, const Pid& target, const Ref& ref);
  /// Sends what the calling worker thread batched for other nodes (see `tl_remote_pending`).
  void (*flush)();
  /// Sends what workers staged on the channels to other nodes (see `g_remote_staged`).
  void (*flush_staged)();
  /// An idle worker handles what arrived from other nodes, if the I/O thread is not at it;
  /// true if anything came.
  bool (*poll_inbound)();
  /// send_nosuspend to a pid of another node: false (and `n` freed) if its node is over its
  /// send budget; else sent as `deliver` sends it, except that it never holds the sender.
  bool (*deliver_nosuspend)(const Pid& to, detail::MsgNode* n);
  /// The last idle worker that polled inbound (g_inbound_pollers) stopped polling to sleep:
  /// the I/O thread watches the connections again.
  void (*pollers_gone)();
};
/// Idle workers spinning in the scheduler that call `RemoteHooks::poll_inbound` as they spin.
/// While there are any, the I/O thread leaves the connections' input to them (one wake-up less
/// per message: the sender's write no longer wakes a thread that sleeps on the socket).
extern std::atomic<int> g_inbound_pollers;
/// Set while records that processes sent on some worker wait on a channel for the records of
/// more processes to join them in one message; a worker that runs out of work, or has run
/// kStagedSlices more processes, calls `RemoteHooks::flush_staged`.
extern std::atomic<bool> g_remote_staged;
/// Set by the distribution layer while this worker thread holds records for other nodes that
/// it batches until the running process leaves the thread; the scheduler then calls
/// `RemoteHooks::flush` before the process can run anywhere else (so one process's messages
/// to a node keep their order).
extern thread_local __attribute__((tls_model("initial-exec"))) bool tl_remote_pending;
/// True on a scheduler worker thread.
bool on_worker() noexcept;
void set_remote_hooks(const RemoteHooks* h) noexcept;
const RemoteHooks* remote_hooks() noexcept;
void deliver_remote(const Pid& to, detail::MsgNode* n) noexcept;
/// Local or remote, by the pid.
void deliver_any(const Pid& to, detail::MsgNode* n) noexcept;

/// For the distribution layer, on frames from other nodes: a remote process links to / unlinks
/// from / monitors local `target`. False if `target` is not alive.
bool add_remote_link(const Pid& target, const Pid& remote);
void remove_remote_link(const Pid& target, const Pid& remote);
bool add_remote_watcher(const Pid& target, const Ref& ref, const Pid& remote_watcher);
/// Local `watcher` now monitors remote `target` under `ref` (false if watcher is gone).
bool add_monitoring(const Pid& watcher, const Ref& ref, const Pid& target);
/// Delivers to a local pid; frees `n` if the process is gone. False only if the process's
/// max_mailbox refused it.
bool deliver_local(const Pid& to, detail::MsgNode* n) noexcept;
/// Sends an exit signal (from links or exit/2).
void send_exit_signal(const Pid& to, const Pid& from, Term reason, bool from_link);
/// Drop one side of a monitor: the target's watcher entry / the watcher's monitoring entry.
bool remove_watcher(const Pid& target, const Ref& ref);  // true: it was there
/// False if `watcher` had no such monitor (any more).
bool remove_monitoring(const Pid& watcher, const Ref& ref);
/// `watcher`'s monitor `ref` now names `target`, in one step (false if it is gone: its Down
/// came meanwhile).
bool retarget_monitoring(const Pid& watcher, const Ref& ref, const Pid& target);
/// The Down of a local watcher's monitor `ref`, if the watcher still has it: its monitoring
/// entry is taken and the Down published under the watcher's lock, in one step. A demonitor
/// therefore either takes the entry first (and no Down comes) or finds the Down delivered.
/// False (and `n` dropped) if the monitor was gone.
bool deliver_down(const Pid& watcher, const Ref& ref, detail::MsgNode* n) noexcept;
/// Owner only: removes a delivered Down for `ref` from the mailbox, if there is one (one
/// published behind another sender's push still in flight too).
bool remove_down(Process* p, const Ref& ref);  // true: one was there
}  // namespace nodus::runtime
