// `nodus top NODE`: a live view of one node (like observer_cli): its busiest processes, its
// peers with throughput and queues, its schedulers, refreshed every second over the wire.
#include "top.hpp"

#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "nodus/nodus.hpp"
#include "observe_text.hpp"

namespace nodus::tools {
namespace {
using namespace std::chrono_literals;
using observe::SortBy;

// The terminal in non-canonical mode without echo while top runs (keys act at once).
class RawTerminal {
 public:
  RawTerminal() {
    if (::isatty(0) && ::tcgetattr(0, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      on_ = ::tcsetattr(0, TCSANOW, &raw) == 0;
    }
  }
  ~RawTerminal() {
    if (on_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool on_ = false;
};

struct Sample {
  observe::Stats stats;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> handled;  // by (id, serial)
  std::chrono::steady_clock::time_point at;
};

double per_second(std::uint64_t now, std::uint64_t before, double seconds) {
  return seconds > 0 && now >= before ? double(now - before) / seconds : 0.0;
}

std::string frame(Atom target, const Sample& now, const Sample* before, const std::vector<observe::ProcessInfo>& procs,
                  SortBy by, int rows) {
  const observe::Stats& s = now.stats;
  const double dt = before ? std::chrono::duration<double>(now.at - before->at).count() : 0.0;
  std::string out;
  out += fmt::format("nodus top {}   uptime {:.1f} s   processes {}   run queue {}   timers {}   atoms {}\n",
                     target.name(), double(s.uptime_ms) / 1e3, s.processes, s.run_queue, s.timers, s.atoms);
  out += fmt::format("spawned {}   exited {} (exception {}, killed {})   restarts {}   conns up {} down {}   refused {}\n",
                     s.spawned, s.exited.total(), s.exited.exception, s.exited.killed, s.supervisor_restarts,
                     s.connections_up, s.connections_down, s.handshakes_refused);
  out += "schedulers:";
  for (std::size_t i = 0; i < s.schedulers.size(); ++i) {
    const auto& w = s.schedulers[i];
    double util = w.utilization();
    if (before && i < before->stats.schedulers.size()) {  // over the last refresh
      const auto& b = before->stats.schedulers[i];
      const std::int64_t up = w.up_ns - b.up_ns;
      util = up > 0 ? double(w.busy_ns - b.busy_ns) / double(up) : 0.0;
    }
    out += fmt::format("  {}: {:5.1f}% q {}", w.id, 100.0 * std::clamp(util, 0.0, 1.0), w.queue);
  }
  out += "\n\n";
  out += fmt::format("processes by {} (m: mailbox, h: handled, q: quit)\n", by == SortBy::mailbox ? "mailbox" : "handled");
  out += fmt::format("{:<14} {:<20} {:<30} {:>9} {:>10} {:>9} {:<8}\n", "Pid", "Name", "Body", "Mailbox", "Handled",
                     "Msgs/s", "Status");
  int shown = 0;
  for (const auto& p : procs) {
    if (shown++ >= rows) break;
    double rate = 0;
    if (before) {
      if (auto it = before->handled.find({p.pid.id, p.pid.serial}); it != before->handled.end()) {
        rate = per_second(p.handled, it->second, dt);
      }
    }
    out += fmt::format("{:<14} {:<20} {:<30} {:>9} {:>10} {:>9} {:<8}\n", own_pid(p.pid),
                       p.name ? cut(std::string(p.name->name()), 20) : "-", cut(p.body.empty() ? "-" : p.body, 30),
                       p.mailbox, p.handled, human(rate), p.status);
  }
  out += "\n";
  out += fmt::format("{:<28} {:<5} {:>10} {:>11} {:>10} {:>11} {:>10} {:>8}\n", "Peer", "State", "Msgs/s out",
                     "Bytes/s out", "Msgs/s in", "Bytes/s in", "Queued", "Busy ms");
  for (const auto& p : s.peers) {
    const observe::PeerStats* b = nullptr;
    if (before) {
      for (const auto& q : before->stats.peers) {
        if (q.node == p.node) b = &q;
      }
    }
    out += fmt::format("{:<28} {:<5} {:>10} {:>11} {:>10} {:>11} {:>10} {:>8}\n", cut(std::string(p.node.name()), 28),
                       p.up ? "up" : "down", human(b ? per_second(p.msgs_out, b->msgs_out, dt) : 0),
                       human(b ? per_second(p.bytes_out, b->bytes_out, dt) : 0),
                       human(b ? per_second(p.msgs_in, b->msgs_in, dt) : 0),
                       human(b ? per_second(p.bytes_in, b->bytes_in, dt) : 0), p.queued_bytes, p.busy_ns / 1'000'000);
  }
  return out;
}

// A key pressed before `deadline` ('\0' if none).
char wait_key(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return '\0';
    pollfd p{0, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r <= 0) continue;
    char c = 0;
    const ssize_t n = ::read(0, &c, 1);
    if (n == 1) return c;
    if (n == 0) return 'q';  // end of input
  }
}
}  // namespace

int run_top(const NodeOptions& opts, const std::string& target_name, const TopOptions& t) {
  if (std::getenv("NODUS_LOG") == nullptr) logger().set_level(spdlog::level::warn);
  Runtime rt;
  try {
    Node node(opts);
    Mailbox mb;
    const Atom target(target_name);
    RawTerminal term;
    SortBy by = t.sort_handled ? SortBy::handled : SortBy::mailbox;
    std::optional<Sample> last;
    for (int n = 0;; ++n) {
      const auto began = std::chrono::steady_clock::now();
      auto st = observe::remote_stats(mb, target);
      if (!st) {
        std::fprintf(stderr, "error: %s\n", st.error().text.c_str());
        return 1;
      }
      auto ps = observe::remote_processes(mb, target, static_cast<std::size_t>(t.rows), by);
      if (!ps) {
        std::fprintf(stderr, "error: %s\n", ps.error().text.c_str());
        return 1;
      }
      Sample now{std::move(st.value()), {}, std::chrono::steady_clock::now()};
      for (const auto& p : ps.value()) now.handled[{p.pid.id, p.pid.serial}] = p.handled;
      const std::string text = frame(target, now, last ? &*last : nullptr, ps.value(), by, t.rows);
      if (t.once) {
        std::fputs(text.c_str(), stdout);
        return 0;
      }
      std::fputs("\x1b[H\x1b[2J", stdout);  // home, clear
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
      last = std::move(now);
      const auto next = began + std::chrono::milliseconds(t.interval_ms);
      for (;;) {
        const char k = wait_key(next);
        if (k == '\0') break;
        if (k == 'q' || k == 'Q') return 0;
        if (k == 'm' || k == 'M') by = SortBy::mailbox;
        if (k == 'h' || k == 'H') by = SortBy::handled;
        if (k == 'm' || k == 'M' || k == 'h' || k == 'H') break;  // redraw at once
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace nodus::tools
