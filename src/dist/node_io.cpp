// The node I/O thread: start/stop, the poll loop, connections to peers, losing a peer.
#include "node_impl.hpp"
#include "runtime/trace.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

namespace nodus::dist {


void warn_bad(const char* what, const std::string& detail) {
  log_limited(spdlog::level::warn, what, "dropped " + std::string(what) + ": " + detail);
}

std::atomic<NodeImpl*> g_node{nullptr};

// ------------------------------------------------------------------------------ NodeUse

namespace {
// One slot per thread that ever used the node: how deep in NodeUses it is. Only its thread
// writes it; wait_node_unused reads them all, under the registry's mutex (a thread that ends
// takes its slot out under it).
std::mutex g_slots_mu;
std::vector<std::atomic<int>*> g_slots;
struct SlotHolder {
  std::atomic<int> depth{0};
  SlotHolder() {
    std::lock_guard lock(g_slots_mu);
    g_slots.push_back(&depth);
  }
  ~SlotHolder() {
    std::lock_guard lock(g_slots_mu);
    g_slots.erase(std::find(g_slots.begin(), g_slots.end(), &depth));
  }
};
NODUS_TLS std::atomic<int>* tl_slot = nullptr;
std::atomic<int>* my_slot() {
  if (tl_slot == nullptr) {
    static thread_local SlotHolder holder;
    tl_slot = &holder.depth;
  }
  return tl_slot;
}
}  // namespace

NodeUse::NodeUse() : depth_(my_slot()) {
  // the slot is marked before g_node is read (both seq_cst): wait_node_unused, which runs
  // after g_node was cleared, sees the mark of every NodeUse that found the old node
  depth_->store(depth_->load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
  node_ = g_node.load(std::memory_order_seq_cst);
}

NodeUse::~NodeUse() { depth_->store(depth_->load(std::memory_order_relaxed) - 1, std::memory_order_release); }

void wait_node_unused() {
  const std::atomic<int>* mine = my_slot();  // (the thread running ~Node is not inside one)
  for (;;) {
    bool used = false;
    {
      std::lock_guard lock(g_slots_mu);
      for (const std::atomic<int>* d : g_slots) used = used || (d != mine && d->load(std::memory_order_seq_cst) != 0);
    }
    if (!used) return;
    std::this_thread::yield();
  }
}

// ------------------------------------------------------------------------------ start / stop

void NodeImpl::start() {
  if (!valid_node_name(opts_.name)) {
    throw std::runtime_error("bad node name '" + opts_.name + "': expected name@host");
  }
  name_ = Atom(opts_.name);
  detail::set_network_atom_budget(opts_.max_network_atoms);
  if (opts_.dist_buffer < 4096) {
    throw std::runtime_error("dist_buffer " + std::to_string(opts_.dist_buffer) + " is too small: at least 4096 bytes");
  }
  dist_buffer_ = opts_.dist_buffer;
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

  if (const char* t = std::getenv("NODUS_TRANSPORT"); t != nullptr && *t && std::string_view(t) != "native") {
    throw std::runtime_error(std::string("bad NODUS_TRANSPORT '") + t + "': only the native transport remains");
  }
  if (opts_.curve) {
    auto c = std::make_shared<zmtp::Curve>();
    c->server = true;
    if (zmq_z85_decode(c->secret_key.data(), opts_.curve->secret_key.c_str()) == nullptr ||
        zmq_z85_decode(c->public_key.data(), curve_public_.c_str()) == nullptr) {
      throw std::runtime_error("bad CURVE key");
    }
    c->allow = [this](const zmtp::Key& k) {
      char z85[41] = {};
      zmq_z85_encode(z85, k.data(), 32);
      return !allowed_label(z85).empty();
    };
    curve_server_ = std::move(c);
  }
  const std::string host = host_of(opts_.name);
  // bind to an address, not a DNS name: resolve the name's host
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
  listen(bind_host);
  if (opts_.use_portmapper) {
    const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
    pm_ = std::make_unique<PortmapperClient>("127.0.0.1", pmport);
    auto c = pm_->register_node(short_of(opts_.name), port_, curve_public_, &error, bind_host);
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
  resolver_ = std::thread([this] { resolver_loop(); });
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
  {
    std::lock_guard lock(rmu_);
  }
  rcv_.notify_all();
  resolver_.join();
  std::lock_guard io(io_mu_);  // a worker in poll_inbound finishes first (then sees stop_)
  {
    std::lock_guard lock(chan_mu_);  // no sender may find a stream that is about to close
    for (auto& [id, ch] : channels_) {
      std::lock_guard l(ch->mu);
      (void)ch->fail();
      ch->release();
    }
  }
  for (auto& [id, p] : peers_) {
    for (auto& w : p.waiters) w->finish(false, "this node stopped");
  }
  for (auto& [req, ps] : spawns_) {
    if (ps.waiter) ps.waiter->finish(false, "this node stopped");
  }
  spawns_.clear();
  peers_.clear();
  unnamed_.clear();
  conns_.clear();
  graveyard_.clear();
  if (listen_fd_ >= 0) ::close(std::exchange(listen_fd_, -1));
  if (spare_fd_ >= 0) ::close(std::exchange(spare_fd_, -1));
  if (epfd_ >= 0) ::close(std::exchange(epfd_, -1));
  pm_.reset();  // (wake_fd_ stays open until the destructor: a sender may still nudge it)
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

void NodeImpl::send_spawn(Command c) {
  std::unique_lock io(io_mu_, std::try_to_lock);
  if (io.owns_lock() && !stop_.load(std::memory_order_relaxed)) {
    bool queued;
    {
      std::lock_guard lock(qmu_);
      queued = !queue_.empty();  // (a command before it, of this thread or another, goes first)
    }
    auto it = peers_.find(c.node.id());
    if (!queued && it != peers_.end() && it->second.up) {
      spawns_[c.request] = PendingSpawn{c.node, c.waiter, c.link_from, c.flags, c.ref};
      send_control(c.node, c.frame);
      return;
    }
  }
  if (io.owns_lock()) io.unlock();
  enqueue(std::move(c));
}

void NodeImpl::wake_io() {
  // only a sleeping I/O thread needs the (syscall) nudge
  if (io_sleeping_.exchange(false, std::memory_order_seq_cst)) nudge_io();
}

void NodeImpl::nudge_io() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

// ------------------------------------------------------------------------------ sending

namespace {
NODUS_TLS Outbox* tl_outbox = nullptr;
}  // namespace
thread_local bool tl_nosuspend = false;
thread_local BulkMark tl_bulk_mark;

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
  const NodeUse use;
  NodeImpl* node = use.get();
  if (node != o->owner || node == nullptr) {  // the node stopped meanwhile
    o->buf.clear();
    return;
  }
  const bool data = std::exchange(o->data, false);
  const std::size_t records = std::exchange(o->records, 0);
  if (BulkMark& m = tl_bulk_mark; m.ch) {
    // what the process that queued a large message sends after it, until it leaves the thread,
    // follows that message
    bool pending = false;
    if (m.process == runtime::current()) {
      std::lock_guard lock(m.ch->mu);
      if (m.ch->find_bulk(m.id) != nullptr) {
        pending = true;
        const std::size_t bytes = o->buf.size();
        if (m.node == o->dest && m.ch->add_trailer(m.id, o->buf)) {
          add(m.ch->counters->msgs_out, records);
          add(m.ch->counters->bytes_out, bytes);
          return;
        }
      }
    }
    if (!pending) m = BulkMark{};  // it went (or its channel did), or another process runs here
  }
  node->send_records(o->dest, o->buf, on_worker_thread(), data, records);
}

void NodeImpl::send_large(Atom node, std::string record) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Channel> ch = channel(node);
    std::unique_lock lock(ch->mu);
    if (ch->state == Channel::down) continue;  // lost just now: a fresh channel reconnects
    bool wake = false;
    add(ch->counters->msgs_out, 1);
    add(ch->counters->bytes_out, record.size() + 4);
    const std::uint64_t id = ch->add_bulk(std::move(record), &wake);
    runtime::Process* p = runtime::current();
    bool block = false;
    if (p != nullptr && on_worker_thread() && !p->is_thread.load(std::memory_order_relaxed)) {
      (void)runtime::hold_current();  // (0 if a budget holds it already: the bulk keeps it held)
      Channel::Bulk& b = ch->bulk.back();
      b.holder = p;
      b.holder_ident = p->ident.load(std::memory_order_relaxed);
      tl_bulk_mark = BulkMark{ch, id, node, p};
    } else if (!on_worker_thread()) {
      block = true;  // a plain thread waits until it is all written
    }
    lock.unlock();
    if (wake) wake_io();
    if (block) {
      lock.lock();
      ch->drained.wait(lock, [&] { return ch->bulk_done >= id || ch->state == Channel::down; });
    }
    return;
  }
}

std::shared_ptr<Channel> NodeImpl::channel(Atom node) {
  bool opened = false;
  std::shared_ptr<Channel> ch;
  {
    std::lock_guard lock(chan_mu_);
    auto& slot = channels_[node.id()];
    if (!slot) {
      slot = std::make_shared<Channel>();
      auto& counters = peer_counters_[node.id()];
      if (!counters) counters = std::make_shared<PeerCounters>();
      slot->counters = counters;
      slot->high = dist_buffer_;
      slot->low = dist_buffer_ / 2;
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

// How far past its budget a channel may grow while the process sending to it keeps running
// without a suspension point (a loop that never waits): then its worker thread waits too.
constexpr std::size_t kHardBudgetFactor = 4;

void NodeImpl::send_records(Atom node, std::string& batch, bool stage, bool data, std::size_t records) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Channel> ch = channel(node);
    std::unique_lock lock(ch->mu);
    if (ch->state == Channel::down) continue;  // lost just now: a fresh channel reconnects
    add(ch->counters->msgs_out, records);
    add(ch->counters->bytes_out, batch.size());
    bool newly_staged = false;
    const bool wake = ch->submit(batch, stage, &newly_staged);
    if (newly_staged) {
      std::lock_guard dirty(dirty_mu_);
      dirty_.push_back(ch);
      runtime::g_remote_staged.store(true, std::memory_order_release);
    }
    // the send budget: the message is queued (never dropped); its sender waits for the queue
    // to drain to the low-water mark, or for the channel to go down
    bool block = false;
    if (data && ch->over_budget()) {
      observe::parts::note_busy_peer(node);
      if (const std::uint64_t id = runtime::hold_current()) {
        ch->held.emplace_back(runtime::current(), id);  // held at its next suspension point
        held_total_.fetch_add(1, std::memory_order_relaxed);
      } else if (runtime::on_internal_thread()) {
        // the timer's, the I/O thread's, the resolver's sends never wait
      } else if (!on_worker_thread()) {
        block = true;  // a plain thread (a Mailbox owner): waits here
      } else {
        // a process that keeps sending without a suspension point: its worker waits once
        // the queue is far past the budget
        block = runtime::current() != nullptr && ch->queued() > kHardBudgetFactor * ch->high;
      }
    }
    if (!block) {
      lock.unlock();
      if (wake) wake_io();
      return;
    }
    if (wake) {
      lock.unlock();
      wake_io();
      lock.lock();
    }
    held_total_.fetch_add(1, std::memory_order_relaxed);
    ch->drained.wait(lock, [&] { return !ch->busy || ch->state == Channel::down; });
    return;
  }
  batch.clear();
}

bool NodeImpl::busy(Atom node) {
  std::shared_ptr<Channel> ch;
  {
    std::lock_guard lock(chan_mu_);
    if (auto it = channels_.find(node.id()); it != channels_.end()) ch = it->second;
  }
  if (!ch) return false;
  std::lock_guard lock(ch->mu);
  return ch->state != Channel::down && (ch->busy || ch->queued() > ch->high);  // (over_budget, without setting busy)
}

bool NodeImpl::poll_inbound() {
  // the I/O thread waits for the lock (its heartbeats, the output it owns): it goes first. A
  // spinning worker re-took the lock microseconds after each release, before the woken I/O
  // thread ran, and under a stream of large messages kept it for seconds (ticks went unsent)
  if (io_wants_.load(std::memory_order_relaxed)) return false;
  std::unique_lock lock(io_mu_, std::try_to_lock);
  if (!lock.owns_lock() || stop_.load(std::memory_order_relaxed)) return false;
  const bool got = on_inbound() != 0;
  lock.unlock();
  if (got) {
    flush_outbox();  // what handling them sent (a DOWN for a dead pid...)
    if (runtime::g_remote_staged.load(std::memory_order_acquire)) flush_staged();
  }
  return got;
}

void NodeImpl::pollers_gone() {
  if (io_skips_inbound_.load(std::memory_order_seq_cst)) {
    io_sleeping_.store(false, std::memory_order_seq_cst);
    nudge_io();
  }
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
      wake = ch->flush_staged();  // (nothing if the channel went down: fail counted it as dropped)
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
void NodeImpl::release_senders(const std::shared_ptr<Channel>& ch) {
  if (!ch) return;
  std::lock_guard lock(ch->mu);
  ch->release();
}

std::shared_ptr<Channel> NodeImpl::fail_channel(Atom node, const std::string& why) {
  std::shared_ptr<Channel> ch;
  {
    std::lock_guard lock(chan_mu_);
    if (auto it = channels_.find(node.id()); it != channels_.end()) {
      ch = std::move(it->second);
      channels_.erase(it);
    }
  }
  if (!ch) return ch;
  std::size_t dropped = 0;
  std::vector<Pid> watchers;
  {
    std::lock_guard lock(ch->mu);
    dropped = ch->fail();
    watchers.swap(ch->node_watchers);
  }
  for (const Pid& w : watchers) runtime::deliver_local(w, detail::make_node(tuple(atom("nodedown"), node)));
  if (dropped) {
    warn_bad("message", std::to_string(dropped) + " bytes queued for " + std::string(node.name()) + " (" + why + ")");
  }
  return ch;
}


// ------------------------------------------------------------------------------ I/O thread

void NodeImpl::loop() {
  runtime::mark_internal_thread();  // its sends never wait on a send budget
  std::vector<pollfd> items;
  std::vector<std::uint64_t> owners;  // connection of items[i], 0 for the others
  std::unique_lock io(io_mu_);
  while (!stop_.load()) {
    graveyard_.clear();  // nobody polls or reads them any more
    drain_commands();
    const auto now = Clock::now();
    // connections that take too long to come up fail
    std::vector<Atom> expired;
    for (auto& [id, p] : peers_) {
      if (!p.up && now > p.deadline) expired.push_back(Atom::from_id(id));
    }
    for (Atom a : expired) peer_down(a, "connection timed out");
    // accepted connections that do not finish their handshake in time, whatever they send
    std::vector<Conn*> stale;
    for (auto& [id, c] : conns_) {
      if (!c->up && !c->ours() && now - c->since > opts_.handshake_timeout) stale.push_back(c.get());
    }
    for (Conn* c : stale) {
      const std::string why = "no handshake within " + std::to_string(opts_.handshake_timeout.count()) + " ms";
      log_limited(spdlog::level::warn, "handshake-timeout",
                  "** Connection attempt from " + c->addr + " closed: " + why + " **");
      if (auto it = c->peer == Atom() ? peers_.end() : peers_.find(c->peer.id()); it != peers_.end() && it->second.conn == c) {
        peer_down(c->peer, why);
      } else {
        close_conn(*c);
      }
    }
    Clock::time_point next_beat = Clock::time_point::max();
    heartbeats(now, &next_beat);

    items.clear();
    owners.clear();
    // every connection's input (whoever holds io_mu_ reads it), unless idle workers poll it as
    // they spin: then a message wakes no thread that sleeps on the socket. Dekker with the
    // last poller (pollers_gone): the flag first, then the count.
    io_skips_inbound_.store(true, std::memory_order_seq_cst);
    const bool skip_in = runtime::g_inbound_pollers.load(std::memory_order_seq_cst) > 0;
    if (!skip_in) io_skips_inbound_.store(false, std::memory_order_seq_cst);
    items.push_back({skip_in ? -1 : epfd_, POLLIN, 0});  // (a negative fd: poll ignores it)
    items.push_back({wake_fd_, POLLIN, 0});
    owners.insert(owners.end(), {0, 0});
    if (pm_ && pm_->registration_fd() >= 0) {
      items.push_back({pm_->registration_fd(), POLLIN, 0});
      owners.push_back(0);
    }
    const std::size_t first_conn = items.size();
    for (auto& [id, c] : conns_) {
      if (!c->stream) continue;
      bool out = c->tcp_connecting;
      if (c->channel) {
        std::lock_guard lock(c->channel->mu);
        out = out || c->stream->has_output() || (c->up && c->channel->io_owns);
      } else {
        out = out || c->stream->has_output();
      }
      if (out) {
        items.push_back({c->stream->fd(), POLLOUT, 0});
        owners.push_back(id);
      }
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
    int rc;
    if (skip_in) {
      // a worker that stopped polling because it found work does not wake this thread: the
      // input is looked at again after this short wait at most (a sleeping one wakes it)
      const timespec brief{0, std::min<long>(200'000, wait.count() * 1'000'000L)};
      rc = ::ppoll(items.data(), items.size(), &brief, nullptr);
    } else {
      rc = ::poll(items.data(), items.size(), static_cast<int>(wait.count()));
    }
    io_wants_.store(true, std::memory_order_relaxed);
    io.lock();
    io_wants_.store(false, std::memory_order_relaxed);
    NODUS_MARK(io_woke);
    io_sleeping_.store(false, std::memory_order_seq_cst);
    io_skips_inbound_.store(false, std::memory_order_seq_cst);
    on_inbound();  // always: a worker may have read some of it meanwhile
    if (rc <= 0) continue;
    if (items[1].revents & POLLIN) {
      std::uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof(v));
    }
    if (pm_ && first_conn > 2 && (items[2].revents & POLLIN)) {
      char buf[64];
      if (::recv(pm_->registration_fd(), buf, sizeof(buf), MSG_DONTWAIT) == 0) {
        logger().warn("lost the port mapper registration; other nodes cannot look {} up", opts_.name);
        pm_->unregister();
      }
    }
    for (std::size_t i = first_conn; i < items.size(); ++i) {
      if (!items[i].revents) continue;
      auto it = conns_.find(owners[i]);
      if (it == conns_.end() || it->second->closed) continue;
      flush_conn(*it->second);
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
        if (open_peer(c.node, &error) == nullptr) {
          // like Erlang, a send to a node that cannot be reached is dropped quietly; links and
          // monitors of it fire with noconnection
          logger().debug("no connection to {}: {}", c.node.name(), error);
          const std::shared_ptr<Channel> failed = fail_channel(c.node, error);
          fire_noconnection(c.node);
          release_senders(failed);
        }
        break;
      }
      case Command::connect: {
        std::string error;
        Peer* p = open_peer(c.node, &error);
        if (p == nullptr) {
          c.waiter->finish(false, error);
        } else if (p->up) {
          c.waiter->finish(true);
        } else {
          p->waiters.push_back(c.waiter);
        }
        break;
      }
      case Command::disconnect: peer_down(c.node, c.error.empty() ? "disconnected" : c.error); break;
      case Command::spawn: {
        std::string error;
        const PendingSpawn ps{c.node, c.waiter, c.link_from, c.flags, c.ref};
        if (open_peer(c.node, &error) == nullptr) {
          finish_spawn(c.request, ps, {}, "no connection to " + std::string(c.node.name()));
          break;
        }
        spawns_[c.request] = ps;
        send_control(c.node, c.frame);
        break;
      }
      case Command::resolved: on_resolved(c); break;
    }
  }
}

NodeImpl::Peer* NodeImpl::open_peer(Atom node, std::string* error) {
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
  if (auto u = unnamed_.find(name); u != unnamed_.end()) {
    // it is calling us (its HELLO came before this node knew its name): wait for that connection
    Peer& p = peers_[node.id()];
    p.conn = u->second;
    p.conn->peer = node;
    p.deadline = Clock::now() + std::chrono::seconds(10);
    unnamed_.erase(u);
    return &p;
  }
  Peer& p = peers_[node.id()];
  p.deadline = Clock::now() + std::chrono::seconds(7);
  for (const auto& [n, ep] : opts_.peers) {
    if (n == name && numeric_endpoint(ep)) {  // a static peer by address: no lookup at all
      if (!start_connect(node, ep, {}, error)) {
        peers_.erase(node.id());
        return nullptr;
      }
      return &peers_[node.id()];
    }
  }
  {
    std::lock_guard lock(rmu_);
    lookups_.push_back(node);
  }
  rcv_.notify_one();
  return &p;
}

bool numeric_endpoint(std::string_view ep) {
  if (ep.rfind("tcp://", 0) != 0) return true;  // (start_connect says what is wrong with it)
  const std::string host(ep.substr(6, ep.rfind(':') == std::string_view::npos ? std::string_view::npos : ep.rfind(':') - 6));
  in_addr a{};
  return host == "localhost" || ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

namespace {
// tcp://HOST:PORT with HOST resolved to an IPv4 address (blocking: the resolver thread only).
std::string resolve_endpoint(const std::string& host, const std::string& port, std::string* error) {
  if (host == "localhost") return "tcp://127.0.0.1:" + port;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr) {
    *error = "cannot resolve " + host + ": " + (rc != 0 ? ::gai_strerror(rc) : "no address");
    return {};
  }
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
  ::freeaddrinfo(res);
  return "tcp://" + std::string(buf) + ":" + port;
}
}  // namespace

// Port mapper lookups and host names of static peers, one at a time, each with its own deadline
// (portmapper.cpp, the system resolver's); answers go back to the I/O thread as commands.
void NodeImpl::resolver_loop() {
  runtime::mark_internal_thread();
  for (;;) {
    Atom node;
    {
      std::unique_lock lock(rmu_);
      rcv_.wait(lock, [&] { return stop_.load() || !lookups_.empty(); });
      if (stop_.load()) return;
      node = lookups_.front();
      lookups_.pop_front();
    }
    const std::string name(node.name());
    Command c{Command::resolved, node};
    std::string static_ep;
    for (const auto& [n, ep] : opts_.peers) {
      if (n == name) static_ep = ep;
    }
    if (!static_ep.empty()) {
      const std::string hp = static_ep.substr(6);
      c.frame = resolve_endpoint(hp.substr(0, hp.rfind(':')), hp.substr(hp.rfind(':') + 1), &c.error);
    } else {
      const std::string host = host_of(name);
      const std::uint16_t pmport = opts_.portmapper_port ? opts_.portmapper_port : portmapper_port();
      PortmapperClient pm(host, pmport);
      if (auto addr = pm.lookup(short_of(name), &c.error)) {
        c.frame = resolve_endpoint(host, std::to_string(addr->port), &c.error);
        c.key = addr->curve_key;
      }
    }
    {
      std::lock_guard lock(qmu_);
      queue_.push_back(std::move(c));
    }
    wake_io();
  }
}

void NodeImpl::on_resolved(Command& c) {
  auto it = peers_.find(c.node.id());
  if (it == peers_.end() || it->second.conn != nullptr || it->second.up) return;  // it called us meanwhile
  std::string error = c.error;
  if (c.frame.empty() || !start_connect(c.node, c.frame, c.key, &error)) {
    logger().debug("no connection to {}: {}", c.node.name(), error);
    peer_down(c.node, error);
  }
}

void NodeImpl::fire_noconnection(Atom node) {
  const PeerLinks::Lost lost = links_.take(node);
  for (const auto& [local, remote] : lost.links) {
    runtime::send_exit_signal(local, remote, atoms::noconnection(), true);
  }
  for (const auto& [ref, watcher, target] : lost.monitors) {
    runtime::deliver_down(watcher, ref, detail::make_node(Down{ref, target, atoms::noconnection()}));
  }
}

// The pair's connection is gone (or could not be made): one event for everything that
// depended on it.
void NodeImpl::peer_down(Atom node, const std::string& why) {
  auto it = peers_.find(node.id());
  if (it == peers_.end()) return;
  Peer p = std::move(it->second);
  peers_.erase(it);
  for (auto& w : p.waiters) w->finish(false, why);
  const std::shared_ptr<Channel> failed = fail_channel(node, why);
  if (p.conn) close_conn(*p.conn);
  if (p.up) {
    logger().info("node {} down: {}", node.name(), why);
    count_down(why);
    if (failed) add(failed->counters->downs, 1);
  }
  for (auto sp = spawns_.begin(); sp != spawns_.end();) {
    if (sp->second.node == node) {
      const PendingSpawn ps = sp->second;
      const std::uint64_t req = sp->first;
      sp = spawns_.erase(sp);
      finish_spawn(req, ps, {}, "no connection to " + std::string(node.name()));
    } else {
      ++sp;
    }
  }
  set_json_peer(node, false);
  fire_noconnection(node);
  release_senders(failed);  // now: their DOWNs and exit signals are in their mailboxes
  mark_up(node, false);
}

void NodeImpl::count_down(const std::string& why) {
  conns_down_.fetch_add(1, std::memory_order_relaxed);
  constexpr std::size_t kMaxReasons = 32, kReasonBytes = 80;
  // the reason's kind: what comes before the first ':' (its details vary: addresses, names)
  std::string kind = why.substr(0, std::min(why.find(':'), kReasonBytes));
  std::lock_guard lock(reasons_mu_);
  auto known = [&] { return std::find_if(down_reasons_.begin(), down_reasons_.end(), [&](const auto& r) { return r.first == kind; }); };
  auto it = known();
  if (it == down_reasons_.end() && down_reasons_.size() >= kMaxReasons) {
    kind = "other";  // the kinds seen first keep their rows
    it = known();
  }
  if (it != down_reasons_.end()) {
    ++it->second;
  } else {
    down_reasons_.emplace_back(std::move(kind), 1);
  }
}

void NodeImpl::mark_up(Atom node, bool up) {
  {
    std::lock_guard lock(list_mu_);
    const bool changed = up ? up_.insert(node).second : up_.erase(node) > 0;
    if (!changed) return;
  }
  // net_kernel:monitor_nodes: {nodeup, Node} / {nodedown, Node} to every watcher
  std::vector<Pid> tell;
  {
    std::lock_guard lock(g_node_watchers_mu);
    std::erase_if(g_node_watchers, [](const Pid& w) { return !is_process_alive(w); });
    tell = g_node_watchers;
  }
  for (const Pid& w : tell) runtime::deliver_local(w, detail::make_node(tuple(atom(up ? "nodeup" : "nodedown"), node)));
}

std::mutex g_node_watchers_mu;
std::vector<Pid> g_node_watchers;

// ------------------------------------------------------------------------------ CURVE keys

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
    if (curve_key_bound(*opts_.curve, from_portmapper, name)) return from_portmapper;
    if (!allowed_label(from_portmapper).empty()) {  // allowed, as another node: an impostor's entry
      *error = "its CURVE key " + from_portmapper + " (from the port mapper) is allowed only as " +
               curve_key_names(*opts_.curve, from_portmapper) + ", not as " + name;
      return {};
    }
    *error = "its CURVE key " + from_portmapper + " (from the port mapper) is not in --curve-allow";
    return {};
  }
  *error = "no CURVE key known for it: it is not registered with one (a cookie-mode node?) and no "
           "--curve-allow file is named " + short_name + ".pub or " + name + ".pub";
  return {};
}

}  // namespace nodus::dist
