// Connections to other nodes (docs/PROTOCOL.md section 2): the listening socket, connections we
// open and accept, the handshake on each, which one a pair keeps, heartbeats, and losing one.
// Each connection is a zmtp::Stream (ZMTP 3.1, NULL or CURVE) on a non-blocking TCP socket;
// every socket sits in one epoll set that whoever holds io_mu_ reads (the I/O thread, or an
// idle worker). What the frames mean is node_frames.cpp.
#include "node_impl.hpp"
#include "runtime/trace.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <sys/epoll.h>
#include <zmq.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace nodus::dist {

namespace {

void tune(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as libzmq does
}

std::string errno_text() { return std::strerror(errno); }

// One frame as a message of one record: [u32 length][frame].
std::string one_record(std::string_view frame) {
  std::string rec;
  rec.reserve(frame.size() + 4);
  Writer(rec).u32(static_cast<std::uint32_t>(frame.size()));
  rec.append(frame);
  return rec;
}

std::string address_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "?";
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
  return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
}

// Splits a ZMTP message into its records; false (and a log line) if it is malformed.
template <class F>
bool for_each_record(std::string_view msg, std::string_view from, F&& f) {
  Reader r(msg);
  while (!r.at_end()) {
    const std::uint32_t len = r.u32();
    auto rec = r.bytes(len);
    if (!r.ok()) {
      warn_bad("frame", "truncated record (" + std::to_string(msg.size()) + " bytes) from " + std::string(from));
      return false;
    }
    if (!f(rec)) return false;
  }
  return true;
}

}  // namespace

void NodeImpl::listen(const std::string& host) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(opts_.listen_port);
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    throw std::runtime_error("cannot listen on " + host + ": not an IPv4 address");
  }
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("cannot listen on " + host + ": " + errno_text());
  const int one = 1;
  (void)::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(listen_fd_, 128) != 0) {
    const std::string why = errno_text();
    ::close(std::exchange(listen_fd_, -1));
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(opts_.listen_port) + ": " + why);
  }
  socklen_t len = sizeof(a);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // (accept_all: out of descriptors)
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listening socket
  if (epfd_ < 0 || ::epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
    throw std::runtime_error("cannot listen on " + host + ": epoll: " + errno_text());
  }
}

void NodeImpl::accept_all() {
  for (;;) {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if ((errno == EMFILE || errno == ENFILE) && spare_fd_ >= 0) {
        // out of descriptors: the listening socket would stay readable (a busy loop) and the
        // connection wait in the backlog; take it with the spare descriptor and close it
        ::close(std::exchange(spare_fd_, -1));
        const int taken = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (taken >= 0) ::close(taken);
        spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        log_limited(spdlog::level::warn, "accept",
                    "** Connection attempt closed: this process is out of file descriptors **");
        continue;
      }
      return;
    }
    const std::uint32_t ip = from.sin_addr.s_addr;
    std::size_t& from_ip = handshaking_from_[ip];
    if (handshaking_ >= opts_.max_handshakes || from_ip >= opts_.max_handshakes_per_address) {
      // unauthenticated connections are bounded, in all and per address: closed at once
      const bool per_address = handshaking_ < opts_.max_handshakes;
      if (from_ip == 0) handshaking_from_.erase(ip);
      char buf[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &from.sin_addr, buf, sizeof(buf));
      ::close(fd);
      log_limited(spdlog::level::warn, "handshakes",
                  "** Connection attempt from " + std::string(buf) + " closed: " +
                      (per_address ? std::to_string(opts_.max_handshakes_per_address) +
                                         " connections from that address are in their handshake "
                                         "(max_handshakes_per_address) **"
                                   : std::to_string(opts_.max_handshakes) +
                                         " connections are in their handshake (max_handshakes) **"));
      continue;
    }
    tune(fd);
    auto c = std::make_unique<Conn>(Handshake(Handshake::Role::acceptor, std::string(name_.name()), creation_,
                                              cookie_, 0));
    c->id = ++next_conn_;
    c->since = Clock::now();
    c->addr = address_of(fd);
    c->ip = ip;
    c->counted = true;
    ++from_ip;
    ++handshaking_;
    c->stream = std::make_unique<zmtp::Stream>(fd, "ROUTER", kMaxFrame, true, curve_server_);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c.get();
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      uncount(*c);
      continue;  // closed with c
    }
    conns_.emplace(c->id, std::move(c));
  }
}

void NodeImpl::uncount(Conn& c) {
  if (!c.counted) return;
  c.counted = false;
  --handshaking_;
  if (auto it = handshaking_from_.find(c.ip); it != handshaking_from_.end() && --it->second == 0) {
    handshaking_from_.erase(it);
  }
}

std::size_t NodeImpl::on_inbound() {
  std::size_t handled = 0;
  epoll_event evs[32];
  for (;;) {
    const int n = ::epoll_wait(epfd_, evs, 32, 0);
    if (n <= 0) return handled;
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (c == nullptr) {
        accept_all();
        continue;
      }
      if (c->closed || !c->stream) continue;  // closed by an earlier event of this batch
      zmtp::Stream& s = *c->stream;
      const auto read = s.read(64, [&](std::string_view m) {
        NODUS_MARK(router_read);
        ++handled;
        if (s.take_multipart()) warn_bad("frame", "unexpected multipart message");
        return on_message(*c, m);
      });
      if (read == zmtp::Stream::Read::stopped || c->closed) continue;
      if (s.writes_due()) {
        if (c->channel) {
          std::lock_guard lock(c->channel->mu);
          if (!s.service()) c->channel->give_to_io();
        } else {
          (void)s.service();
        }
      }
      if (read == zmtp::Stream::Read::closed) {
        conn_lost(*c, s.failed() ? s.error() : "connection closed");
      }
    }
    if (n < 32) return handled;
  }
}

bool NodeImpl::on_message(Conn& c, std::string_view m) {
  if (c.up) {
    const PeerRef from{c.peer, c.hs.peer_creation()};
    // (held here: handling a record may close the connection and drop its channel)
    const std::shared_ptr<PeerCounters> k = c.channel ? c.channel->counters : nullptr;
    std::uint64_t records = 0;
    for_each_record(m, from.name(), [&](std::string_view rec) {
      ++records;
      if (rec.size() >= 2 && static_cast<std::uint8_t>(rec[0]) == kWireVersion &&
          static_cast<Op>(rec[1]) == Op::fragment) {
        on_fragment(c, from, rec);
      } else {
        deliver_frame(from, rec);
      }
      return true;
    });
    if (k) {
      add(k->bytes_in, m.size());
      add(k->msgs_in, records);
    }
    return !c.closed;
  }
  bool open = true;
  for_each_record(m, c.addr, [&](std::string_view rec) {
    if (c.up) {  // what followed the handshake in the same message
      deliver_frame(PeerRef{c.peer, c.hs.peer_creation()}, rec);
      return true;
    }
    open = on_handshake_frame(c, rec);
    return open;
  });
  return open && !c.closed;
}

void NodeImpl::on_fragment(Conn& c, const PeerRef& from, std::string_view frame) {
  Reader r(frame.substr(2));  // (version and op checked by the caller)
  const std::uint64_t id = r.u64(), offset = r.u64(), total = r.u64();
  const std::string_view chunk = r.rest();
  // c.partial_bytes is the sum of the unfinished messages' declared totals (what their buffers
  // are reserved for), so the bound holds for memory, not only for what came
  auto forget = [&](std::unordered_map<std::uint64_t, Conn::Partial>::iterator it) {
    c.partial_bytes -= it->second.total;
    c.partial.erase(it);
  };
  auto bad = [&](const char* why) {
    warn_bad("frame", std::string("FRAGMENT from ") + std::string(from.name()) + ": " + why);
    if (auto it = c.partial.find(id); it != c.partial.end()) forget(it);
  };
  if (!r.ok() || chunk.empty() || chunk.size() > kFragmentBytes || total <= kFragmentBytes ||
      total > kMaxMessageBytes || offset + chunk.size() > total) {
    return bad("malformed");
  }
  auto it = c.partial.find(id);
  if (offset == 0) {
    if (it != c.partial.end()) return bad("a message restarted");
    if (c.partial.size() >= kMaxPartials || c.partial_bytes + total > kMaxMessageBytes) {
      warn_bad("frame", "FRAGMENT from " + std::string(from.name()) + ": too many unfinished messages");
      return;
    }
    it = c.partial.emplace(id, Conn::Partial{std::string(), total}).first;
    c.partial_bytes += total;
    it->second.bytes.reserve(total);
  } else if (it == c.partial.end() || it->second.bytes.size() != offset || it->second.total != total) {
    return bad("a fragment out of place");
  }
  it->second.bytes.append(chunk);
  if (it->second.bytes.size() < total) return;
  const std::string whole = std::move(it->second.bytes);
  forget(it);
  if (whole.size() >= 2 && static_cast<Op>(whole[1]) == Op::fragment) return bad("a fragment of fragments");
  deliver_frame(from, whole);
}

void NodeImpl::write_frame(Conn& c, std::string_view frame) {
  if (!c.stream) return;  // (fuzzing)
  zmtp::Stream& s = *c.stream;
  // what the reader saw first (the peer's greeting lets our READY go): a REFUSE written just
  // before the connection closes must not wait behind it
  auto put = [&] {
    if (s.writes_due()) (void)s.service();
    return s.send(one_record(frame));
  };
  if (c.channel) {
    std::lock_guard lock(c.channel->mu);
    if (!put()) c.channel->give_to_io();
  } else {
    (void)put();  // small; what does not fit leaves on POLLOUT
  }
}

bool NodeImpl::on_handshake_frame(Conn& c, std::string_view frame) {
  Handshake::Step st = c.hs.on_frame(frame);
  for (const std::string& f : st.frames) write_frame(c, f);
  const std::string who = c.peer == Atom() ? "a peer at " + c.addr : std::string(c.peer.name());
  switch (st.kind) {
    case Handshake::Step::wait: return true;
    case Handshake::Step::hello: return on_hello(c);
    case Handshake::Step::up: became_up(c); return true;
    case Handshake::Step::simultaneous: {
      // it keeps the connection it opened to us: ours goes, and its arrives (the deadline holds)
      logger().debug("{} calls us at the same time; its connection wins", who);
      auto it = peers_.find(c.peer.id());
      if (it != peers_.end() && it->second.conn == &c) it->second.conn = nullptr;
      close_conn(c);
      return false;
    }
    case Handshake::Step::refused:
      if (c.ours()) {
        logger().error("** Connection to node {} refused: {} **", who, st.why);
      } else if (count_refused(); st.why == "invalid challenge reply") {
        log_limited(spdlog::level::err, "refusal",
                    "** Connection attempt from node " + c.hs.peer() + " rejected. Invalid challenge reply. **");
      } else {
        log_limited(spdlog::level::err, "refusal", "** Connection attempt from " + who + " rejected: " + st.why + " **");
      }
      conn_lost(c, c.ours() ? "refused: " + st.why : st.why);
      return false;
    case Handshake::Step::bad:
      warn_bad("frame", st.why + " from " + who);
      conn_lost(c, st.why);
      return false;
  }
  return true;
}

// Theirs, HELLO in: at most one connection per pair. If we are calling it too (both sent
// first), the connection opened by the node with the greater name goes on; both sides apply
// the same rule, so they agree without a further message. If the pair is up already, the peer
// thinks it is not (it restarted, or it gave up on us): the old connection is taken down once
// this one has proved itself (became_up).
bool NodeImpl::on_hello(Conn& c) {
  const std::string& name = c.hs.peer();
  if (opts_.curve && c.stream) {
    // the allow list says who is who: the key the peer proved must be bound to the name it
    // claims (checked before anything about that name is looked at)
    char z85[41] = {};
    zmq_z85_encode(z85, c.stream->peer_key().data(), 32);
    if (!curve_key_bound(*opts_.curve, z85, name)) {
      const std::string bound = curve_key_names(*opts_.curve, z85);
      log_limited(spdlog::level::err, "refusal",
                  "** Connection attempt from " + c.addr + " rejected: it claims to be " + name + ", but its CURVE key " +
                      z85 + " is allowed only as " + bound + " **");
      write_frame(c, Handshake::refuse(Handshake::kRefused, "its CURVE key is not bound to the name " +
                                                                name.substr(0, 120) + " here (allowed as " +
                                                                bound.substr(0, 80) + ")"));
      count_refused();
      close_conn(c);
      return false;
    }
  }
  const std::optional<Atom> known = Atom::find(name);
  if (!known) {
    // a name this node never heard of: no Peer can exist for it, and it becomes an atom only
    // once the peer proved itself (became_up), so unauthenticated peers cannot grow the atom
    // table. A call to it meanwhile waits for this connection (open_peer).
    if (auto u = unnamed_.find(name); u != unnamed_.end() && u->second != &c) {
      Conn& older = *u->second;  // an older attempt of theirs that never finished
      unnamed_.erase(u);
      close_conn(older);
    }
    unnamed_[name] = &c;
    write_frame(c, c.hs.challenge());
    return true;
  }
  const Atom node = *known;
  c.peer = node;
  auto it = peers_.find(node.id());
  if (it != peers_.end() && it->second.conn != nullptr && it->second.conn != &c) {
    Conn& other = *it->second.conn;
    if (!it->second.up && other.ours()) {
      if (name_.name() > std::string_view(name)) {
        write_frame(c, Handshake::refuse(Handshake::kSimultaneous, "simultaneous connection: " +
                                                                       std::string(name_.name()) + "'s goes on"));
        c.peer = Atom();
        close_conn(c);
        return false;
      }
      // ours yields: its messages wait in the channel for this connection
      if (other.channel) {
        std::lock_guard lock(other.channel->mu);
        if (other.channel->conn == other.stream.get()) other.channel->attach(nullptr);
      }
      other.channel.reset();
      other.peer = Atom();
      close_conn(other);
      it->second.conn = &c;
    } else if (!it->second.up) {
      other.peer = Atom();  // an older attempt of theirs that never finished
      close_conn(other);
      it->second.conn = &c;
    }
    // (up: the old connection stays until this one is up)
  } else if (it == peers_.end()) {
    Peer& p = peers_[node.id()];
    p.conn = &c;
    p.deadline = Clock::now() + std::chrono::seconds(10);
  } else {
    it->second.conn = &c;  // we were looking it up, or waiting for its connection
  }
  write_frame(c, c.hs.challenge());
  return true;
}

void NodeImpl::became_up(Conn& c) {
  if (c.peer == Atom()) {  // theirs, named by a HELLO with a new name: now an atom
    if (auto u = unnamed_.find(c.hs.peer()); u != unnamed_.end() && u->second == &c) unnamed_.erase(u);
    const std::optional<Atom> a = detail::network_atom(c.hs.peer());
    if (!a) {
      logger().error("** Connection from node {} dropped: this node holds {} atoms from the network, its "
                     "budget (max_network_atoms); its name would be one more **",
                     c.hs.peer(), detail::network_atoms());
      close_conn(c);
      return;
    }
    c.peer = *a;
    if (auto it = peers_.find(a->id()); it == peers_.end()) {
      peers_[a->id()].conn = &c;
    } else if (!it->second.up && it->second.conn != &c) {
      if (it->second.conn != nullptr) close_conn(*it->second.conn);  // (ours, started meanwhile: yields)
      it->second.conn = &c;
    }
  }
  const Atom node = c.peer;
  if (auto it = peers_.find(node.id()); it != peers_.end() && it->second.up && it->second.conn != &c) {
    peer_down(node, "it connected again (it restarted, or lost the connection first)");
  }
  Peer& p = peers_[node.id()];
  p.conn = &c;
  p.up = true;
  c.up = true;
  conns_up_.fetch_add(1, std::memory_order_relaxed);
  uncount(c);
  const auto now = Clock::now();
  c.last_heard = now;
  c.heard = c.stream ? c.stream->received() : 0;
  c.next_ping = now + std::max(std::chrono::milliseconds(1), opts_.ticktime / 4);
  // a foreign peer asks for JSON in its HELLO (or CHALLENGE), before anything queued for it leaves
  set_json_peer(node, (c.hs.peer_flags() & kHelloJson) != 0);
  std::shared_ptr<Channel> ch = channel(node);
  {
    std::lock_guard lock(ch->mu);
    ch->attach(c.stream.get());
    if (wants_json(node)) ch->use_json();
  }
  c.channel = ch;
  add(ch->counters->ups, 1);
  mark_up(node, true);
  logger().info("connected to {} ({})", node.name(), c.ours() ? "we called" : "it called");
  for (auto& w : p.waiters) w->finish(true);
  p.waiters.clear();
  flush_conn(c);
}

void NodeImpl::flush_conn(Conn& c) {
  if (!c.stream) return;
  zmtp::Stream& s = *c.stream;
  if (c.tcp_connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      errno = err;
      conn_lost(c, "cannot connect: " + errno_text());
      return;
    }
    c.tcp_connecting = false;  // (called when the socket turned writable)
    std::lock_guard lock(c.channel->mu);
    (void)s.connect_done();
  }
  if (!c.channel) {
    (void)s.flush();
    return;
  }
  Channel& ch = *c.channel;
  std::lock_guard lock(ch.mu);
  if (!c.up || ch.conn != &s) {
    (void)s.flush();  // handshake frames
    return;
  }
  (void)ch.drain();  // until it is all gone (then the senders write), POLLOUT
}

bool NodeImpl::start_connect(Atom node, const std::string& endpoint, const std::string& mapper_key,
                             std::string* error) {
  const std::string name(node.name());
  std::string hint;
  std::shared_ptr<zmtp::Curve> curve;
  if (opts_.curve) {
    std::string server_key = server_key_for(name, mapper_key, error);
    if (server_key.empty() && !mapper_key.empty()) {  // a key we do not trust: never talk to it
      logger().error("** Not connecting to node {}: {} **", name, *error);
      return false;
    }
    curve = std::make_shared<zmtp::Curve>();
    if (server_key.empty()) {
      // most likely a cookie-mode node: a handshake with a throwaway server key cannot succeed,
      // but lets that node see (and log) the attempt
      zmtp::Key throwaway, unused;
      crypto_box_keypair(throwaway.data(), unused.data());
      curve->server_key = throwaway;
      hint = *error;
    } else {
      zmq_z85_decode(curve->server_key.data(), server_key.c_str());
    }
    curve->public_key = curve_server_->public_key;
    curve->secret_key = curve_server_->secret_key;
  } else if (!mapper_key.empty()) {
    hint = name + " requires CURVE (it registered a CURVE key); this node is in cookie mode";
  }
  // tcp://HOST:PORT
  std::string hostport = endpoint.rfind("tcp://", 0) == 0 ? endpoint.substr(6) : std::string();
  const auto colon = hostport.rfind(':');
  if (hostport.empty() || colon == std::string::npos || colon == 0) {
    *error = "cannot connect to " + endpoint + ": expected tcp://HOST:PORT";
    return false;
  }
  const std::string host = hostport.substr(0, colon), port = hostport.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;  // a name here would mean a blocking DNS lookup
  addrinfo* res = nullptr;
  const std::string numeric = host == "localhost" ? "127.0.0.1" : host;
  if (const int rc = ::getaddrinfo(numeric.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr) {
    *error = "cannot connect to " + endpoint + ": " + (rc != 0 ? ::gai_strerror(rc) : "no address");
    return false;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    *error = "cannot connect to " + endpoint + ": " + errno_text();
    return false;
  }
  tune(fd);
  const int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0 && errno != EINPROGRESS) {
    *error = "cannot connect to " + endpoint + ": " + errno_text();
    ::close(fd);
    return false;
  }
  auto c = std::make_unique<Conn>(Handshake(Handshake::Role::connector, std::string(name_.name()), creation_,
                                            cookie_, 0, name));
  c->id = ++next_conn_;
  c->peer = node;
  c->since = Clock::now();
  c->addr = host + ":" + port;
  c->hint = hint;
  c->tcp_connecting = rc != 0;
  c->stream = std::make_unique<zmtp::Stream>(fd, "DEALER", kMaxFrame, rc == 0, std::move(curve));
  c->channel = channel(node);
  {
    std::lock_guard lock(c->channel->mu);
    c->channel->attach(c->stream.get());
    c->channel->give_to_io();  // until the handshake is done
    (void)c->stream->send(one_record(c->hs.hello()));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = c.get();
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    *error = "cannot connect to " + endpoint + ": epoll: " + errno_text();
    std::lock_guard lock(c->channel->mu);
    c->channel->attach(nullptr);
    return false;
  }
  logger().debug("connecting to {} at {}", name, endpoint);
  peers_[node.id()].conn = c.get();
  conns_.emplace(c->id, std::move(c));
  return true;
}

std::string NodeImpl::handshake_failure(Conn& c) {
  zmtp::Stream& s = *c.stream;
  const std::string peer = c.peer == Atom() ? std::string() : std::string(c.peer.name());
  const bool curve = opts_.curve.has_value();
  const bool mismatch = s.failed() && s.error().rfind("security mechanism mismatch", 0) == 0;
  if (c.ours()) {
    if (s.refused()) return peer + " refused this node's CURVE key (not in its --curve-allow)";
    if (!c.hint.empty()) return c.hint;
    if (mismatch) {
      return curve ? peer + " does not use CURVE (a cookie-mode node?)"
                   : peer + " requires CURVE; this node is in cookie mode (start it with --curve-key)";
    }
    if (s.failed() && curve && !s.ready()) return "CURVE handshake with " + peer + " failed (wrong key): " + s.error();
    if (!s.ready()) return "handshake with " + peer + " failed: it hung up";
    return "handshake with " + peer + " failed";
  }
  // theirs: logged here, as the peer's side logs its view
  if (s.refused()) {
    char z85[41] = {};
    zmq_z85_encode(z85, s.peer_key().data(), 32);
    log_limited(spdlog::level::err, "refusal",
                "** Connection attempt from " + c.addr + " rejected: its CURVE key " + z85 + " is not in --curve-allow **");
    count_refused();
    return "refused CURVE key";
  }
  if (mismatch) {
    log_limited(spdlog::level::err, "refusal",
                "** Connection attempt from " + c.addr + " rejected: " +
                    (curve ? "the peer does not use CURVE (a cookie-mode node?); this node requires it"
                           : "the peer uses CURVE; this node is in cookie mode") + " **");
    count_refused();
    return "mechanism mismatch";
  }
  if (s.failed()) {
    warn_bad("connection", "from " + c.addr + ": " + s.error());
    return s.error();
  }
  if (!s.ready()) {
    log_limited(spdlog::level::err, "refusal",
                "** Connection attempt from " + c.addr + " rejected: the peer hung up during the ZeroMQ handshake **");
  }
  return "closed during the handshake";
}

void NodeImpl::conn_lost(Conn& c, const std::string& why) {
  if (c.closed) return;
  std::string reason = why;
  if (!c.up && c.stream) {
    const std::string hs = handshake_failure(c);
    if (c.ours()) {
      // the handshake's own words too when the peer refused us: they say why (cookie, key, name)
      reason = why.starts_with("refused: ") && hs != why ? hs + " (" + why + ")" : hs;
      if (c.stream->refused() || c.stream->error().rfind("security mechanism mismatch", 0) == 0 || !c.hint.empty()) {
        logger().error("** Cannot connect to node {}: {} **", c.peer.name(), reason);
      } else if (reason != hs) {
        logger().warn("cannot connect to node {}: {}", c.peer.name(), reason);
      } else {
        logger().warn("cannot connect to node {}: {} ({})", c.peer.name(), reason, why);
      }
    }
  }
  const Atom node = c.peer;
  auto it = node == Atom() ? peers_.end() : peers_.find(node.id());
  if (it != peers_.end() && it->second.conn == &c) {
    peer_down(node, reason);  // closes c
  } else {
    close_conn(c);
  }
}

void NodeImpl::close_conn(Conn& c) {
  if (c.closed) return;
  c.closed = true;
  uncount(c);
  if (c.peer == Atom() && !c.ours()) {
    if (auto u = unnamed_.find(c.hs.peer()); u != unnamed_.end() && u->second == &c) unnamed_.erase(u);
  }
  if (c.channel) {
    std::lock_guard lock(c.channel->mu);
    if (c.channel->conn == c.stream.get()) c.channel->attach(nullptr);
  }
  c.channel.reset();
  if (c.stream) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c.stream->fd(), nullptr);
  if (auto it = conns_.find(c.id); it != conns_.end()) {
    graveyard_.push_back(std::move(it->second));  // freed between polls (its fd may be in one)
    conns_.erase(it);
  }
}

// Heartbeats, as ZMTP PINGs (libzmq's HEARTBEAT_IVL/TIMEOUT/TTL): each side of an up connection
// sends one every tick/4, and a connection on which nothing came for a whole tick is lost, on
// whichever side notices first (Erlang's net_ticktime). Our backlog draining counts as hearing
// from the peer: its PING can wait behind megabytes we sent (a native reader reads at its
// node's pace), while a frozen peer drains nothing, whether we send little (no backlog) or
// much (a backlog that stays).
void NodeImpl::heartbeats(Clock::time_point now, Clock::time_point* wake) {
  const auto tick = std::max(std::chrono::milliseconds(8), opts_.ticktime);
  const auto ivl = tick / 4;
  const auto ttl_ds = static_cast<std::uint16_t>(std::min<long>(65535, std::max<long>(1, tick.count() / 100)));
  std::vector<Conn*> silent;
  for (auto& [id, cp] : conns_) {
    Conn& c = *cp;
    if (!c.up || !c.stream || !c.channel) continue;
    if (c.stream->received() != c.heard) {
      c.heard = c.stream->received();
      c.last_heard = now;
    }
    if (now >= c.next_ping || now - c.last_heard > tick) {  // (the channel's lock only when due)
      std::lock_guard lock(c.channel->mu);
      if (c.stream->drained() != c.drained_at) {  // it read what waited for it since the last look: alive
        c.drained_at = c.stream->drained();
        c.last_heard = now;
      }
      if (now >= c.next_ping) {
        if (!c.stream->send_ping(ttl_ds)) c.channel->give_to_io();
        c.drained_at = c.stream->drained();
        c.next_ping = now + ivl;
      }
    }
    if (now - c.last_heard > tick) silent.push_back(&c);
    *wake = std::min({*wake, c.next_ping, c.last_heard + tick + std::chrono::milliseconds(1)});
  }
  for (Conn* c : silent) {
    // read what its socket holds first: this thread may have been busy while the answer waited
    if (c->closed) continue;
    on_inbound();
    if (c->closed) continue;
    if (c->stream->received() != c->heard) continue;
    conn_lost(*c, "connection closed (no heartbeat answer)");
  }
}

}  // namespace nodus::dist
