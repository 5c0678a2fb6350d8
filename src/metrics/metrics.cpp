// The metrics endpoint and the text form of the counters (docs/observability.md lists them).
#include "metrics.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "nodus/log.hpp"
#include "nodus/observe.hpp"

#ifdef NODUS_HAVE_PROMETHEUS
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#endif

namespace nodus {

#ifdef NODUS_HAVE_PROMETHEUS
namespace {
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Families {
  std::vector<MetricFamily> out;
  std::string node;

  MetricFamily& family(const char* name, const char* help, MetricType type) {
    out.push_back(MetricFamily{name, help, type, {}});
    return out.back();
  }
  void add(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels = {}) {
    ClientMetric m;
    m.label.push_back({"node", node});
    for (auto& l : labels) m.label.push_back(std::move(l));
    if (f.type == MetricType::Counter) {
      m.counter.value = v;
    } else {
      m.gauge.value = v;
    }
    f.metric.push_back(std::move(m));
  }
  void one(const char* name, const char* help, MetricType type, double v) { add(family(name, help, type), v); }
};

std::vector<MetricFamily> collect() {
  const observe::Stats s = observe::stats();
  Families f;
  f.node = std::string(s.node.name());
  constexpr auto counter = MetricType::Counter;
  constexpr auto gauge = MetricType::Gauge;
  f.one("nodus_uptime_seconds", "Time since the runtime started.", gauge, double(s.uptime_ms) / 1e3);
  f.one("nodus_processes", "Processes alive.", gauge, double(s.processes));
  f.one("nodus_processes_spawned_total", "Processes spawned since the program started.", counter, double(s.spawned));
  {
    auto& e = f.family("nodus_processes_exited_total", "Processes that ended, by the class of their exit reason.", counter);
    const std::pair<const char*, std::uint64_t> by[] = {{"normal", s.exited.normal},       {"shutdown", s.exited.shutdown},
                                                       {"killed", s.exited.killed},       {"exception", s.exited.exception},
                                                       {"noconnection", s.exited.noconnection}, {"other", s.exited.other}};
    for (const auto& [reason, n] : by) f.add(e, double(n), {{"reason", reason}});
  }
  {
    auto& busy = f.family("nodus_scheduler_busy_seconds_total", "Time a scheduler thread was not idle.", counter);
    auto& runs = f.family("nodus_scheduler_runs_total", "Process slices a scheduler ran.", counter);
    auto& util = f.family("nodus_scheduler_utilization", "Busy time over uptime of a scheduler (0..1), since start.", gauge);
    auto& queue = f.family("nodus_scheduler_queue_length", "Processes waiting in a scheduler's own run queue.", gauge);
    for (const auto& w : s.schedulers) {
      const std::string id = std::to_string(w.id);
      f.add(busy, double(w.busy_ns) / 1e9, {{"scheduler", id}});
      f.add(runs, double(w.runs), {{"scheduler", id}});
      f.add(util, w.utilization(), {{"scheduler", id}});
      f.add(queue, double(w.queue), {{"scheduler", id}});
    }
  }
  f.one("nodus_run_queue_length", "Processes runnable and not running, in all run queues.", gauge, double(s.run_queue));
  f.one("nodus_timers_pending", "Timers pending (send_after, receive timeouts).", gauge, double(s.timers));
  f.one("nodus_atoms", "Atoms in the atom table.", gauge, double(s.atoms));
  f.one("nodus_supervisor_restarts_total", "Children supervisors restarted.", counter, double(s.supervisor_restarts));
  f.one("nodus_supervisor_give_ups_total", "Supervisors that passed their restart intensity and shut down.", counter,
        double(s.supervisor_give_ups));
  f.one("nodus_connections_up_total", "Connections to peers that completed their handshake.", counter, double(s.connections_up));
  f.one("nodus_connections_down_total", "Connections to peers that were up and went down.", counter, double(s.connections_down));
  f.one("nodus_handshakes_refused_total", "Connection attempts this node refused (cookie, CURVE key, name).", counter,
        double(s.handshakes_refused));
  f.one("nodus_senders_held_total", "Sends that waited for a peer's send budget.", counter, double(s.senders_held));
  {
    auto& d = f.family("nodus_connections_down_reason_total", "Connections that went down, by the kind of reason.", counter);
    for (const auto& [why, n] : s.down_reasons) f.add(d, double(n), {{"reason", why}});
  }
  {
    auto& up = f.family("nodus_peer_up", "1 while the connection to the peer is up.", gauge);
    auto& mo = f.family("nodus_peer_messages_sent_total", "Records (messages and control frames) sent to the peer.", counter);
    auto& bo = f.family("nodus_peer_bytes_sent_total", "Bytes sent to the peer.", counter);
    auto& mi = f.family("nodus_peer_messages_received_total", "Records received from the peer.", counter);
    auto& bi = f.family("nodus_peer_bytes_received_total", "Bytes received from the peer.", counter);
    auto& q = f.family("nodus_peer_queued_bytes", "Bytes queued for the peer now.", gauge);
    auto& bs = f.family("nodus_peer_busy_seconds_total", "Time the peer's channel spent over its send budget.", counter);
    auto& be = f.family("nodus_peer_busy_episodes_total", "Times the peer's channel passed its send budget.", counter);
    auto& cu = f.family("nodus_peer_connections_up_total", "Connections to the peer that came up.", counter);
    auto& cd = f.family("nodus_peer_connections_down_total", "Connections to the peer that went down.", counter);
    for (const auto& p : s.peers) {
      const std::vector<ClientMetric::Label> l = {{"peer", std::string(p.node.name())}};
      f.add(up, p.up ? 1 : 0, l);
      f.add(mo, double(p.msgs_out), l);
      f.add(bo, double(p.bytes_out), l);
      f.add(mi, double(p.msgs_in), l);
      f.add(bi, double(p.bytes_in), l);
      f.add(q, double(p.queued_bytes), l);
      f.add(bs, double(p.busy_ns) / 1e9, l);
      f.add(be, double(p.busy_episodes), l);
      f.add(cu, double(p.connections_up), l);
      f.add(cd, double(p.connections_down), l);
    }
  }
  {
    std::uint64_t longest = 0;
    const auto top = observe::top(observe::SortBy::mailbox, 1);
    if (!top.empty()) longest = top[0].mailbox;
    f.one("nodus_mailbox_longest", "Messages in the longest mailbox.", gauge, double(longest));
  }
  return std::move(f.out);
}

struct Collector : prometheus::Collectable {
  std::vector<MetricFamily> Collect() const override {
    try {
      return collect();
    } catch (const std::exception&) {  // no Runtime any more (a scrape during shutdown)
      return {};
    }
  }
};

std::mutex g_mu;
std::unique_ptr<prometheus::Exposer> g_exposer;
std::shared_ptr<Collector> g_collector;
std::uint16_t g_port = 0;
}  // namespace

namespace observe {
std::string prometheus_text() {
  return prometheus::TextSerializer().Serialize(collect());
}
}  // namespace observe

namespace metrics {
void start(const std::string& addr) {
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size() ||
      addr.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    throw std::runtime_error("bad --metrics '" + addr.substr(0, 200) + "': expected ADDR:PORT, e.g. 127.0.0.1:9100");
  }
  std::lock_guard lock(g_mu);
  if (g_exposer) throw std::runtime_error("the metrics endpoint is already running");
  try {
    auto e = std::make_unique<prometheus::Exposer>(addr, 1);
    g_collector = std::make_shared<Collector>();
    e->RegisterCollectable(g_collector);
    const auto ports = e->GetListeningPorts();
    g_port = ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
    g_exposer = std::move(e);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + addr.substr(0, 200) + ": " + e.what());
  }
  logger().info("metrics at http://{}:{}/metrics", addr.substr(0, colon), g_port);
}

void stop() {
  std::unique_ptr<prometheus::Exposer> e;
  {
    std::lock_guard lock(g_mu);
    e = std::move(g_exposer);
    g_port = 0;
  }
  e.reset();  // (joins its threads: a scrape in progress finishes first)
  std::lock_guard lock(g_mu);
  g_collector.reset();
}

std::uint16_t port() {
  std::lock_guard lock(g_mu);
  return g_port;
}
}  // namespace metrics

#else  // built without prometheus-cpp

namespace observe {
std::string prometheus_text() { return {}; }
}  // namespace observe
namespace metrics {
void start(const std::string&) {
  throw std::runtime_error("this nodus was built without prometheus-cpp (Debian: prometheus-cpp-dev): no --metrics");
}
void stop() {}
std::uint16_t port() { return 0; }
}  // namespace metrics
#endif

}  // namespace nodus
