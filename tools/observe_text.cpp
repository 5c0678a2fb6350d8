// Text forms of the observe views.
#include "observe_text.hpp"

#include <fmt/format.h>

namespace nodus::tools {

std::string own_pid(const Pid& p) { return fmt::format("<0.{}.{}>", p.id, p.serial == 0 ? 0 : p.serial - 1); }

std::string cut(const std::string& s, std::size_t max) {
  if (s.size() <= max) return s;
  return max <= 3 ? s.substr(0, max) : s.substr(0, max - 3) + "...";
}

std::string human(double v) {
  if (v < 10'000) return fmt::format("{:.0f}", v);
  if (v < 10'000'000) return fmt::format("{:.1f}k", v / 1e3);
  if (v < 10'000'000'000) return fmt::format("{:.1f}M", v / 1e6);
  return fmt::format("{:.1f}G", v / 1e9);
}

namespace {
// Pids of the process's own node in that node's form; others with their node's name.
std::string pids(const std::vector<Pid>& v, Atom owner) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    const bool own = owner == Atom() ? v[i].is_local() : v[i].node == owner;
    out += own ? own_pid(v[i]) : own_pid(v[i]) + "@" + std::string(v[i].is_local() ? node_name().name() : v[i].node.name());
  }
  return out + "]";
}
}  // namespace

std::string format_processes(const std::vector<observe::ProcessInfo>& ps) {
  std::string out = fmt::format("{:<14} {:<20} {:<36} {:>9} {:>10} {:<8} {:>5} {:>5}\n", "Pid", "Name", "Body",
                                "Mailbox", "Handled", "Status", "Links", "Mons");
  for (const auto& p : ps) {
    out += fmt::format("{:<14} {:<20} {:<36} {:>9} {:>10} {:<8} {:>5} {:>5}\n", own_pid(p.pid),
                       p.name ? cut(std::string(p.name->name()), 20) : "-", cut(p.body.empty() ? "-" : p.body, 36),
                       p.mailbox, p.handled, p.status, p.links.size(), p.monitors.size());
  }
  out += fmt::format("{} processes\n", ps.size());
  return out;
}

std::string format_process(const observe::ProcessInfo& p) {
  std::string out;
  out += fmt::format("pid:          {}\n", own_pid(p.pid));
  out += fmt::format("name:         {}\n", p.name ? std::string(p.name->name()) : "-");
  out += fmt::format("body:         {}\n", p.body.empty() ? "-" : cut(p.body, 200));
  out += fmt::format("status:       {}\n", p.status);
  out += fmt::format("mailbox:      {}\n", p.mailbox);
  out += fmt::format("handled:      {}\n", p.handled);
  out += fmt::format("links:        {}\n", pids(p.links, p.pid.is_local() ? Atom() : p.pid.node));
  out += fmt::format("monitors:     {}\n", pids(p.monitors, p.pid.is_local() ? Atom() : p.pid.node));
  out += fmt::format("monitored_by: {}\n", pids(p.monitored_by, p.pid.is_local() ? Atom() : p.pid.node));
  return out;
}

std::string format_stats(const observe::Stats& s) {
  std::string out;
  out += fmt::format("node:                {}\n", s.node.name());
  out += fmt::format("uptime_ms:           {}\n", s.uptime_ms);
  out += fmt::format("processes:           {}\n", s.processes);
  out += fmt::format("spawned:             {}\n", s.spawned);
  out += fmt::format("exited:              {} (normal {}, shutdown {}, killed {}, exception {}, noconnection {}, other {})\n",
                     s.exited.total(), s.exited.normal, s.exited.shutdown, s.exited.killed, s.exited.exception,
                     s.exited.noconnection, s.exited.other);
  out += fmt::format("supervisor_restarts: {}\n", s.supervisor_restarts);
  out += fmt::format("supervisor_give_ups: {}\n", s.supervisor_give_ups);
  out += fmt::format("run_queue:           {}\n", s.run_queue);
  out += fmt::format("timers:              {}\n", s.timers);
  out += fmt::format("atoms:               {}\n", s.atoms);
  out += fmt::format("connections_up:      {}\n", s.connections_up);
  out += fmt::format("connections_down:    {}\n", s.connections_down);
  out += fmt::format("handshakes_refused:  {}\n", s.handshakes_refused);
  out += fmt::format("senders_held:        {}\n", s.senders_held);
  for (const auto& [why, n] : s.down_reasons) out += fmt::format("down_reason:         {} x {}\n", n, cut(why, 80));
  for (const auto& w : s.schedulers) {
    out += fmt::format("scheduler {:<3}        utilization {:.1f}%, {} runs, queue {}\n", w.id, 100.0 * w.utilization(),
                       w.runs, w.queue);
  }
  return out;
}

std::string format_peers(const observe::Stats& s) {
  std::string out = fmt::format("{:<28} {:<5} {:>10} {:>12} {:>10} {:>12} {:>10} {:>8} {:>9}\n", "Node", "State",
                                "Msgs out", "Bytes out", "Msgs in", "Bytes in", "Queued", "Busy ms", "Up/Down");
  for (const auto& p : s.peers) {
    out += fmt::format("{:<28} {:<5} {:>10} {:>12} {:>10} {:>12} {:>10} {:>8} {:>9}\n", cut(std::string(p.node.name()), 28),
                       p.up ? "up" : "down", p.msgs_out, p.bytes_out, p.msgs_in, p.bytes_in, p.queued_bytes,
                       p.busy_ns / 1'000'000, fmt::format("{}/{}", p.connections_up, p.connections_down));
  }
  out += fmt::format("{} peers\n", s.peers.size());
  return out;
}

}  // namespace nodus::tools
