// observe: the whole Stats, its Terms, and the built-in functions a remote node calls.
#include <algorithm>

#include "builtins.hpp"
#include "runtime/observe_parts.hpp"
#include "nodus/erpc.hpp"

namespace nodus::observe {

Stats stats() {
  Stats s;
  parts::fill_runtime(s);
  parts::fill_dist(s);
  return s;
}

namespace {
Term key(const char* k) { return Term(atom(k)); }
Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(std::min<std::uint64_t>(v, INT64_MAX))); }

const Term* field(const Term& m, const char* k) { return m.is_map() ? m.find(key(k)) : nullptr; }
std::uint64_t num(const Term& m, const char* k) {
  const Term* v = field(m, k);
  return v && v->is_integer() && v->as_int() > 0 ? static_cast<std::uint64_t>(v->as_int()) : 0;
}
std::int64_t snum(const Term& m, const char* k) {
  const Term* v = field(m, k);
  return v && v->is_integer() ? v->as_int() : 0;
}
std::vector<Pid> pids(const Term& m, const char* k) {
  std::vector<Pid> out;
  if (const Term* v = field(m, k); v && v->is_list()) {
    for (const Term& e : v->elems()) {
      if (e.is_pid()) out.push_back(e.as_pid());
    }
  }
  return out;
}
Term pid_list(const std::vector<Pid>& v) {
  std::vector<Term> out;
  out.reserve(v.size());
  for (const Pid& p : v) out.emplace_back(p);
  return Term::list(std::move(out));
}
}  // namespace

Term to_term(const ProcessInfo& p) {
  return Term::map({
      {key("pid"), p.pid},
      {key("name"), p.name ? Term(*p.name) : Term(atom("undefined"))},
      {key("body"), p.body},
      {key("mailbox"), u(p.mailbox)},
      {key("handled"), u(p.handled)},
      {key("status"), atom(p.status.empty() ? "undefined" : p.status)},
      {key("links"), pid_list(p.links)},
      {key("monitors"), pid_list(p.monitors)},
      {key("monitored_by"), pid_list(p.monitored_by)},
  });
}

std::optional<ProcessInfo> process_info_from_term(const Term& t) {
  const Term* pid = field(t, "pid");
  if (pid == nullptr || !pid->is_pid()) return std::nullopt;
  ProcessInfo p;
  p.pid = pid->as_pid();
  if (const Term* n = field(t, "name"); n && n->is_atom() && n->as_atom() != atom("undefined")) p.name = n->as_atom();
  if (const Term* b = field(t, "body"); b && b->is_binary()) p.body = b->as_binary();
  if (const Term* s = field(t, "status"); s && s->is_atom()) p.status = std::string(s->as_atom().name());
  p.mailbox = num(t, "mailbox");
  p.handled = num(t, "handled");
  p.links = pids(t, "links");
  p.monitors = pids(t, "monitors");
  p.monitored_by = pids(t, "monitored_by");
  return p;
}

Term to_term(const Stats& s) {
  std::vector<Term> scheds, peers, reasons;
  for (const auto& w : s.schedulers) {
    scheds.push_back(Term::map({{key("id"), u(w.id)},
                                {key("runs"), u(w.runs)},
                                {key("busy_ns"), w.busy_ns},
                                {key("up_ns"), w.up_ns},
                                {key("queue"), u(w.queue)}}));
  }
  for (const auto& p : s.peers) {
    peers.push_back(Term::map({{key("node"), p.node},
                               {key("up"), p.up},
                               {key("msgs_out"), u(p.msgs_out)},
                               {key("bytes_out"), u(p.bytes_out)},
                               {key("msgs_in"), u(p.msgs_in)},
                               {key("bytes_in"), u(p.bytes_in)},
                               {key("queued_bytes"), u(p.queued_bytes)},
                               {key("busy_episodes"), u(p.busy_episodes)},
                               {key("busy_ns"), p.busy_ns},
                               {key("connections_up"), u(p.connections_up)},
                               {key("connections_down"), u(p.connections_down)}}));
  }
  for (const auto& [why, n] : s.down_reasons) reasons.push_back(tuple(why, u(n)));
  return Term::map({
      {key("node"), s.node},
      {key("uptime_ms"), s.uptime_ms},
      {key("processes"), u(s.processes)},
      {key("spawned"), u(s.spawned)},
      {key("exited"), Term::map({{key("normal"), u(s.exited.normal)},
                                 {key("shutdown"), u(s.exited.shutdown)},
                                 {key("killed"), u(s.exited.killed)},
                                 {key("exception"), u(s.exited.exception)},
                                 {key("noconnection"), u(s.exited.noconnection)},
                                 {key("other"), u(s.exited.other)}})},
      {key("schedulers"), Term::list(std::move(scheds))},
      {key("run_queue"), u(s.run_queue)},
      {key("timers"), u(s.timers)},
      {key("atoms"), u(s.atoms)},
      {key("supervisor_restarts"), u(s.supervisor_restarts)},
      {key("supervisor_give_ups"), u(s.supervisor_give_ups)},
      {key("peers"), Term::list(std::move(peers))},
      {key("connections_up"), u(s.connections_up)},
      {key("connections_down"), u(s.connections_down)},
      {key("handshakes_refused"), u(s.handshakes_refused)},
      {key("senders_held"), u(s.senders_held)},
      {key("down_reasons"), Term::list(std::move(reasons))},
  });
}

std::optional<Stats> stats_from_term(const Term& t) {
  const Term* node = field(t, "node");
  if (node == nullptr || !node->is_atom()) return std::nullopt;
  Stats s;
  s.node = node->as_atom();
  s.uptime_ms = snum(t, "uptime_ms");
  s.processes = num(t, "processes");
  s.spawned = num(t, "spawned");
  if (const Term* e = field(t, "exited")) {
    s.exited = {num(*e, "normal"),    num(*e, "shutdown"),     num(*e, "killed"),
                num(*e, "exception"), num(*e, "noconnection"), num(*e, "other")};
  }
  if (const Term* l = field(t, "schedulers"); l && l->is_list()) {
    for (const Term& w : l->elems()) {
      s.schedulers.push_back({static_cast<unsigned>(num(w, "id")), num(w, "runs"), snum(w, "busy_ns"),
                              snum(w, "up_ns"), num(w, "queue")});
    }
  }
  s.run_queue = num(t, "run_queue");
  s.timers = num(t, "timers");
  s.atoms = num(t, "atoms");
  s.supervisor_restarts = num(t, "supervisor_restarts");
  s.supervisor_give_ups = num(t, "supervisor_give_ups");
  if (const Term* l = field(t, "peers"); l && l->is_list()) {
    for (const Term& p : l->elems()) {
      const Term* n = field(p, "node");
      if (n == nullptr || !n->is_atom()) continue;
      PeerStats ps;
      ps.node = n->as_atom();
      const Term* up = field(p, "up");
      ps.up = up && up->is_atom("true");
      ps.msgs_out = num(p, "msgs_out");
      ps.bytes_out = num(p, "bytes_out");
      ps.msgs_in = num(p, "msgs_in");
      ps.bytes_in = num(p, "bytes_in");
      ps.queued_bytes = num(p, "queued_bytes");
      ps.busy_episodes = num(p, "busy_episodes");
      ps.busy_ns = snum(p, "busy_ns");
      ps.connections_up = num(p, "connections_up");
      ps.connections_down = num(p, "connections_down");
      s.peers.push_back(ps);
    }
  }
  s.connections_up = num(t, "connections_up");
  s.connections_down = num(t, "connections_down");
  s.handshakes_refused = num(t, "handshakes_refused");
  s.senders_held = num(t, "senders_held");
  if (const Term* l = field(t, "down_reasons"); l && l->is_list()) {
    for (const Term& r : l->elems()) {
      if (r.is_tuple() && r.size() == 2 && r[0].is_binary() && r[1].is_integer()) {
        s.down_reasons.emplace_back(r[0].as_binary(), static_cast<std::uint64_t>(std::max<std::int64_t>(0, r[1].as_int())));
      }
    }
  }
  return s;
}

// ------------------------------------------------------------------ over the wire

namespace {
// A reply holds at most this many processes (a node with a million processes answers
// "nodus.processes" with the top ones, not with all of them).
constexpr std::size_t kMaxListed = 10'000;

Term list_of(const std::vector<ProcessInfo>& v) {
  std::vector<Term> out;
  out.reserve(v.size());
  for (const auto& p : v) out.push_back(to_term(p));
  return Term::list(std::move(out));
}

Async<Term> builtin_stats(Term) { co_return to_term(stats()); }
// args: [] (all, at most kMaxListed) or [N, mailbox | handled]
Async<Term> builtin_processes(Term args) {
  std::size_t n = 0;
  SortBy by = SortBy::mailbox;
  if (args.is_list() && !args.elems().empty() && args[0].is_integer() && args[0].as_int() > 0) {
    n = static_cast<std::size_t>(args[0].as_int());
    if (args.size() > 1 && args[1].is_atom("handled")) by = SortBy::handled;
  }
  if (n == 0) {
    auto all = processes();
    if (all.size() > kMaxListed) all = top(by, kMaxListed);
    co_return list_of(all);
  }
  co_return list_of(top(by, std::min(n, kMaxListed)));
}
// args: [Pid], or [Id, Serial] (the pid <0.Id.Serial> this node prints); undefined if it is
// not alive
Async<Term> builtin_process_info(Term args) {
  if (!args.is_list() || args.elems().empty()) co_return Term(atom("badarg"));
  Pid pid;
  if (args.size() == 2 && args[0].is_integer() && args[1].is_integer()) {
    const std::int64_t id = args[0].as_int(), serial = args[1].as_int();
    if (id < 0 || id > UINT32_MAX || serial < 0 || serial >= UINT32_MAX) co_return Term(atom("badarg"));
    pid = Pid{Atom(), 0, static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(serial + 1)};
  } else if (args[0].is_pid()) {
    pid = args[0].as_pid();
  } else {
    co_return Term(atom("badarg"));
  }
  auto p = process_info(pid);
  co_return p ? to_term(*p) : Term(atom("undefined"));
}

Failure bad_reply(Atom node, const Term& t) {
  return {Errc::exception, tuple(atom("badreply"), t), "unexpected reply from " + std::string(node.name()) + ": " + t.to_string(200)};
}

Expected<std::vector<ProcessInfo>> processes_of(Atom node, const Expected<Term>& r) {
  if (!r) return r.error();
  if (!r.value().is_list()) return bad_reply(node, r.value());
  std::vector<ProcessInfo> out;
  for (const Term& t : r.value().elems()) {
    if (auto p = process_info_from_term(t)) out.push_back(std::move(*p));
  }
  return out;
}
Expected<Stats> stats_of(Atom node, const Expected<Term>& r) {
  if (!r) return r.error();
  auto s = stats_from_term(r.value());
  if (!s) return bad_reply(node, r.value());
  return std::move(*s);
}
}  // namespace

namespace parts {
std::optional<TaskFunction> builtin(std::string_view name) {
  if (name == "nodus.stats") return TaskFunction(builtin_stats);
  if (name == "nodus.processes") return TaskFunction(builtin_processes);
  if (name == "nodus.process_info") return TaskFunction(builtin_process_info);
  return std::nullopt;
}
}  // namespace parts

Expected<Stats> remote_stats(Mailbox& mb, Atom node, std::chrono::milliseconds timeout) {
  return stats_of(node, erpc::call(mb, node, "nodus.stats", Term::list({}), timeout));
}

Async<Expected<Stats>> remote_stats(Atom node, std::chrono::milliseconds timeout) {
  co_return stats_of(node, co_await erpc::call(node, "nodus.stats", Term::list({}), timeout));
}

Expected<std::vector<ProcessInfo>> remote_processes(Mailbox& mb, Atom node, std::size_t n, SortBy by,
                                                    std::chrono::milliseconds timeout) {
  Term args = n == 0 ? Term::list({}) : list(static_cast<std::int64_t>(n), atom(by == SortBy::handled ? "handled" : "mailbox"));
  return processes_of(node, erpc::call(mb, node, "nodus.processes", std::move(args), timeout));
}

Expected<std::optional<ProcessInfo>> remote_process_info(Mailbox& mb, const Pid& pid, std::chrono::milliseconds timeout) {
  if (pid.is_local()) return process_info(pid);
  const Atom node = pid.node;
  // creation 0: the pid as its node prints it (<0.Id.Serial>), not one its node gave us
  Term args = pid.creation == 0 ? list(static_cast<std::int64_t>(pid.id), static_cast<std::int64_t>(pid.serial == 0 ? 0 : pid.serial - 1))
                                : list(pid);
  Expected<Term> r = erpc::call(mb, node, "nodus.process_info", std::move(args), timeout);
  if (!r) return r.error();
  if (r.value().is_atom("undefined")) return std::optional<ProcessInfo>();
  auto p = process_info_from_term(r.value());
  if (!p) return bad_reply(node, r.value());
  return std::optional<ProcessInfo>(std::move(*p));
}

}  // namespace nodus::observe
