// Seeing inside a running node (Erlang's observer, recon, erlang:statistics and
// erlang:system_monitor): processes with their mailboxes, counters of what happened, the
// schedulers, the peers, and the same for another node over the wire.
//
//   for (auto& p : nodus::observe::top(nodus::observe::SortBy::mailbox, 10)) ...
//   nodus::observe::Stats s = nodus::observe::stats();            // this node
//   auto r = nodus::observe::remote_stats(mb, atom("kate@localhost"));  // another one
//
// The counters are kept per thread (a relaxed load and store per event, summed when read), so
// reading them is cheap to the code being observed and costs the reader a walk over threads,
// processes and peers. docs/observability.md lists every field and metric.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nodus/atom.hpp"
#include "nodus/error.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::observe {

/// One live process (Erlang's process_info / the rows of `i()`).
struct ProcessInfo {
  Pid pid;
  std::optional<Atom> name;  ///< its registered name
  std::string body;          ///< the function its body runs, as the compiler names it ("" if unknown)
  /// Messages in its mailbox (including those a receive skipped). Exact for a process with one
  /// sender and whenever the mailbox was last found empty; under several concurrent senders
  /// it can be a few short until the owner next empties its mailbox.
  std::uint64_t mailbox = 0;
  std::uint64_t handled = 0;  ///< messages its receives took so far
  /// running, runnable, waiting, held (a send budget suspends it), or thread (a Mailbox owner)
  std::string status;
  std::vector<Pid> links;
  std::vector<Pid> monitors;      ///< processes it monitors
  std::vector<Pid> monitored_by;  ///< processes that monitor it
};

/// Every live process on this node, in pid order.
std::vector<ProcessInfo> processes();
/// One process (nullopt if `pid` is not alive here).
std::optional<ProcessInfo> process_info(const Pid& pid);

enum class SortBy { mailbox, handled };
/// The `n` processes with the longest mailboxes (or the most messages handled), largest first.
std::vector<ProcessInfo> top(SortBy by, std::size_t n);

struct SchedulerStats {
  unsigned id = 0;
  std::uint64_t runs = 0;   ///< process slices run since start
  std::int64_t busy_ns = 0; ///< time it was not idle since start
  std::int64_t up_ns = 0;   ///< time since start
  std::uint64_t queue = 0;  ///< processes waiting in its run queue
  /// busy_ns / up_ns (0..1) since start (over an interval: the differences of two reads)
  double utilization() const { return up_ns > 0 ? double(busy_ns) / double(up_ns) : 0.0; }
};

struct PeerStats {
  Atom node;
  bool up = false;
  std::uint64_t msgs_out = 0, bytes_out = 0;  ///< records (messages and control frames) and bytes sent
  std::uint64_t msgs_in = 0, bytes_in = 0;    ///< and received
  std::uint64_t queued_bytes = 0;             ///< waiting to be written now
  std::uint64_t busy_episodes = 0;            ///< times the send budget was passed
  std::int64_t busy_ns = 0;                   ///< time spent over the send budget (senders held)
  std::uint64_t connections_up = 0, connections_down = 0;
};

/// Processes that ended, by the class of their exit reason.
struct Exits {
  std::uint64_t normal = 0, shutdown = 0, killed = 0, exception = 0, noconnection = 0, other = 0;
  std::uint64_t total() const { return normal + shutdown + killed + exception + noconnection + other; }
};

struct Stats {
  Atom node;                      ///< this node's name (nonode@nohost without a Node)
  std::int64_t uptime_ms = 0;
  std::uint64_t processes = 0;    ///< alive now
  std::uint64_t spawned = 0;      ///< since the program started
  Exits exited;
  std::vector<SchedulerStats> schedulers;
  std::uint64_t run_queue = 0;    ///< processes runnable and not yet running, in all queues
  std::uint64_t timers = 0;       ///< timers pending (send_after, receive timeouts)
  std::uint64_t atoms = 0;        ///< atoms in the table
  std::uint64_t supervisor_restarts = 0, supervisor_give_ups = 0;
  std::vector<PeerStats> peers;   ///< every peer this node has had a connection to
  std::uint64_t connections_up = 0, connections_down = 0;
  std::uint64_t handshakes_refused = 0;  ///< connection attempts this node refused (cookie, key, name)
  std::uint64_t senders_held = 0;        ///< sends that waited for a send budget
  /// why connections went down, with how often (at most 32 kinds, each cut to 80 bytes)
  std::vector<std::pair<std::string, std::uint64_t>> down_reasons;
};

/// This node's counters now.
Stats stats();

/// Terms for the wire (and what the remote calls below return): a map with atom keys.
Term to_term(const Stats& s);
Term to_term(const ProcessInfo& p);
/// Back from those terms; nullopt if `t` is not one (missing fields read as 0 / empty).
std::optional<Stats> stats_from_term(const Term& t);
std::optional<ProcessInfo> process_info_from_term(const Term& t);

/// Another node's view, over the wire (erpc calls of the built-in functions "nodus.stats",
/// "nodus.processes" and "nodus.process_info", which every node answers). On a thread owning
/// `mb`, blocking; or from a process body.
Expected<Stats> remote_stats(Mailbox& mb, Atom node, std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// Its processes: all (n = 0) or the top `n` by `by`.
Expected<std::vector<ProcessInfo>> remote_processes(Mailbox& mb, Atom node, std::size_t n = 0,
                                                    SortBy by = SortBy::mailbox,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));
/// One process of another node: a pid that node gave us, or one with `node` set and creation 0
/// made from the form that node prints (<0.ID.SERIAL>). A local pid is looked up here.
Expected<std::optional<ProcessInfo>> remote_process_info(Mailbox& mb, const Pid& pid,
                                                         std::chrono::milliseconds timeout = std::chrono::seconds(5));
Async<Expected<Stats>> remote_stats(Atom node, std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// The counters in Prometheus's text format, as `--metrics` serves them at /metrics (empty in a
/// build without prometheus-cpp). docs/observability.md lists the metrics.
std::string prometheus_text();

/// erlang:system_monitor: `to` gets `{monitor, Pid, Event, Info}` messages (Terms):
/// - `long_schedule`: a process ran more than `long_schedule` without waiting
///   (Info: `[{timeout, Ms}]`, the time seen so far);
/// - `long_mailbox`: a mailbox passed `long_mailbox` messages (Info: `[{mailbox, N}]`; again
///   only after it fell below half of it);
/// - `busy_peer`: a send waited for a peer's send budget (Info: `[{node, Node}]`; Pid is the
///   sender when known, else the monitor's pid); at most one per peer per interval.
/// A zero threshold turns its event off. One monitor per node, as in Erlang: setting one
/// replaces the last; a null `to` turns it off. Sampled every `interval` by one thread.
struct SystemMonitor {
  Pid to;
  std::chrono::milliseconds long_schedule{0};
  std::uint64_t long_mailbox = 0;
  bool busy_peer = false;
  std::chrono::milliseconds interval{20};
};
/// Sets the monitor; returns the previous one.
SystemMonitor system_monitor(const SystemMonitor& m);
/// The current monitor (`to` null if none).
SystemMonitor system_monitor();

}  // namespace nodus::observe

NODUS_API_END
