// observe: the runtime's part (processes, counters, schedulers) and the system monitor.
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "observe_parts.hpp"
#include "context.hpp"
#include "counters.hpp"
#include "nodus/process.hpp"

namespace nodus::observe {
using runtime::Process;
using runtime::State;

namespace {
std::uint64_t mailbox_length(const Process* p) {
  if (p->max_messages.load(std::memory_order_relaxed) != 0) {  // counted exactly for the limit
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, p->mailbox_len.load(std::memory_order_relaxed)));
  }
  const auto in = static_cast<std::int64_t>(p->pushed.load(std::memory_order_relaxed));
  const auto out = static_cast<std::int64_t>(p->handled.load(std::memory_order_relaxed)) +
                   p->dropped.load(std::memory_order_relaxed);
  return in > out ? static_cast<std::uint64_t>(in - out) : 0;
}

// The body's function from the compiler's signature, without its return type, namespaces and
// nodus:: prefixes: "nodus::Proc app::{anonymous}::worker(nodus::Pid, int)" -> "worker(Pid, int)".
std::string body_name(const char* sig) {
  if (sig == nullptr) return {};
  std::string s(sig);
  for (std::string_view ret : {"nodus::Proc ", "Proc "}) {
    if (s.starts_with(ret)) {
      s = s.substr(ret.size());
      break;
    }
  }
  const std::size_t paren = s.find('(');
  if (paren != std::string::npos) {
    if (const std::size_t q = s.rfind("::", paren); q != std::string::npos) s = s.substr(q + 2);
  }
  for (std::size_t at; (at = s.find("nodus::")) != std::string::npos;) s.erase(at, 7);
  return s;
}

// What is known of block `p` if it is still the live process it was when listed.
std::optional<ProcessInfo> info_of(Process* p, const std::vector<Process*>& running) {
  ProcessInfo i;
  {
    std::lock_guard lock(p->lock);
    if (!p->alive) return std::nullopt;
    i.pid = p->pid();
    if (p->extras) {
      i.name = p->extras->name;
      i.links = p->extras->links;
      for (const auto& [ref, target] : p->extras->monitoring) i.monitors.push_back(target);
      for (const auto& [ref, watcher] : p->extras->watchers) i.monitored_by.push_back(watcher);
    }
  }
  i.body = body_name(p->body.load(std::memory_order_relaxed));
  i.mailbox = mailbox_length(p);
  i.handled = p->handled.load(std::memory_order_relaxed);
  if (p->is_thread.load(std::memory_order_relaxed)) {
    i.status = "thread";
  } else if (std::find(running.begin(), running.end(), p) != running.end()) {
    i.status = "running";
  } else {
    switch (p->state.load(std::memory_order_relaxed)) {
      case State::queued: i.status = "runnable"; break;
      case State::running: i.status = "running"; break;
      case State::waiting: i.status = "waiting"; break;
      case State::held: i.status = "held"; break;
      case State::exited: return std::nullopt;
    }
  }
  return i;
}

std::vector<Process*> running_now(runtime::Context& c) {
  std::vector<Process*> out;
  for (const auto& w : c.sched.worker_stats()) {
    if (w.running) out.push_back(w.running);
  }
  return out;
}
}  // namespace

std::vector<ProcessInfo> processes() {
  runtime::Context& c = runtime::ctx();
  const auto running = running_now(c);
  std::vector<ProcessInfo> out;
  for (Process* p : c.table.snapshot()) {
    if (auto i = info_of(p, running)) out.push_back(std::move(*i));
  }
  std::sort(out.begin(), out.end(), [](const ProcessInfo& a, const ProcessInfo& b) { return a.pid < b.pid; });
  return out;
}

std::optional<ProcessInfo> process_info(const Pid& pid) {
  if (!pid.is_local()) return std::nullopt;
  runtime::Context& c = runtime::ctx();
  Process* p = c.table.lookup(pid);
  if (p == nullptr) return std::nullopt;
  auto i = info_of(p, running_now(c));
  if (!i || runtime::ident_of(i->pid) != runtime::ident_of(pid)) return std::nullopt;  // recycled meanwhile
  return i;
}

std::vector<ProcessInfo> top(SortBy by, std::size_t n) {
  std::vector<ProcessInfo> all = processes();
  auto key = [by](const ProcessInfo& p) { return by == SortBy::mailbox ? p.mailbox : p.handled; };
  const std::size_t k = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [&](const ProcessInfo& a, const ProcessInfo& b) {
                      return key(a) != key(b) ? key(a) > key(b) : a.pid < b.pid;
                    });
  all.resize(k);
  return all;
}

namespace parts {
using runtime::Count;

void fill_runtime(Stats& s) {
  runtime::Context& c = runtime::ctx();
  const auto v = runtime::sum_counters();
  auto at = [&](Count k) { return v[static_cast<unsigned>(k)]; };
  s.processes = c.table.count();
  s.spawned = at(Count::spawned);
  s.exited = {at(Count::exit_normal),    at(Count::exit_shutdown),     at(Count::exit_killed),
              at(Count::exit_exception), at(Count::exit_noconnection), at(Count::exit_other)};
  s.supervisor_restarts = at(Count::supervisor_restarts);
  s.supervisor_give_ups = at(Count::supervisor_give_ups);
  s.run_queue = c.sched.shared_queue();
  unsigned id = 0;
  for (const auto& w : c.sched.worker_stats()) {
    s.schedulers.push_back({id++, w.runs, w.busy_ns, w.up_ns, w.queue});
    s.run_queue += w.queue;
  }
  if (!s.schedulers.empty()) s.uptime_ms = s.schedulers.front().up_ns / 1'000'000;
  s.timers = c.timers.pending();
  s.atoms = detail::atom_count();
}

void count_supervisor_restart() noexcept { runtime::bump(Count::supervisor_restarts); }
void count_supervisor_give_up() noexcept { runtime::bump(Count::supervisor_give_ups); }
}  // namespace parts

// ------------------------------------------------------------------------ the system monitor

namespace {
struct Monitor {
  std::mutex mu;
  std::condition_variable cv;
  SystemMonitor config;
  std::thread thread;
  bool stop = false;
  // busy_peer events noted since the last sample: node -> sender (null if not a process)
  std::map<std::uint32_t, Pid> busy;  // by the node's atom id
};
Monitor& monitor() {
  static Monitor* m = new Monitor;  // never destroyed: a node's threads may note events late
  return *m;
}
std::atomic<bool> g_busy_wanted{false};

Term event(const Pid& who, const char* what, Term info) {
  return tuple(atom("monitor"), who, atom(what), Term::list({std::move(info)}));
}

void sampler() {
  runtime::mark_internal_thread();  // its sends never wait
  Monitor& m = monitor();
  struct Seen {
    Process* proc = nullptr;
    std::uint64_t runs = 0;
    Clock::time_point since;
    bool told = false;
  };
  std::vector<Seen> seen;
  std::set<std::pair<std::uint32_t, std::uint32_t>> long_boxes;  // (id, serial) told, not yet below half
  std::unique_lock lock(m.mu);
  while (!m.stop) {
    const SystemMonitor cfg = m.config;
    auto busy = std::move(m.busy);
    m.busy.clear();
    lock.unlock();
    std::vector<Term> out;
    runtime::Context* c = runtime::ctx_if();
    if (c != nullptr && !cfg.to.is_null()) {
      const auto now = Clock::now();
      if (cfg.long_schedule.count() > 0) {
        const auto workers = c->sched.worker_stats();
        seen.resize(workers.size());
        for (std::size_t i = 0; i < workers.size(); ++i) {
          Seen& s = seen[i];
          if (workers[i].running == nullptr || workers[i].running != s.proc || workers[i].runs != s.runs) {
            s = {workers[i].running, workers[i].runs, now, false};
            continue;
          }
          const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.since);
          if (!s.told && ran >= cfg.long_schedule) {
            s.told = true;
            const Pid pid = s.proc->pid();  // (running: its identity holds)
            out.push_back(event(pid, "long_schedule", tuple(atom("timeout"), ran.count())));
          }
        }
      }
      if (cfg.long_mailbox > 0) {
        for (Process* p : c->table.snapshot()) {
          const std::uint64_t len = mailbox_length(p);
          const Pid pid = p->pid();
          const auto key = std::make_pair(pid.id, pid.serial);
          if (len >= cfg.long_mailbox) {
            if (long_boxes.insert(key).second) out.push_back(event(pid, "long_mailbox", tuple(atom("mailbox"), len)));
          } else if (len < cfg.long_mailbox / 2) {
            long_boxes.erase(key);
          }
        }
      }
      if (cfg.busy_peer) {
        for (const auto& [id, who] : busy) {
          out.push_back(event(who.is_null() ? cfg.to : who, "busy_peer", tuple(atom("node"), Atom::from_id(id))));
        }
      }
      for (Term& t : out) send(cfg.to, std::move(t));
    }
    lock.lock();
    if (m.stop) break;
    m.cv.wait_for(lock, cfg.interval.count() > 0 ? cfg.interval : std::chrono::milliseconds(20));
  }
}

void stop_sampler() {
  Monitor& m = monitor();
  std::thread t;
  {
    std::lock_guard lock(m.mu);
    m.stop = true;
    m.config = {};
    g_busy_wanted.store(false, std::memory_order_relaxed);
    t = std::move(m.thread);
  }
  m.cv.notify_all();
  if (t.joinable()) t.join();
}
}  // namespace

SystemMonitor system_monitor(const SystemMonitor& cfg) {
  (void)runtime::ctx();  // (throws without a Runtime)
  Monitor& m = monitor();
  SystemMonitor old;
  bool start = false;
  {
    std::lock_guard lock(m.mu);
    old = m.config;
    m.config = cfg;
    g_busy_wanted.store(!cfg.to.is_null() && cfg.busy_peer, std::memory_order_relaxed);
    if (!cfg.to.is_null() && !m.thread.joinable()) {
      m.stop = false;
      m.thread = std::thread(sampler);
      start = true;
    }
  }
  m.cv.notify_all();
  if (start) runtime::on_stop(stop_sampler);
  return old;
}

SystemMonitor system_monitor() {
  Monitor& m = monitor();
  std::lock_guard lock(m.mu);
  return m.config;
}

namespace parts {
void note_busy_peer(Atom node) noexcept {
  if (!g_busy_wanted.load(std::memory_order_relaxed)) return;
  Monitor& m = monitor();
  Process* p = runtime::current();
  std::lock_guard lock(m.mu);
  if (m.busy.size() >= 64 && !m.busy.count(node.id())) return;  // bounded between samples
  m.busy.emplace(node.id(), p ? p->pid() : Pid{});
}
}  // namespace parts

}  // namespace nodus::observe
