// The native transport of cookie-mode nodes (zmtp.hpp): the listening socket, accepted
// connections, outbound connections and their heartbeats. The frames they carry are handled
// as the libzmq transport's are (node_frames.cpp).
#include "node_impl.hpp"
#include "../runtime/trace.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstring>

namespace nodus::dist {

namespace {

void tune(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as libzmq does
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void NodeImpl::native_listen(const std::string& host) {
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
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listening socket
  if (epfd_ < 0 || ::epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
    throw std::runtime_error("cannot listen on " + host + ": epoll: " + errno_text());
  }
}

std::size_t NodeImpl::on_native_inbound() {
  std::size_t handled = 0;
  epoll_event evs[32];
  for (;;) {
    const int n = ::epoll_wait(epfd_, evs, 32, 0);
    if (n <= 0) return handled;
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<InConn*>(evs[i].data.ptr);
      if (c == nullptr) {  // new connections
        for (;;) {
          const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          tune(fd);
          auto conn = std::make_unique<InConn>();
          conn->rid.assign(1, '\0');
          const std::uint32_t id = ++next_rid_;
          conn->rid.append(reinterpret_cast<const char*>(&id), 4);
          conn->since = Clock::now();
          conn->stream = std::make_unique<zmtp::Stream>(fd, "ROUTER", kMaxFrame, true);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = conn.get();
          if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;  // closed with conn
          in_conns_.emplace(conn->rid, std::move(conn));
        }
        continue;
      }
      zmtp::Stream& s = *c->stream;
      const auto read = s.read(64, [&](std::string_view m) {
        NODUS_MARK(router_read);
        ++handled;
        if (s.take_multipart()) warn_bad("frame", "unexpected multipart message");
        on_router_message(c->rid, m);
        return true;
      });
      if (s.writes_due() || s.has_output()) (void)s.service();
      if (read == zmtp::Stream::Read::closed) {
        if (s.failed()) {
          if (s.peer_mechanism() == "CURVE") {
            logger().error("** Connection attempt rejected: the peer uses CURVE; this node is in cookie mode **");
          } else {
            warn_bad("connection", "from a peer: " + s.error());
          }
        } else if (!s.ready()) {
          logger().error("** Connection attempt rejected: the peer hung up during the ZeroMQ handshake **");
        }
        close_inbound(c);
      }
    }
    if (n < 32) return handled;
  }
}

void NodeImpl::close_inbound(InConn* c) {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c->stream->fd(), nullptr);
  inbound_.erase(c->rid);
  in_conns_.erase(c->rid);  // closes the socket
}

NodeImpl::Peer* NodeImpl::native_connect(Peer& p, const std::string& endpoint, std::string* error) {
  // tcp://HOST:PORT
  std::string hostport = endpoint.rfind("tcp://", 0) == 0 ? endpoint.substr(6) : std::string();
  const auto colon = hostport.rfind(':');
  if (hostport.empty() || colon == std::string::npos || colon == 0) {
    *error = "cannot connect to " + endpoint + ": expected tcp://HOST:PORT";
    return nullptr;
  }
  const std::string host = hostport.substr(0, colon), port = hostport.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr) {
    *error = "cannot connect to " + endpoint + ": " + (rc != 0 ? ::gai_strerror(rc) : "no address");
    return nullptr;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    *error = "cannot connect to " + endpoint + ": " + errno_text();
    return nullptr;
  }
  tune(fd);
  const int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0 && errno != EINPROGRESS) {
    *error = "cannot connect to " + endpoint + ": " + errno_text();
    ::close(fd);
    return nullptr;
  }
  // only handshake answers come back on this connection
  p.stream = std::make_unique<zmtp::Stream>(fd, "DEALER", 4096, rc == 0);
  p.tcp_connecting = rc != 0;
  p.next_ping = Clock::now() + std::max(std::chrono::milliseconds(1), opts_.ticktime / 4);
  return &p;
}

void NodeImpl::on_native_peer(Peer& p, short revents) {
  zmtp::Stream& s = *p.stream;
  if (p.tcp_connecting && (revents & (ZMQ_POLLOUT | ZMQ_POLLERR))) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      const std::string why = p.hint.empty() ? "cannot connect: " + std::string(std::strerror(err)) : p.hint;
      logger().warn("cannot connect to node {}: {}", p.name, why);
      peer_down(Atom(p.name), why);
      return;
    }
    p.tcp_connecting = false;
    std::lock_guard lock(p.channel->mu);
    (void)s.connect_done();
  }
  if (revents & ZMQ_POLLOUT) flush(p);
  if (!(revents & (ZMQ_POLLIN | ZMQ_POLLERR))) return;
  const std::uint64_t before = s.received();
  const auto read = s.read(16, [&](std::string_view m) {
    if (s.take_multipart()) warn_bad("frame", "unexpected multipart message from " + p.name);
    return on_dealer_message(p, m);  // false: `p` is gone
  });
  if (read == zmtp::Stream::Read::stopped) return;
  if (s.received() != before) p.pong_deadline = Clock::time_point::max();  // it is alive
  if (s.writes_due()) {
    std::lock_guard lock(p.channel->mu);
    if (!s.service()) p.channel->io_owns = true;
  }
  if (read == zmtp::Stream::Read::open) return;
  if (s.failed() && s.peer_mechanism() == "CURVE") {
    connection_lost(p, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH);
  } else if (s.failed()) {
    logger().warn("connection to node {}: {}", p.name, s.error());
    connection_lost(p, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, 0);
  } else if (!s.ready() || p.state != Peer::up) {
    connection_lost(p, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0);
  } else {
    connection_lost(p, ZMQ_EVENT_DISCONNECTED, 0);
  }
}

// ZMTP heartbeats on our connections, as libzmq's HEARTBEAT_IVL / HEARTBEAT_TIMEOUT /
// HEARTBEAT_TTL would send them: a PING every tick/4; a peer that answers nothing for 7/8 of a
// tick after a PING is down. Unless it is reading what we send: its PONG waits behind that
// (libzmq's I/O thread read ahead of the application; a native reader reads at the pace of
// its node), so a backlog that drained since the last look counts as an answer: the kernel
// takes those bytes only as the peer reads. A frozen peer drains nothing, whether we send
// little (no backlog) or much (a backlog that stays), and its deadline passes.
void NodeImpl::heartbeats(Clock::time_point now, Clock::time_point* wake) {
  const auto tick = std::max(std::chrono::milliseconds(8), opts_.ticktime);
  const auto ivl = tick / 4;
  const auto timeout = tick - tick / 8;
  const auto ttl_ds = static_cast<std::uint16_t>(std::min<long>(65535, std::max<long>(1, tick.count() / 100)));
  std::vector<Atom> silent;
  for (auto& [id, p] : peers_) {
    if (!p.stream || p.tcp_connecting) continue;
    if (p.pong_deadline != Clock::time_point::max()) {
      std::lock_guard lock(p.channel->mu);
      const std::uint64_t d = p.stream->drained();
      if (d != p.drained_at_check) {  // it reads what waited for it: alive
        p.drained_at_check = d;
        p.pong_deadline = now + timeout;
      }
    }
    if (now >= p.pong_deadline) {
      silent.push_back(Atom::from_id(id));
      continue;
    }
    if (now >= p.next_ping) {
      {
        std::lock_guard lock(p.channel->mu);
        if (!p.stream->send_ping(ttl_ds)) p.channel->io_owns = true;
        p.drained_at_check = p.stream->drained();
      }
      if (p.pong_deadline == Clock::time_point::max()) p.pong_deadline = now + timeout;
      p.next_ping = now + ivl;
    }
    *wake = std::min({*wake, p.next_ping, p.pong_deadline});
  }
  for (Atom a : silent) {
    // read what its socket holds first: this thread may have been busy (a slow port mapper
    // lookup) while the answer waited
    if (auto it = peers_.find(a.id()); it != peers_.end()) on_native_peer(it->second, ZMQ_POLLIN);
    auto it = peers_.find(a.id());  // (gone if that read found it closed)
    if (it != peers_.end() && Clock::now() >= it->second.pong_deadline) {
      peer_down(a, "connection closed (no heartbeat answer)");
    }
  }
}

}  // namespace nodus::dist
