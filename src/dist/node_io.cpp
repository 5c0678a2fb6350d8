// The node I/O thread: start/stop, the poll loop, connections to peers, losing a peer.
#include "node_impl.hpp"
#include "../runtime/trace.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace nodus::dist {

bool valid_node_name(std::string_view n) {
  const auto at = n.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < n.size() && n.size() <= 255 &&
         n.find('@', at + 1) == std::string_view::npos;
}


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

std::atomic<NodeImpl*> g_node{nullptr};

// ------------------------------------------------------------------------------ start / stop

void NodeImpl::start() {
  if (!valid_node_name(opts_.name)) {
    throw std::runtime_error("bad node name '" + opts_.name + "': expected name@host");
  }
  name_ = Atom(opts_.name);
  std::string error;
  if (opts_.curve) {
    // the keys are the credential; the handshake's MACs only bind the names (PROTOCOL.md 4)
    cookie_ = kCurveHandshakeKey;
    try {
      curve_public_ = curve_public_key(opts_.curve->secret_key);
    } catch (const std::exception& e) {
      throw std::runtime_error(e.what());
    }
  } else {
    auto cookie = resolve_cookie(opts_.cookie, &error);
    if (!cookie) throw std::runtime_error(error);
    cookie_ = *cookie;
  }

  // cookie mode speaks ZMTP natively (zmtp.hpp); CURVE mode, or $NODUS_TRANSPORT=zmq, libzmq
  const char* transport = std::getenv("NODUS_TRANSPORT");
  if (transport != nullptr && *transport && std::string_view(transport) != "zmq" &&
      std::string_view(transport) != "native") {
    throw std::runtime_error(std::string("bad NODUS_TRANSPORT '") + transport + "': expected native or zmq");
  }
  native_ = !opts_.curve && !(transport != nullptr && std::string_view(transport) == "zmq");
  const std::string host = host_of(opts_.name);
  // ZeroMQ binds to an address or an interface, not a DNS name: resolve the name's host
  std::string bind_host = host == "localhost" ? "127.0.0.1" : host;
  if (in_addr a{}; ::inet_pton(AF_INET, bind_host.c_str(), &a) != 1) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(bind_host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
      throw std::runtime_error("cannot resolve host '" + host + "' of node name " + opts_.name);
    }
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
    ::freeaddrinfo(res);
    bind_host = buf;
  }
  if (native_) {
    native_listen(bind_host);
  } else {
    router_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::router);
    router_->set(zmq::sockopt::router_mandatory, 1);
    router_->set(zmq::sockopt::maxmsgsize, kMaxFrame);
    router_->set(zmq::sockopt::linger, 0);
    if (opts_.curve) {
      // ZAP (RFC 27): libzmq asks this socket about every client key before accepting it
      zap_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::rep);
      zap_->set(zmq::sockopt::linger, 0);
      zap_->bind("inproc://zeromq.zap.01");
      router_->set(zmq::sockopt::curve_server, 1);
      router_->set(zmq::sockopt::curve_secretkey, opts_.curve->secret_key);
      router_->set(zmq::sockopt::zap_domain, "nodus");
    }
    if (zmq_socket_monitor(router_->handle(), "inproc://nodus-router-monitor",
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0) {
      router_monitor_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::pair);
      router_monitor_->connect("inproc://nodus-router-monitor");
    }
    try {
      router_->bind("tcp://" + bind_host + ":" + (opts_.listen_port ? std::to_string(opts_.listen_port) : "*"));
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot listen on " + bind_host + ": " + e.what());
    }
    router_fd_ = router_->get(zmq::sockopt::fd);
    const std::string ep = router_->get(zmq::sockopt::last_endpoint);
    port_ = static_cast<std::uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));
  }
  if (opts_.use_portmapper) {
    const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
    pm_ = std::make_unique<PortmapperClient>("127.0.0.1", pmport);
    auto c = pm_->register_node(short_of(opts_.name), port_, curve_public_, &error);
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
  logger().info("node {} up on port {} (creation {}, {})", opts_.name, port_, creation_,
                opts_.curve ? "CURVE key " + curve_public_ : std::string("cookie"));
}

void NodeImpl::stop() {
  if (!io_.joinable()) return;
  flush_staged();  // best effort: what workers staged goes out before the sockets close
  stop_ = true;
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  io_.join();
  std::lock_guard io(io_mu_);  // a worker in poll_inbound finishes first (then sees stop_)
  peers_.clear();
  in_conns_.clear();
  if (listen_fd_ >= 0) ::close(std::exchange(listen_fd_, -1));
  if (epfd_ >= 0) ::close(std::exchange(epfd_, -1));
  router_monitor_.reset();
  router_.reset();
  zap_.reset();
  pm_.reset();
  ::close(wake_fd_);
  detail::set_local_node(Atom("nonode@nohost"), 0);
}

void NodeImpl::enqueue(Command c) {
  flush_outbox();  // what this thread sent before stays ahead of the command
  {
    std::lock_guard lock(qmu_);
    queue_.push_back(std::move(c));
  }
  wake_io();
}

void NodeImpl::wake_io() {
  // only a sleeping I/O thread needs the (syscall) nudge
  if (io_sleeping_.exchange(false, std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
}

// ------------------------------------------------------------------------------ sending

namespace {
NODUS_TLS Outbox* tl_outbox = nullptr;
}  // namespace

Outbox& outbox() noexcept {
  if (tl_outbox == nullptr) {
    static thread_local Outbox box;  // destroyed with the thread
    box.buf.reserve(kBatchBytes + 1024);
    tl_outbox = &box;
  }
  runtime::tl_remote_pending = true;
  return *tl_outbox;
}

bool on_worker_thread() noexcept { return runtime::on_worker(); }

void NodeImpl::flush_outbox() {
  runtime::tl_remote_pending = false;
  Outbox* o = tl_outbox;
  if (o == nullptr || o->buf.empty()) return;
  NodeImpl* node = g_node.load(std::memory_order_acquire);
  if (node != o->owner || node == nullptr) {  // the node stopped meanwhile
    o->buf.clear();
    return;
  }
  node->send_records(o->dest, o->buf, on_worker_thread());
}

std::shared_ptr<Channel> NodeImpl::channel(Atom node) {
  bool opened = false;
  std::shared_ptr<Channel> ch;
  {
    std::lock_guard lock(chan_mu_);
    auto& slot = channels_[node.id()];
    if (!slot) {
      slot = std::make_shared<Channel>();
      opened = true;
    }
    ch = slot;
  }
  if (opened) {
    {
      std::lock_guard lock(qmu_);
      queue_.push_back({Command::open, node, {}, nullptr});
    }
    wake_io();
  }
  return ch;
}

void NodeImpl::send_records(Atom node, std::string& batch, bool stage) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Channel> ch = channel(node);
    std::unique_lock lock(ch->mu);
    if (ch->state == Channel::down) continue;  // lost just now: a fresh channel reconnects
    if (!ch->io_owns) {
      if (stage && ch->staged.size() + batch.size() < kBatchBytes) {
        ch->staged += batch;
        batch.clear();
        if (!ch->dirty) {
          ch->dirty = true;
          std::lock_guard dirty(dirty_mu_);
          dirty_.push_back(std::move(ch));
          runtime::g_remote_staged.store(true, std::memory_order_release);
        }
        return;
      }
      // up, nothing queued, and ours to use: straight onto the socket, after what is staged
      if (!ch->staged.empty()) {
        ch->staged += batch;
        batch.swap(ch->staged);
        ch->staged.clear();
      }
    }
    const bool wake = hand_over(*ch, batch);
    lock.unlock();
    if (wake) wake_io();
    return;
  }
  batch.clear();
}

bool NodeImpl::hand_over(Channel& ch, std::string& batch) {
  if (!ch.io_owns) {
    const Channel::Put put = ch.put(batch);
    if (put != Channel::Put::refused) {
      batch.clear();
      if (put == Channel::Put::sent) {
        NODUS_MARK(zmq_sent);
        return false;
      }
      ch.io_owns = true;  // the socket is full: the I/O thread drains what waits in the stream
      return true;
    }
  }
  return queue_for_io(ch, batch);  // not ours, or libzmq's high-water mark: the I/O thread sends it later
}

bool NodeImpl::queue_for_io(Channel& ch, std::string& batch) {
  ch.io_owns = true;  // high-water mark (or an error the I/O thread will see), or not up yet
  const bool was_empty = ch.pending.empty();
  ch.pending_bytes += batch.size();
  if (!was_empty && ch.pending.back().size() + batch.size() <= kBatchBytes) {
    ch.pending.back() += batch;  // small batches coalesce while they wait
    batch.clear();
  } else {
    ch.pending.push_back(std::move(batch));
    batch = std::string();
    batch.reserve(kBatchBytes + 1024);
  }
  return was_empty;
}

bool NodeImpl::poll_inbound() {
  std::unique_lock lock(io_mu_, std::try_to_lock);
  if (!lock.owns_lock() || stop_.load(std::memory_order_relaxed)) return false;
  const bool got = on_router() != 0;
  lock.unlock();
  if (got) {
    flush_outbox();  // what handling them sent (a DOWN for a dead pid...)
    if (runtime::g_remote_staged.load(std::memory_order_acquire)) flush_staged();
  }
  return got;
}

void NodeImpl::flush_staged() {
  static thread_local std::vector<std::shared_ptr<Channel>> dirty;  // swapped in: no allocation
  {
    std::lock_guard lock(dirty_mu_);
    dirty.swap(dirty_);
    runtime::g_remote_staged.store(false, std::memory_order_relaxed);
  }
  for (auto& ch : dirty) {
    bool wake = false;
    {
      std::lock_guard lock(ch->mu);
      ch->dirty = false;
      if (ch->staged.empty()) continue;
      if (ch->state == Channel::down) {  // fail_channel counted it as dropped
        ch->staged.clear();
        continue;
      }
      wake = hand_over(*ch, ch->staged);
    }
    if (wake) wake_io();
  }
  dirty.clear();
}

void NodeImpl::monitor_node(Atom node, const Pid& watcher, bool on) {
  if (!on) {  // removes one monitor; no channel means none to remove (and no reason to connect)
    std::shared_ptr<Channel> ch;
    {
      std::lock_guard lock(chan_mu_);
      if (auto it = channels_.find(node.id()); it != channels_.end()) ch = it->second;
    }
    if (!ch) return;
    std::lock_guard lock(ch->mu);
    auto& w = ch->node_watchers;
    if (auto it = std::find(w.begin(), w.end(), watcher); it != w.end()) w.erase(it);
    return;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Channel> ch = channel(node);
    std::lock_guard lock(ch->mu);
    if (ch->state == Channel::down) continue;  // lost just now: a fresh channel reconnects
    ch->node_watchers.push_back(watcher);
    return;
  }
  runtime::deliver_local(watcher, detail::make_node(tuple(atom("nodedown"), node)));
}

// The connection to `node` cannot be made, or is lost: drop what was queued for it and tell
// the node's monitors.
void NodeImpl::fail_channel(Atom node, const std::string& why) {
  std::shared_ptr<Channel> ch;
  {
    std::lock_guard lock(chan_mu_);
    if (auto it = channels_.find(node.id()); it != channels_.end()) {
      ch = std::move(it->second);
      channels_.erase(it);
    }
  }
  if (!ch) return;
  std::size_t dropped = 0;
  std::vector<Pid> watchers;
  {
    std::lock_guard lock(ch->mu);
    ch->state = Channel::down;
    ch->dealer = nullptr;
    ch->stream = nullptr;
    dropped = ch->pending_bytes + ch->staged.size();
    ch->pending.clear();
    ch->pending_bytes = 0;
    ch->staged.clear();
    watchers.swap(ch->node_watchers);
  }
  for (const Pid& w : watchers) runtime::deliver_local(w, detail::make_node(tuple(atom("nodedown"), node)));
  if (dropped) {
    warn_bad("message", std::to_string(dropped) + " bytes queued for " + std::string(node.name()) + " (" + why + ")");
  }
}

namespace {
// One frame as a message of one record: [u32 length][frame].
std::string one_record(std::string_view frame) {
  std::string rec;
  rec.reserve(frame.size() + 4);
  const auto len = static_cast<std::uint32_t>(frame.size());
  rec.append(reinterpret_cast<const char*>(&len), 4);
  rec.append(frame);
  return rec;
}
}  // namespace

void NodeImpl::send_raw(zmq::socket_t& s, std::string_view frame) {
  const std::string rec = one_record(frame);
  (void)zmq_send(s.handle(), rec.data(), rec.size(), ZMQ_DONTWAIT);
}

// ------------------------------------------------------------------------------ I/O thread

void NodeImpl::loop() {
  std::vector<zmq::pollitem_t> items;
  std::vector<std::uint32_t> owners;  // peer (atom id) of items[i], 0 for router/wake/pm
  std::vector<bool> is_monitor;
  std::unique_lock io(io_mu_);
  while (!stop_.load()) {
    drain_commands();
    // handshakes that take too long fail
    const auto now = Clock::now();
    std::vector<Atom> expired;
    for (auto& [id, p] : peers_) {
      if (p.state != Peer::up && now > p.deadline) expired.push_back(Atom::from_id(id));
    }
    for (Atom a : expired) peer_down(a, "connection timed out");
    Clock::time_point next_beat = Clock::time_point::max();
    if (native_) heartbeats(now, &next_beat);
    for (auto it = inbound_.begin(); it != inbound_.end();) {
      it = (!it->second.authenticated && now - it->second.since > std::chrono::seconds(10))
               ? inbound_.erase(it)
               : std::next(it);
    }
    if (native_) {  // native connections that never complete a handshake are closed
      std::vector<InConn*> stale;
      for (auto& [rid, c] : in_conns_) {
        auto in = inbound_.find(rid);
        if ((in == inbound_.end() || !in->second.authenticated) && now - c->since > std::chrono::seconds(10)) {
          stale.push_back(c.get());
        }
      }
      for (InConn* c : stale) close_inbound(c);
    }

    items.clear();
    owners.clear();
    is_monitor.clear();
    // the ROUTER's signalling fd, not the socket: workers may use the socket meanwhile
    items.push_back({nullptr, native_ ? epfd_ : router_fd_, ZMQ_POLLIN, 0});
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    owners.insert(owners.end(), {0, 0});
    is_monitor.insert(is_monitor.end(), {false, false});
    if (pm_ && pm_->registration_fd() >= 0) {
      items.push_back({nullptr, pm_->registration_fd(), ZMQ_POLLIN, 0});
      owners.push_back(0);
      is_monitor.push_back(false);
    }
    const std::size_t zap_at = items.size();
    if (zap_) {
      items.push_back({zap_->handle(), 0, ZMQ_POLLIN, 0});
      owners.push_back(0);
      is_monitor.push_back(false);
    }
    const std::size_t rmon_at = items.size();
    if (router_monitor_) {
      items.push_back({router_monitor_->handle(), 0, ZMQ_POLLIN, 0});
      owners.push_back(0);
      is_monitor.push_back(false);
    }
    for (auto& [id, p] : peers_) {
      bool owned, out;
      {
        std::lock_guard lock(p.channel->mu);
        owned = p.channel->io_owns;
        out = p.state == Peer::up && !p.channel->pending.empty();
        if (p.stream) out = p.tcp_connecting || p.stream->has_output() || (owned && out);
      }
      if (p.stream) {  // native: the socket itself, read (and written while it backs up) here
        items.push_back({nullptr, p.stream->fd(), static_cast<short>(ZMQ_POLLIN | (out ? ZMQ_POLLOUT : 0)), 0});
        owners.push_back(id);
        is_monitor.push_back(false);
        continue;
      }
      if (owned) {
        items.push_back({p.dealer->handle(), 0, static_cast<short>(ZMQ_POLLIN | (out ? ZMQ_POLLOUT : 0)), 0});
        owners.push_back(id);
        is_monitor.push_back(false);
      }
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
    io.unlock();
    auto wait = std::chrono::milliseconds(have_work ? 0 : 250);
    if (next_beat != Clock::time_point::max()) {
      wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(next_beat - Clock::now()),
                        std::chrono::milliseconds(0), wait);
    }
    const int rc = zmq::poll(items.data(), items.size(), wait);
    io.lock();
    NODUS_MARK(io_woke);
    io_sleeping_.store(false, std::memory_order_seq_cst);
    // always: the fd only signals edges, and a worker may have read some of it meanwhile
    on_router();
    if (rc <= 0) continue;
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
    }
    if (zap_ && (items[zap_at].revents & ZMQ_POLLIN)) on_zap();
    if (router_monitor_ && (items[rmon_at].revents & ZMQ_POLLIN)) on_router_monitor();
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
      if (it->second.stream) {
        on_native_peer(it->second, items[i].revents);
      } else if (is_monitor[i]) {
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
      case Command::open: {
        std::string error;
        if (connect_peer(c.node, &error) == nullptr) {
          // like Erlang, a send to a node that cannot be reached is dropped quietly; links and
          // monitors of it fire with noconnection
          logger().debug("no connection to {}: {}", c.node.name(), error);
          fail_channel(c.node, error);
          fire_noconnection(c.node);
        }
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
      case Command::spawn: {
        std::string error;
        const PendingSpawn ps{c.node, c.waiter, c.link_from, c.flags, c.ref};
        if (connect_peer(c.node, &error) == nullptr) {
          finish_spawn(c.request, ps, {}, "no connection to " + std::string(c.node.name()));
          break;
        }
        spawns_[c.request] = ps;
        send_control(c.node, c.frame);
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
  std::string endpoint, mapper_key;
  for (const auto& [n, ep] : opts_.peers) {
    if (n == name) endpoint = ep;
  }
  const bool static_peer = !endpoint.empty();
  if (endpoint.empty()) {
    std::string host = host_of(name);
    const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
    PortmapperClient pm(host, pmport);
    auto addr = pm.lookup(short_of(name), error);
    if (!addr) return nullptr;
    if (host == "localhost") host = "127.0.0.1";
    endpoint = "tcp://" + host + ":" + std::to_string(addr->port);
    mapper_key = addr->curve_key;
  }
  Peer p;
  p.name = name;
  if (native_) {
    if (!mapper_key.empty()) {
      p.hint = name + " requires CURVE (it registered a CURVE key); this node is in cookie mode";
    }
    if (native_connect(p, endpoint, error) == nullptr) return nullptr;
  } else {
    p.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    if (opts_.curve) {
      std::string server_key = server_key_for(name, mapper_key, error);
      if (server_key.empty() && !mapper_key.empty()) {  // a key we do not trust: never talk to it
        logger().error("** Not connecting to node {}: {} **", name, *error);
        return nullptr;
      }
      if (server_key.empty()) {
        // most likely a cookie-mode node: a handshake with a throwaway server key cannot succeed,
        // but lets that node see (and log) the attempt
        char pub[41], sec[41];
        zmq_curve_keypair(pub, sec);
        server_key = pub;
        p.hint = static_peer ? "no CURVE key known for static peer " + name + ": add ,key=FILE.pub to its --peer, or name its file " +
                                   short_of(name) + ".pub in --curve-allow"
                             : *error;
      }
      p.dealer->set(zmq::sockopt::curve_serverkey, server_key);
      p.dealer->set(zmq::sockopt::curve_publickey, curve_public_);
      p.dealer->set(zmq::sockopt::curve_secretkey, opts_.curve->secret_key);
    } else if (!mapper_key.empty()) {
      p.hint = name + " requires CURVE (it registered a CURVE key); this node is in cookie mode";
    }
    p.dealer->set(zmq::sockopt::linger, 0);
    p.dealer->set(zmq::sockopt::reconnect_ivl, -1);  // a lost peer is down, not silently retried
    // only handshake answers come back on this socket; anything else is not read for long
    p.dealer->set(zmq::sockopt::maxmsgsize, std::int64_t{4096});
    p.dealer->set(zmq::sockopt::rcvhwm, 64);
    const int tick = static_cast<int>(opts_.ticktime.count());
    // a silent peer is noticed between timeout and timeout + ivl: 7/8 T + [0, 1/4 T] is centred
    // on the tick, like Erlang's 3/4 T .. 5/4 T
    p.dealer->set(zmq::sockopt::heartbeat_ivl, std::max(1, tick / 4));
    p.dealer->set(zmq::sockopt::heartbeat_timeout, std::max(1, tick - tick / 8));
    p.dealer->set(zmq::sockopt::heartbeat_ttl, std::max(100, tick));
    const std::string mon = "inproc://nodus-monitor-" + std::to_string(++monitor_seq_);
    if (zmq_socket_monitor(p.dealer->handle(), mon.c_str(), kLostEvents) != 0) {
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
  send_peer(p, hello);
  logger().debug("connecting to {} at {}", name, endpoint);
  p.channel = channel(node);
  {
    std::lock_guard lock(p.channel->mu);
    p.channel->dealer = p.dealer.get();
    p.channel->stream = p.stream.get();
  }
  return &peers_.emplace(node.id(), std::move(p)).first->second;
}

// I/O thread, while it owns the socket: sends what is queued, then hands the socket back to
// the sending threads.
void NodeImpl::flush(Peer& p) {
  Channel& ch = *p.channel;
  std::lock_guard lock(ch.mu);
  if (p.stream && !p.stream->flush()) return;  // the socket is full: POLLOUT
  if (p.state != Peer::up) return;
  while (!ch.pending.empty()) {
    const std::string& b = ch.pending.front();
    const Channel::Put put = ch.put(b);
    if (put == Channel::Put::refused) return;  // HWM: POLLOUT
    ch.pending_bytes -= b.size();
    ch.pending.pop_front();
    if (put == Channel::Put::waiting) return;  // in the stream; POLLOUT
  }
  ch.state = Channel::up;
  ch.io_owns = false;
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
  fail_channel(node, why);
  {  // the sockets go with `p`: no thread may find them on its channel any more
    std::lock_guard lock(p.channel->mu);
    p.channel->state = Channel::down;
    p.channel->dealer = nullptr;
    p.channel->stream = nullptr;
  }
  if (was_up) logger().info("node {} down: {}", p.name, why);
  for (auto sp = spawns_.begin(); sp != spawns_.end();) {
    if (sp->second.node == node) {
      finish_spawn(sp->first, sp->second, {}, "no connection to " + p.name);
      sp = spawns_.erase(sp);
    } else {
      ++sp;
    }
  }
  peers_.erase(it);
  set_json_peer(node, false);
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

void NodeImpl::send_peer(Peer& p, std::string_view frame) {
  if (!p.stream) {
    send_raw(*p.dealer, frame);
    return;
  }
  std::unique_lock<std::mutex> lock;
  if (p.channel) lock = std::unique_lock(p.channel->mu);
  (void)p.stream->send(one_record(frame));  // handshake: the I/O thread owns the socket; POLLOUT drains it
}

void NodeImpl::send_router(const std::string& rid, const std::string& frame) {
  if (native_) {
    auto it = in_conns_.find(rid);
    if (it == in_conns_.end()) return;  // the peer is gone already; nothing to answer
    (void)it->second->stream->send(one_record(frame));  // small; what does not fit waits for the next read
    return;
  }
  try {
    router_->send(zmq::buffer(rid), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    send_raw(*router_, frame);
  } catch (const zmq::error_t&) {
    // ROUTER_MANDATORY: the peer is gone already; nothing to answer
  }
}


// ------------------------------------------------------------------------------ CURVE

std::string NodeImpl::allowed_label(std::string_view z85) const {
  if (!opts_.curve) return {};
  for (const auto& [key, label] : opts_.curve->allowed) {
    if (key == z85) return label;  // never empty: a file's name, or the --peer's node name
  }
  return {};
}

std::string NodeImpl::server_key_for(const std::string& name, const std::string& from_portmapper,
                                     std::string* error) const {
  // a static peer's key: the allowed key labelled with its full or short name
  const std::string short_name = short_of(name);
  for (const auto& [key, label] : opts_.curve->allowed) {
    if (label == name || label == short_name) return key;
  }
  if (!from_portmapper.empty()) {
    if (!allowed_label(from_portmapper).empty()) return from_portmapper;
    *error = "its CURVE key " + from_portmapper + " (from the port mapper) is not in --curve-allow";
    return {};
  }
  *error = "no CURVE key known for it: it is not registered with one (a cookie-mode node?) and no "
           "--curve-allow file is named " + short_name + ".pub or " + name + ".pub";
  return {};
}

// ZAP (RFC 27): version, request id, domain, address, identity, mechanism, credentials ->
// version, request id, status code, status text, user id, metadata.
void NodeImpl::on_zap() {
  for (;;) {
    std::vector<zmq::message_t> req;
    zmq::message_t part;
    if (!zap_->recv(part, zmq::recv_flags::dontwait)) return;
    req.push_back(std::move(part));
    while (req.back().more() && req.size() < 16) {
      zmq::message_t more;
      if (!zap_->recv(more, zmq::recv_flags::dontwait)) break;
      req.push_back(std::move(more));
    }
    std::string status = "400", text = "not allowed", user;
    const std::string request_id = req.size() > 1 ? req[1].to_string() : std::string();
    if (req.size() >= 7 && req[0].to_string_view() == "1.0" && req[5].to_string_view() == "CURVE" &&
        req[6].size() == 32) {
      char z85[41] = {};
      zmq_z85_encode(z85, static_cast<const std::uint8_t*>(req[6].data()), 32);
      const std::string address = req[3].to_string();
      user = allowed_label(z85);
      if (!user.empty()) {
        status = "200";
        text = "OK";
        logger().debug("CURVE key {} ({}) accepted from {}", z85, user, address);
      } else {
        logger().error("** Connection attempt from {} rejected: its CURVE key {} is not in --curve-allow **",
                       address, z85);
      }
    } else {
      logger().error("** Connection attempt rejected: not a CURVE ZAP request **");
    }
    zap_->send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(status), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(text), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(user), zmq::send_flags::sndmore);
    zap_->send(zmq::str_buffer(""), zmq::send_flags::none);
  }
}

bool read_event(zmq::socket_t& mon, std::uint16_t* event, std::uint32_t* value, std::string* endpoint) {
  zmq::message_t ev, addr;
  if (!mon.recv(ev, zmq::recv_flags::dontwait)) return false;
  if (ev.more()) (void)mon.recv(addr, zmq::recv_flags::dontwait);
  *event = 0;
  *value = 0;
  if (ev.size() >= 6) {
    std::memcpy(event, ev.data(), 2);
    std::memcpy(value, static_cast<const char*>(ev.data()) + 2, 4);
  }
  if (endpoint) *endpoint = addr.to_string();
  return true;
}

// Handshakes our ROUTER refused at the ZeroMQ level (a CURVE/cookie mix, a wrong server key).
// ZeroMQ does not say who the peer was: ZAP refusals are logged by on_zap with the address.
void NodeImpl::on_router_monitor() {
  std::uint16_t event;
  std::uint32_t value;
  std::string endpoint;
  while (read_event(*router_monitor_, &event, &value, &endpoint)) {
    std::string why;
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      why = opts_.curve ? "the peer does not use CURVE (a cookie-mode node?); this node requires it"
                        : "the peer uses CURVE; this node is in cookie mode";
    } else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
      why = "CURVE handshake failed: the peer does not have this node's public key " + curve_public_;
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      why = "protocol error " + std::to_string(value);
    } else {
      // the peer hung up first: a cookie/CURVE mix where it noticed first, or a CURVE peer
      // that does not have this node's key
      why = "the peer hung up during the ZeroMQ handshake (a cookie/CURVE mix, or a wrong key)";
    }
    logger().error("** Connection attempt on {} rejected: {} **", endpoint, why);
  }
}

std::string handshake_failure(std::uint16_t event, std::uint32_t value, const std::string& peer, bool curve) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    return peer + " refused this node's CURVE key (not in its --curve-allow)";
  }
  if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
    return curve ? peer + " does not use CURVE (a cookie-mode node?)"
                 : peer + " requires CURVE; this node is in cookie mode (start it with --curve-key)";
  }
  if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) return "CURVE handshake with " + peer + " failed (wrong key)";
  return "handshake with " + peer + " failed: it hung up (" +
         (curve ? std::string("is the key this node has for it right?") : std::string("does it use CURVE?")) + ")";
}

}  // namespace nodus::dist
