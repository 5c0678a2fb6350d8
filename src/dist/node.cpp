// The distributed node: one I/O thread owns every ZeroMQ socket (a ROUTER bound for inbound
// traffic, one DEALER per peer for outbound traffic and socket monitors), authenticates peers
// with the cookie handshake, and moves messages between the wire and local mailboxes.
#include "nodus/node.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>

#include "../runtime/context.hpp"
#include "../runtime/process.hpp"
#include "codec.hpp"
#include "handshake.hpp"
#include "nodus/io.hpp"
#include "nodus/log.hpp"
#include "nodus/process.hpp"
#include "portmapper.hpp"
#include "wire.hpp"

namespace nodus {
namespace dist {
namespace {

using Clock = std::chrono::steady_clock;

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  std::string error;
  Pid pid;  // spawn requests: the new process
  void finish_spawn(const Pid& p) {
    {
      std::lock_guard lock(mu);
      if (done) return;
      done = true;
      ok = true;
      pid = p;
    }
    cv.notify_all();
  }
  void finish(bool success, std::string why = {}) {
    {
      std::lock_guard lock(mu);
      if (done) return;
      done = true;
      ok = success;
      error = std::move(why);
    }
    cv.notify_all();
  }
};

// Work handed to the I/O thread by other threads.
struct Command {
  enum Kind { send, connect, disconnect, spawn, monitor_node, demonitor_node } kind;
  Atom node;
  std::string frame;
  std::shared_ptr<Waiter> waiter;
  std::uint64_t request = 0;  // spawn
  Pid link_from;              // spawn_link: the local caller; monitor_node: the watcher
};

std::mutex g_functions_mu;
std::map<std::string, RemoteFunction, std::less<>> g_functions;

std::optional<RemoteFunction> find_function(std::string_view name) {
  std::lock_guard lock(g_functions_mu);
  auto it = g_functions.find(name);
  if (it == g_functions.end()) return std::nullopt;
  return it->second;
}

bool valid_node_name(std::string_view n) {
  const auto at = n.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < n.size() && n.size() <= 255 &&
         n.find('@', at + 1) == std::string_view::npos;
}

std::string host_of(std::string_view n) { return std::string(n.substr(n.find('@') + 1)); }
std::string short_of(std::string_view n) { return std::string(n.substr(0, n.find('@'))); }

// Rate-limited warnings about bad input: at most one line per second per kind.
void warn_bad(const char* what, const std::string& detail) {
  static std::mutex mu;
  static std::map<std::string, std::pair<Clock::time_point, long>> last;
  std::lock_guard lock(mu);
  auto& [t, suppressed] = last[what];
  const auto now = Clock::now();
  if (now - t < std::chrono::seconds(1)) {
    ++suppressed;
    return;
  }
  if (suppressed) {
    logger().warn("dropped {}: {} ({} more since the last report)", what, detail, suppressed);
  } else {
    logger().warn("dropped {}: {}", what, detail);
  }
  t = now;
  suppressed = 0;
}

class NodeImpl {
 public:
  explicit NodeImpl(NodeOptions o) : opts_(std::move(o)) {}
  ~NodeImpl() { stop(); }

  void start();
  void stop();
  void enqueue(Command c);

  Atom name() const { return name_; }
  std::uint32_t creation() const { return creation_; }
  std::uint16_t port() const { return port_; }
  std::vector<Atom> connected() {
    std::lock_guard lock(list_mu_);
    return {up_.begin(), up_.end()};
  }
  std::string encode_send(const Pid& to, detail::MsgNode* n);
  std::string encode_send_name(Atom name, detail::MsgNode* n);
  std::uint64_t next_request() { return next_request_.fetch_add(1) + 1; }

  // Links and monitors between local processes and processes of other nodes, so that losing
  // a node can fire them with `noconnection`. Touched by process threads and the I/O thread.
  void track_link(const Pid& local, const Pid& remote) {
    std::lock_guard lock(track_mu_);
    links_.emplace(remote.node.id(), std::make_pair(local, remote));
  }
  void untrack_link(const Pid& local, const Pid& remote) {
    std::lock_guard lock(track_mu_);
    auto [b, e] = links_.equal_range(remote.node.id());
    for (auto it = b; it != e; ++it) {
      if (it->second.first == local && it->second.second == remote) {
        links_.erase(it);
        return;
      }
    }
  }
  void track_monitor(const Pid& watcher, const Pid& target, const Ref& ref) {
    std::lock_guard lock(track_mu_);
    monitors_[ref] = {watcher, target};
  }
  void untrack_monitor(const Ref& ref) {
    std::lock_guard lock(track_mu_);
    monitors_.erase(ref);
  }
  /// `node` is unreachable: every link to it breaks and every monitor of it fires.
  void fire_noconnection(Atom node);
  void send_control(Atom node, std::string frame) { enqueue({Command::send, node, std::move(frame), nullptr}); }

 private:
  // An outbound connection: our DEALER to the peer's ROUTER.
  struct Peer {
    std::string name;
    enum State { connecting, challenged, up } state = connecting;
    std::unique_ptr<zmq::socket_t> dealer;
    std::unique_ptr<zmq::socket_t> monitor;
    Nonce nonce{};
    std::uint32_t creation = 0;
    std::deque<std::string> pending;  // frames waiting for the handshake (or for HWM room)
    std::vector<std::shared_ptr<Waiter>> waiters;
    std::vector<Pid> node_watchers;  // monitor_node
    Clock::time_point deadline;
  };
  // An inbound connection: a peer's DEALER on our ROUTER, by routing id.
  struct Inbound {
    std::string name;
    std::uint32_t creation = 0;
    Nonce their_nonce{}, our_nonce{};
    bool authenticated = false;
    Clock::time_point since;
  };

  void loop();
  void drain_commands();
  void on_router();
  void on_dealer(Peer& p);
  void on_monitor(Peer& p);
  void handle_inbound_frame(const std::string& rid, std::string_view frame);
  void deliver_frame(Inbound& in, std::string_view frame);
  Peer* connect_peer(Atom node, std::string* error);
  void peer_down(Atom node, const std::string& why);
  void flush(Peer& p);
  void send_router(const std::string& rid, const std::string& frame);
  void mark_up(Atom node, bool up);
  void on_spawn_request(Inbound& in, Reader& r);
  void on_control(Inbound& in, Op op, Reader& r);
  void on_spawn_reply(Reader& r);

  NodeOptions opts_;
  Atom name_;
  std::string cookie_;
  std::uint32_t creation_ = 0;
  std::uint16_t port_ = 0;
  zmq::context_t ctx_{1};
  std::unique_ptr<zmq::socket_t> router_;
  std::unique_ptr<PortmapperClient> pm_;
  std::thread io_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> io_sleeping_{false};
  std::mutex qmu_;
  std::vector<Command> queue_;
  std::mutex list_mu_;
  std::set<Atom, bool (*)(Atom, Atom)> up_{[](Atom a, Atom b) { return a.id() < b.id(); }};
  // I/O thread only
  std::map<std::uint32_t, Peer> peers_;  // by atom id
  std::unordered_map<std::string, Inbound> inbound_;
  int monitor_seq_ = 0;
  std::atomic<std::uint64_t> next_request_{0};
  struct PendingSpawn {
    Atom node;
    std::shared_ptr<Waiter> waiter;
    Pid link_from;  // spawn_link: the local caller
  };
  std::unordered_map<std::uint64_t, PendingSpawn> spawns_;  // I/O thread only
  std::mutex track_mu_;
  std::multimap<std::uint32_t, std::pair<Pid, Pid>> links_;  // remote node -> (local, remote)
  std::unordered_map<Ref, std::pair<Pid, Pid>> monitors_;    // ref -> (local watcher, remote target)
};

std::atomic<NodeImpl*> g_node{nullptr};

// ------------------------------------------------------------------------------ start / stop

void NodeImpl::start() {
  if (!valid_node_name(opts_.name)) {
    throw std::runtime_error("bad node name '" + opts_.name + "': expected name@host");
  }
  name_ = Atom(opts_.name);
  std::string error;
  auto cookie = resolve_cookie(opts_.cookie, &error);
  if (!cookie) throw std::runtime_error(error);
  cookie_ = *cookie;

  router_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::router);
  router_->set(zmq::sockopt::router_mandatory, 1);
  router_->set(zmq::sockopt::maxmsgsize, kMaxFrame);
  router_->set(zmq::sockopt::linger, 0);
  const std::string host = host_of(opts_.name);
  const std::string bind_host = (host == "localhost") ? "127.0.0.1" : host;
  try {
    router_->bind("tcp://" + bind_host + ":*");
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot listen on " + bind_host + ": " + e.what());
  }
  const std::string ep = router_->get(zmq::sockopt::last_endpoint);
  port_ = static_cast<std::uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));

  if (opts_.use_portmapper) {
    const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
    pm_ = std::make_unique<PortmapperClient>("127.0.0.1", pmport);
    auto c = pm_->register_node(short_of(opts_.name), port_, &error);
    if (!c) {
      throw std::runtime_error("cannot register " + opts_.name + " with the port mapper: " + error);
    }
    creation_ = *c;
  } else {
    creation_ = static_cast<std::uint32_t>(Clock::now().time_since_epoch().count()) | 1u;
  }
  detail::set_local_node(name_, creation_);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  io_ = std::thread([this] { loop(); });
  logger().info("node {} up on port {} (creation {})", opts_.name, port_, creation_);
}

void NodeImpl::stop() {
  if (!io_.joinable()) return;
  stop_ = true;
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  io_.join();
  peers_.clear();
  router_.reset();
  pm_.reset();
  ::close(wake_fd_);
  detail::set_local_node(Atom("nonode@nohost"), 0);
}

void NodeImpl::enqueue(Command c) {
  {
    std::lock_guard lock(qmu_);
    queue_.push_back(std::move(c));
  }
  // only a sleeping I/O thread needs the (syscall) nudge
  if (io_sleeping_.exchange(false, std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
}

// ------------------------------------------------------------------------------ encoding

std::string control(Op op, std::initializer_list<Term> terms, int flag = -1) {
  std::string f;
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(op));
  auto it = terms.begin();
  encode_term(w, *it++);
  encode_term(w, *it++);
  if (flag >= 0) w.u8(static_cast<std::uint8_t>(flag));
  for (; it != terms.end(); ++it) encode_term(w, *it);
  return f;
}

// The payload of a node that can travel (Term or io::Request); false for other types.
bool encode_payload(Writer& w, detail::MsgNode* n) {
  if (n->type == &detail::type_info_v<Term>) {
    w.u8(static_cast<std::uint8_t>(Payload::term));
    encode_term(w, static_cast<detail::TypedNode<Term>*>(n)->value);
    return true;
  }
  if (n->type == &detail::type_info_v<io::Request>) {
    w.u8(static_cast<std::uint8_t>(Payload::io_request));
    w.str32(static_cast<detail::TypedNode<io::Request>*>(n)->value.text);
    return true;
  }
  return false;
}

bool can_travel(detail::MsgNode* n) {
  return n->type == &detail::type_info_v<Term> || n->type == &detail::type_info_v<io::Request>;
}

std::string NodeImpl::encode_send(const Pid& to, detail::MsgNode* n) {
  std::string f;
  f.reserve(64);
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::send_pid));
  w.u32(to.creation);
  w.u32(to.id);
  w.u32(to.serial);
  encode_payload(w, n);
  return f;
}

std::string NodeImpl::encode_send_name(Atom name, detail::MsgNode* n) {
  std::string f;
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::send_name));
  w.str8(name.name());
  encode_payload(w, n);
  return f;
}

// ------------------------------------------------------------------------------ I/O thread

void NodeImpl::loop() {
  std::vector<zmq::pollitem_t> items;
  std::vector<std::uint32_t> owners;  // peer (atom id) of items[i], 0 for router/wake/pm
  std::vector<bool> is_monitor;
  while (!stop_.load()) {
    drain_commands();
    // handshakes that take too long fail
    const auto now = Clock::now();
    std::vector<Atom> expired;
    for (auto& [id, p] : peers_) {
      if (p.state != Peer::up && now > p.deadline) expired.push_back(Atom::from_id(id));
    }
    for (Atom a : expired) peer_down(a, "connection timed out");
    for (auto it = inbound_.begin(); it != inbound_.end();) {
      it = (!it->second.authenticated && now - it->second.since > std::chrono::seconds(10))
               ? inbound_.erase(it)
               : std::next(it);
    }

    items.clear();
    owners.clear();
    is_monitor.clear();
    items.push_back({router_->handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    owners.insert(owners.end(), {0, 0});
    is_monitor.insert(is_monitor.end(), {false, false});
    if (pm_ && pm_->registration_fd() >= 0) {
      items.push_back({nullptr, pm_->registration_fd(), ZMQ_POLLIN, 0});
      owners.push_back(0);
      is_monitor.push_back(false);
    }
    for (auto& [id, p] : peers_) {
      items.push_back({p.dealer->handle(), 0, static_cast<short>(ZMQ_POLLIN | (p.state == Peer::up && !p.pending.empty() ? ZMQ_POLLOUT : 0)), 0});
      owners.push_back(id);
      is_monitor.push_back(false);
      items.push_back({p.monitor->handle(), 0, ZMQ_POLLIN, 0});
      owners.push_back(id);
      is_monitor.push_back(true);
    }
    // sleep until something happens; senders nudge the eventfd only while we are asleep
    io_sleeping_.store(true, std::memory_order_seq_cst);
    bool have_work;
    {
      std::lock_guard lock(qmu_);
      have_work = !queue_.empty();
    }
    const int rc = zmq::poll(items.data(), items.size(), std::chrono::milliseconds(have_work ? 0 : 250));
    io_sleeping_.store(false, std::memory_order_seq_cst);
    if (rc <= 0) continue;
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
    }
    if (items[0].revents & ZMQ_POLLIN) on_router();
    if (pm_ && items.size() > 2 && items[2].fd == pm_->registration_fd() &&
        (items[2].revents & ZMQ_POLLIN)) {
      char buf[64];
      if (::recv(pm_->registration_fd(), buf, sizeof(buf), MSG_DONTWAIT) == 0) {
        logger().warn("lost the port mapper registration; other nodes cannot look {} up", opts_.name);
        pm_->unregister();
      }
    }
    for (std::size_t i = 2; i < items.size(); ++i) {
      if (owners[i] == 0 || !items[i].revents) continue;
      auto it = peers_.find(owners[i]);
      if (it == peers_.end()) continue;
      if (is_monitor[i]) {
        on_monitor(it->second);
      } else {
        if (items[i].revents & ZMQ_POLLOUT) flush(it->second);
        if (items[i].revents & ZMQ_POLLIN) on_dealer(it->second);
      }
    }
  }
}

void NodeImpl::drain_commands() {
  std::vector<Command> cmds;
  {
    std::lock_guard lock(qmu_);
    cmds.swap(queue_);
  }
  for (auto& c : cmds) {
    switch (c.kind) {
      case Command::send: {
        std::string error;
        Peer* p = connect_peer(c.node, &error);
        if (p == nullptr) {
          warn_bad("message", "no connection to " + std::string(c.node.name()) + ": " + error);
          fire_noconnection(c.node);
          break;
        }
        p->pending.push_back(std::move(c.frame));
        if (p->state == Peer::up) flush(*p);
        break;
      }
      case Command::connect: {
        std::string error;
        Peer* p = connect_peer(c.node, &error);
        if (p == nullptr) {
          c.waiter->finish(false, error);
        } else if (p->state == Peer::up) {
          c.waiter->finish(true);
        } else {
          p->waiters.push_back(c.waiter);
        }
        break;
      }
      case Command::disconnect: peer_down(c.node, "disconnected"); break;
      case Command::monitor_node: {
        std::string error;
        Peer* p = connect_peer(c.node, &error);
        if (p == nullptr) {
          runtime::deliver_local(c.link_from, detail::make_node(tuple(atom("nodedown"), c.node)));
        } else {
          p->node_watchers.push_back(c.link_from);
        }
        break;
      }
      case Command::demonitor_node:
        if (auto it = peers_.find(c.node.id()); it != peers_.end()) std::erase(it->second.node_watchers, c.link_from);
        break;
      case Command::spawn: {
        std::string error;
        Peer* p = connect_peer(c.node, &error);
        if (p == nullptr) {
          c.waiter->finish(false, "no connection to " + std::string(c.node.name()));
          break;
        }
        spawns_[c.request] = {c.node, c.waiter, c.link_from};
        p->pending.push_back(std::move(c.frame));
        if (p->state == Peer::up) flush(*p);
        break;
      }
    }
  }
}

NodeImpl::Peer* NodeImpl::connect_peer(Atom node, std::string* error) {
  if (auto it = peers_.find(node.id()); it != peers_.end()) return &it->second;
  const std::string name(node.name());
  if (!valid_node_name(name)) {
    *error = "bad node name";
    return nullptr;
  }
  if (node == name_) {
    *error = "that is this node";
    return nullptr;
  }
  std::string endpoint;
  for (const auto& [n, ep] : opts_.peers) {
    if (n == name) endpoint = ep;
  }
  if (endpoint.empty()) {
    std::string host = host_of(name);
    const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
    PortmapperClient pm(host, pmport);
    auto addr = pm.lookup(short_of(name), error);
    if (!addr) return nullptr;
    if (host == "localhost") host = "127.0.0.1";
    endpoint = "tcp://" + host + ":" + std::to_string(addr->port);
  }
  Peer p;
  p.name = name;
  p.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
  p.dealer->set(zmq::sockopt::linger, 0);
  p.dealer->set(zmq::sockopt::reconnect_ivl, -1);  // a lost peer is down, not silently retried
  p.dealer->set(zmq::sockopt::maxmsgsize, kMaxFrame);
  const int tick = static_cast<int>(opts_.ticktime.count());
  // a silent peer is noticed between timeout and timeout + ivl: 7/8 T + [0, 1/4 T] is centred
  // on the tick, like Erlang's 3/4 T .. 5/4 T
  p.dealer->set(zmq::sockopt::heartbeat_ivl, std::max(1, tick / 4));
  p.dealer->set(zmq::sockopt::heartbeat_timeout, std::max(1, tick - tick / 8));
  p.dealer->set(zmq::sockopt::heartbeat_ttl, std::max(100, tick));
  const std::string mon = "inproc://nodus-monitor-" + std::to_string(++monitor_seq_);
  if (zmq_socket_monitor(p.dealer->handle(), mon.c_str(), ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED) != 0) {
    *error = "cannot monitor socket";
    return nullptr;
  }
  p.monitor = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
  p.monitor->connect(mon);
  try {
    p.dealer->connect(endpoint);
  } catch (const zmq::error_t& e) {
    *error = std::string("cannot connect to ") + endpoint + ": " + e.what();
    return nullptr;
  }
  p.nonce = make_nonce();
  p.deadline = Clock::now() + std::chrono::seconds(7);
  std::string hello;
  Writer w(hello);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::hello));
  w.str8(name_.name());
  w.u32(creation_);
  w.bytes(std::string_view(reinterpret_cast<const char*>(p.nonce.data()), p.nonce.size()));
  p.dealer->send(zmq::buffer(hello), zmq::send_flags::dontwait);
  logger().debug("connecting to {} at {}", name, endpoint);
  return &peers_.emplace(node.id(), std::move(p)).first->second;
}

void NodeImpl::flush(Peer& p) {
  while (!p.pending.empty()) {
    const std::string& f = p.pending.front();
    auto r = p.dealer->send(zmq::buffer(f), zmq::send_flags::dontwait);
    if (!r) return;  // high-water mark: wait for POLLOUT, keep order
    p.pending.pop_front();
  }
}

void NodeImpl::on_dealer(Peer& p) {
  for (;;) {
    zmq::message_t m;
    if (!p.dealer->recv(m, zmq::recv_flags::dontwait)) return;
    Reader r(m.to_string_view());
    const auto ver = r.u8();
    const auto op = static_cast<Op>(r.u8());
    if (!r.ok() || ver != kWireVersion) {
      warn_bad("frame", "bad version from " + p.name);
      continue;
    }
    if (op == Op::challenge && p.state == Peer::connecting) {
      auto their_name = r.str8();
      const auto their_creation = r.u32();
      auto nonce_bytes = r.bytes(16);
      auto mac = r.bytes(32);
      if (!r.ok() || !r.at_end()) {
        warn_bad("frame", "malformed challenge from " + p.name);
        continue;
      }
      Nonce theirs;
      std::memcpy(theirs.data(), nonce_bytes.data(), 16);
      const bool genuine = their_name == p.name &&
                           mac_equal(acceptor_mac(cookie_, p.nonce, theirs, name_.name(), p.name), mac);
      // answer even when their proof fails, so the other side logs the refusal too
      const Mac ours = connector_mac(cookie_, p.nonce, theirs, name_.name(), p.name);
      std::string reply;
      Writer w(reply);
      w.u8(kWireVersion);
      w.u8(static_cast<std::uint8_t>(Op::reply));
      w.bytes(std::string_view(reinterpret_cast<const char*>(ours.data()), ours.size()));
      p.dealer->send(zmq::buffer(reply), zmq::send_flags::dontwait);
      if (!genuine) {
        logger().error("** Connection to node {} refused: it does not share our cookie **", p.name);
        peer_down(Atom(p.name), "cookie mismatch");
        return;
      }
      p.creation = their_creation;
      p.state = Peer::challenged;
    } else if (op == Op::accept && p.state == Peer::challenged) {
      p.state = Peer::up;
      mark_up(Atom(p.name), true);
      logger().info("connected to {}", p.name);
      for (auto& w : p.waiters) w->finish(true);
      p.waiters.clear();
      flush(p);
    } else if (op == Op::refuse) {
      const std::string why(r.str8());
      logger().error("** Connection to node {} refused: {} **", p.name, why);
      peer_down(Atom(p.name), "refused: " + why);
      return;
    } else {
      warn_bad("frame", "unexpected frame from " + p.name);
    }
  }
}

void NodeImpl::on_monitor(Peer& p) {
  for (;;) {
    zmq::message_t ev, addr;
    if (!p.monitor->recv(ev, zmq::recv_flags::dontwait)) return;
    if (ev.more()) (void)p.monitor->recv(addr, zmq::recv_flags::dontwait);
    std::uint16_t event = 0;
    if (ev.size() >= 2) std::memcpy(&event, ev.data(), 2);
    if (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_CLOSED) {
      peer_down(Atom(p.name), "connection closed");
      return;  // `p` is gone
    }
  }
}

void NodeImpl::fire_noconnection(Atom node) {
  std::vector<std::pair<Pid, Pid>> links;               // (local, remote)
  std::vector<std::tuple<Ref, Pid, Pid>> downs;          // (ref, local watcher, remote target)
  {
    std::lock_guard lock(track_mu_);
    auto [b, e] = links_.equal_range(node.id());
    for (auto it = b; it != e; ++it) links.push_back(it->second);
    links_.erase(b, e);
    for (auto it = monitors_.begin(); it != monitors_.end();) {
      if (it->second.second.node == node) {
        downs.emplace_back(it->first, it->second.first, it->second.second);
        it = monitors_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& [local, remote] : links) {
    runtime::send_exit_signal(local, remote, atoms::noconnection(), true);
  }
  for (const auto& [ref, watcher, target] : downs) {
    runtime::remove_monitoring(watcher, ref);
    runtime::deliver_local(watcher, detail::make_node(Down{ref, target, atoms::noconnection()}));
  }
}

void NodeImpl::peer_down(Atom node, const std::string& why) {
  auto it = peers_.find(node.id());
  if (it == peers_.end()) return;
  Peer& p = it->second;
  const bool was_up = p.state == Peer::up;
  for (auto& w : p.waiters) w->finish(false, why);
  if (!p.pending.empty()) {
    warn_bad("message", std::to_string(p.pending.size()) + " queued for " + p.name + " (" + why + ")");
  }
  if (was_up) logger().info("node {} down: {}", p.name, why);
  for (const Pid& w : p.node_watchers) runtime::deliver_local(w, detail::make_node(tuple(atom("nodedown"), node)));
  for (auto sp = spawns_.begin(); sp != spawns_.end();) {
    if (sp->second.node == node) {
      sp->second.waiter->finish(false, "no connection to " + p.name);
      sp = spawns_.erase(sp);
    } else {
      ++sp;
    }
  }
  peers_.erase(it);
  fire_noconnection(node);
  for (auto in = inbound_.begin(); in != inbound_.end();) {
    in = in->second.name == std::string_view(node.name()) ? inbound_.erase(in) : std::next(in);
  }
  mark_up(node, false);
}

void NodeImpl::mark_up(Atom node, bool up) {
  std::lock_guard lock(list_mu_);
  if (up) {
    up_.insert(node);
  } else {
    up_.erase(node);
  }
}

void NodeImpl::send_router(const std::string& rid, const std::string& frame) {
  try {
    router_->send(zmq::buffer(rid), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    router_->send(zmq::buffer(frame), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // ROUTER_MANDATORY: the peer is gone already; nothing to answer
  }
}

void NodeImpl::on_router() {
  for (;;) {
    zmq::message_t rid, frame;
    if (!router_->recv(rid, zmq::recv_flags::dontwait)) return;
    if (!rid.more()) continue;  // cannot happen on a ROUTER; be safe
    (void)router_->recv(frame, zmq::recv_flags::dontwait);
    while (frame.more()) {  // extra parts: not our protocol; drain them
      zmq::message_t extra;
      if (!router_->recv(extra, zmq::recv_flags::dontwait)) break;
      frame.move(extra);
      warn_bad("frame", "unexpected multipart message");
    }
    handle_inbound_frame(rid.to_string(), frame.to_string_view());
  }
}

void NodeImpl::handle_inbound_frame(const std::string& rid, std::string_view frame) {
  Reader r(frame);
  const auto ver = r.u8();
  const auto op = static_cast<Op>(r.u8());
  if (!r.ok() || ver != kWireVersion) {
    warn_bad("frame", "unknown version or truncated header (" + std::to_string(frame.size()) + " bytes)");
    return;
  }
  auto it = inbound_.find(rid);
  if (op == Op::hello) {
    auto their_name = r.str8();
    const auto their_creation = r.u32();
    auto nonce = r.bytes(16);
    if (!r.ok() || !r.at_end() || !valid_node_name(their_name)) {
      warn_bad("frame", "malformed hello");
      return;
    }
    Inbound in;
    in.name = std::string(their_name);
    in.creation = their_creation;
    std::memcpy(in.their_nonce.data(), nonce.data(), 16);
    in.our_nonce = make_nonce();
    in.since = Clock::now();
    const Mac mac = acceptor_mac(cookie_, in.their_nonce, in.our_nonce, in.name, name_.name());
    std::string ch;
    Writer w(ch);
    w.u8(kWireVersion);
    w.u8(static_cast<std::uint8_t>(Op::challenge));
    w.str8(name_.name());
    w.u32(creation_);
    w.bytes(std::string_view(reinterpret_cast<const char*>(in.our_nonce.data()), 16));
    w.bytes(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
    inbound_[rid] = std::move(in);
    send_router(rid, ch);
    return;
  }
  if (it == inbound_.end()) {
    warn_bad("frame", "message from a peer that did not introduce itself");
    return;
  }
  Inbound& in = it->second;
  if (op == Op::reply && !in.authenticated) {
    auto mac = r.bytes(32);
    const bool ok = r.ok() && r.at_end() &&
                    mac_equal(connector_mac(cookie_, in.their_nonce, in.our_nonce, in.name, name_.name()), mac);
    std::string answer;
    Writer w(answer);
    w.u8(kWireVersion);
    if (!ok) {
      logger().error("** Connection attempt from node {} rejected. Invalid challenge reply. **", in.name);
      w.u8(static_cast<std::uint8_t>(Op::refuse));
      w.str8("invalid challenge reply");
      send_router(rid, answer);
      inbound_.erase(it);
      return;
    }
    in.authenticated = true;
    w.u8(static_cast<std::uint8_t>(Op::accept));
    send_router(rid, answer);
    logger().debug("accepted connection from {}", in.name);
    // connect back: our traffic to them goes on our own connection, and its loss tells us
    // at once when they go away
    std::string error;
    if (connect_peer(Atom(in.name), &error) == nullptr) {
      logger().warn("cannot connect back to {}: {}", in.name, error);
    }
    return;
  }
  if (!in.authenticated) {
    warn_bad("frame", "message from unauthenticated peer " + in.name);
    return;
  }
  deliver_frame(in, frame);
}

void NodeImpl::deliver_frame(Inbound& in, std::string_view frame) {
  Reader r(frame);
  r.u8();
  const auto op = static_cast<Op>(r.u8());
  Pid to;
  Atom to_name;
  if (op == Op::send_pid) {
    to.creation = r.u32();
    to.id = r.u32();
    to.serial = r.u32();
  } else if (op == Op::send_name) {
    auto n = r.str8();
    if (r.ok()) to_name = Atom(n);
  } else if (op == Op::spawn_request) {
    on_spawn_request(in, r);
    return;
  } else if (op == Op::spawn_reply) {
    on_spawn_reply(r);
    return;
  } else if (op >= Op::link && op <= Op::down) {
    on_control(in, op, r);
    return;
  } else {
    warn_bad("frame", "unknown operation " + std::to_string(static_cast<int>(op)) + " from " + in.name);
    return;
  }
  const auto enc = static_cast<Payload>(r.u8());
  detail::MsgNode* n = nullptr;
  if (r.ok() && enc == Payload::term) {
    auto term = decode_term(r);
    if (!term || !r.at_end()) {
      warn_bad("message", "malformed term from " + in.name);
      return;
    }
    n = detail::make_node(std::move(*term));
  } else if (r.ok() && enc == Payload::io_request) {
    auto text = r.str32();
    if (!r.ok() || !r.at_end()) {
      warn_bad("message", "malformed io request from " + in.name);
      return;
    }
    n = detail::make_node(io::Request{std::string(text)});
  } else {
    warn_bad("message", "unknown payload encoding from " + in.name);
    return;
  }
  if (op == Op::send_pid) {
    if (to.creation != creation_) {  // a pid of an earlier incarnation of this node
      n->type->destroy(n);
      return;
    }
    runtime::deliver_local(to, n);
  } else {
    detail::deliver_named(to_name, n);
  }
}

void NodeImpl::on_control(Inbound& in, Op op, Reader& r) {
  auto a = decode_term(r);  // from / watcher
  auto b = decode_term(r);  // to / target
  const std::uint8_t flag = op == Op::exit ? r.u8() : 0;
  std::optional<Term> c, d;
  if (op == Op::exit) c = decode_term(r);
  if (op == Op::monitor || op == Op::demonitor || op == Op::down) c = decode_term(r);
  if (op == Op::down) d = decode_term(r);
  const bool shape = a && b && a->is_pid() && b->is_pid() &&
                     (op != Op::exit || c) && (op != Op::monitor || (c && c->is_ref())) &&
                     (op != Op::demonitor || (c && c->is_ref())) && (op != Op::down || (c && c->is_ref() && d));
  if (!r.ok() || !r.at_end() || !shape) {
    warn_bad("frame", "malformed link/monitor frame from " + in.name);
    return;
  }
  const Pid& x = a->as_pid();
  const Pid& y = b->as_pid();
  switch (op) {
    case Op::link:  // remote x links to local y
      if (runtime::add_remote_link(y, x)) {
        track_link(y, x);
      } else {
        send_control(x.node, control(Op::exit, {Term(y), Term(x), Term(atoms::noproc())}, 1));
      }
      break;
    case Op::unlink:
      runtime::remove_remote_link(y, x);
      untrack_link(y, x);
      break;
    case Op::exit:  // remote x's exit signal to local y
      if (flag) untrack_link(y, x);
      runtime::send_exit_signal(y, x, std::move(*c), flag != 0);
      break;
    case Op::monitor:  // remote watcher x monitors local y
      if (!runtime::add_remote_watcher(y, c->as_ref(), x)) {
        send_control(x.node, control(Op::down, {Term(x), Term(y), *c, Term(atoms::noproc())}));
      }
      break;
    case Op::demonitor: runtime::remove_watcher(y, c->as_ref()); break;
    case Op::down:  // remote target y went away; local watcher x
      untrack_monitor(c->as_ref());
      runtime::remove_monitoring(x, c->as_ref());
      runtime::deliver_local(x, detail::make_node(Down{c->as_ref(), y, std::move(*d)}));
      break;
    default: break;
  }
}

void NodeImpl::on_spawn_request(Inbound& in, Reader& r) {
  const std::uint64_t req = r.u64();
  const std::uint32_t from_id = r.u32(), from_serial = r.u32();
  const std::uint8_t flags = r.u8();
  auto gl = decode_term(r);
  auto fname = r.str8();
  auto args = decode_term(r);
  if (!r.ok() || !r.at_end() || !gl || !gl->is_pid() || !args) {
    warn_bad("frame", "malformed spawn request from " + in.name);
    return;
  }
  std::string reply;
  Writer w(reply);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::spawn_reply));
  w.u64(req);
  auto f = find_function(fname);
  std::string error;
  Pid pid;
  if (!f) {
    error = "no function " + std::string(fname) + " on " + std::string(name_.name());
  } else {
    try {
      Proc p = (*f)(std::move(*args));
      Pid caller;
      if (flags & 1) caller = Pid{Atom(in.name), in.creation, from_id, from_serial};
      pid = detail::spawn_frame(p.release(), {.group_leader = gl->as_pid()}, {}, nullptr, caller);
      if (flags & 1) track_link(pid, caller);
    } catch (const std::exception& e) {
      error = std::string("cannot start ") + std::string(fname) + ": " + e.what();
    }
  }
  if (error.empty()) {
    w.u8(0);
    w.u32(pid.id);
    w.u32(pid.serial);
  } else {
    logger().warn("spawn request from {} failed: {}", in.name, error);
    w.u8(1);
    w.str8(error);
  }
  std::string dummy;
  Peer* back = connect_peer(Atom(in.name), &dummy);
  if (back == nullptr) return;
  back->pending.push_back(std::move(reply));
  if (back->state == Peer::up) flush(*back);
}

void NodeImpl::on_spawn_reply(Reader& r) {
  const std::uint64_t req = r.u64();
  const std::uint8_t status = r.u8();
  auto it = spawns_.find(req);
  if (!r.ok() || it == spawns_.end()) {
    warn_bad("frame", "unexpected spawn reply");
    return;
  }
  auto waiter = it->second.waiter;
  const Atom node = it->second.node;
  const Pid link_from = it->second.link_from;
  spawns_.erase(it);
  if (status == 0) {
    const std::uint32_t id = r.u32(), serial = r.u32();
    auto peer = peers_.find(node.id());
    const std::uint32_t creation = peer != peers_.end() ? peer->second.creation : 0;
    if (!r.ok()) {
      waiter->finish(false, "malformed spawn reply");
      return;
    }
    const Pid pid{node, creation, id, serial};
    if (!link_from.is_null()) {
      // before any later frame from that node (its exit, say) is handled
      if (runtime::add_remote_link(link_from, pid)) {
        track_link(link_from, pid);
      } else {
        send_control(node, control(Op::exit, {Term(link_from), Term(pid), Term(atoms::noproc())}, 1));
      }
    }
    waiter->finish_spawn(pid);
  } else {
    auto why = r.str8();
    waiter->finish(false, r.ok() ? std::string(why) : std::string("malformed spawn reply"));
  }
}

void deliver_remote(const Pid& to, detail::MsgNode* n) {
  NodeImpl* node = g_node.load(std::memory_order_acquire);
  if (node && n->type == &detail::type_info_v<runtime::ExitSignal, detail::NodeKind::exit_signal>) {
    auto& sig = static_cast<detail::TypedNode<runtime::ExitSignal>*>(n)->value;
    if (sig.from_link) node->untrack_link(sig.from, to);
    node->send_control(to.node, control(Op::exit, {Term(sig.from), Term(to), sig.reason}, sig.from_link ? 1 : 0));
    n->type->destroy(n);
    return;
  }
  if (node && n->type == &detail::type_info_v<Down>) {
    auto& d = static_cast<detail::TypedNode<Down>*>(n)->value;
    node->send_control(to.node, control(Op::down, {Term(to), Term(d.pid), Term(d.ref), d.reason}));
    n->type->destroy(n);
    return;
  }
  if (node == nullptr || !can_travel(n)) {
    if (node) warn_bad("message", "type " + std::string(n->type->name) + " cannot be sent to another node yet");
    n->type->destroy(n);
    return;
  }
  std::string frame = node->encode_send(to, n);
  n->type->destroy(n);
  node->enqueue({Command::send, to.node, std::move(frame), nullptr});
}

void hook_link(const Pid& local, const Pid& remote) {
  if (NodeImpl* node = g_node.load(std::memory_order_acquire)) {
    node->track_link(local, remote);
    node->send_control(remote.node, control(Op::link, {Term(local), Term(remote)}));
  }
}
void hook_unlink(const Pid& local, const Pid& remote) {
  if (NodeImpl* node = g_node.load(std::memory_order_acquire)) {
    node->untrack_link(local, remote);
    node->send_control(remote.node, control(Op::unlink, {Term(local), Term(remote)}));
  }
}
void hook_monitor(const Pid& watcher, const Pid& target, const Ref& ref) {
  if (NodeImpl* node = g_node.load(std::memory_order_acquire)) {
    node->track_monitor(watcher, target, ref);
    node->send_control(target.node, control(Op::monitor, {Term(watcher), Term(target), Term(ref)}));
  }
}
void hook_demonitor(const Pid& watcher, const Pid& target, const Ref& ref) {
  if (NodeImpl* node = g_node.load(std::memory_order_acquire)) {
    node->untrack_monitor(ref);
    node->send_control(target.node, control(Op::demonitor, {Term(watcher), Term(target), Term(ref)}));
  }
}

const runtime::RemoteHooks kHooks{&deliver_remote, &hook_link, &hook_unlink, &hook_monitor, &hook_demonitor};

}  // namespace
}  // namespace dist

// ------------------------------------------------------------------------------ public API

namespace {
dist::NodeImpl* impl() { return dist::g_node.load(std::memory_order_acquire); }
}  // namespace

Node::Node(NodeOptions opts) {
  runtime::ctx();  // throws if no Runtime
  auto* n = new dist::NodeImpl(std::move(opts));
  try {
    n->start();
  } catch (...) {
    delete n;
    throw;
  }
  dist::NodeImpl* expected = nullptr;
  if (!dist::g_node.compare_exchange_strong(expected, n)) {
    delete n;
    throw std::logic_error("a Node is already running in this OS process");
  }
  runtime::set_remote_hooks(&dist::kHooks);
}

Node::~Node() {
  runtime::set_remote_hooks(nullptr);
  delete dist::g_node.exchange(nullptr);
}

Atom Node::name() const { return impl()->name(); }
std::uint16_t Node::port() const { return impl()->port(); }

namespace node {

Atom self() { return detail::local_node().name; }
bool alive() { return impl() != nullptr; }

std::vector<Atom> list() { return impl() ? impl()->connected() : std::vector<Atom>{}; }

bool connect(Atom n, std::string* error, std::chrono::milliseconds timeout) {
  auto* node = impl();
  if (node == nullptr) {
    if (error) *error = "this node is not alive (no Node)";
    return false;
  }
  auto w = std::make_shared<dist::Waiter>();
  node->enqueue({dist::Command::connect, n, {}, w});
  std::unique_lock lock(w->mu);
  if (!w->cv.wait_for(lock, timeout, [&] { return w->done; })) {
    if (error) *error = "timeout";
    return false;
  }
  if (error) *error = w->error;
  return w->ok;
}

void disconnect(Atom n) {
  if (auto* node = impl()) node->enqueue({dist::Command::disconnect, n, {}, nullptr});
}

bool ping(Atom n, std::chrono::milliseconds timeout) { return connect(n, nullptr, timeout); }

void monitor(Atom n, bool on) {
  const Pid me = nodus::self();
  if (me.is_null()) throw std::logic_error("node::monitor needs a calling process");
  auto* node = impl();
  if (node == nullptr) {
    if (on) send(me, tuple(atom("nodedown"), n));
    return;
  }
  node->enqueue({on ? dist::Command::monitor_node : dist::Command::demonitor_node, n, {}, nullptr, 0, me});
}

}  // namespace node

void register_function(std::string name, RemoteFunction f) {
  std::lock_guard lock(dist::g_functions_mu);
  dist::g_functions[std::move(name)] = std::move(f);
}

Pid spawn(Atom node_name, const std::string& function, Term args, const SpawnOptions& opts,
          std::chrono::milliseconds timeout) {
  if (opts.monitor) throw SpawnError("spawn with monitor on another node is not supported yet: spawn, then monitor(pid)");
  auto* node = impl();
  if (node == nullptr || node_name == node::self()) {
    auto f = dist::find_function(function);
    if (!f) throw SpawnError("no function " + function + " on " + std::string(node::self().name()));
    Proc p = (*f)(std::move(args));
    return detail::spawn_frame(p.release(), opts, {}, nullptr);
  }
  const Pid gl = opts.group_leader.is_null() ? group_leader() : opts.group_leader;
  const Pid me = self();
  const std::uint64_t req = node->next_request();
  std::string f;
  dist::Writer w(f);
  w.u8(dist::kWireVersion);
  w.u8(static_cast<std::uint8_t>(dist::Op::spawn_request));
  w.u64(req);
  w.u32(me.id);
  w.u32(me.serial);
  if (opts.link && me.is_null()) throw SpawnError("spawn with link needs a calling process");
  w.u8(opts.link ? 1 : 0);
  dist::encode_term(w, Term(gl));
  w.str8(function);
  dist::encode_term(w, args);
  auto waiter = std::make_shared<dist::Waiter>();
  node->enqueue({dist::Command::spawn, node_name, std::move(f), waiter, req, opts.link ? me : Pid{}});
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, timeout, [&] { return waiter->done; })) {
    throw SpawnError("timeout waiting for " + std::string(node_name.name()));
  }
  if (!waiter->ok) throw SpawnError(waiter->error);
  return waiter->pid;
}

namespace detail {
void deliver_remote_name(Atom name, Atom node_name, MsgNode* n) {
  auto* node = impl();
  if (node_name == node::self() || node == nullptr) {
    deliver_named(name, n);
    return;
  }
  if (!dist::can_travel(n)) {
    dist::warn_bad("message", "type " + std::string(n->type->name) + " cannot be sent to another node yet");
    n->type->destroy(n);
    return;
  }
  std::string frame = node->encode_send_name(name, n);
  n->type->destroy(n);
  node->enqueue({dist::Command::send, node_name, std::move(frame), nullptr});
}
}  // namespace detail

}  // namespace nodus
