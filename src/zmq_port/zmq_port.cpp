// ZeroMQ ports (nodus/zmq_port.hpp, docs/zmq-ports.md). libzmq sockets are not thread-safe, so
// one thread (the port thread, started with the first port) owns every port's socket: it
// opens and closes them, polls them with zmq_poll together with an eventfd that says a command
// or a send is waiting, delivers what they receive to the owners' mailboxes as ZmqMessage, and
// writes what senders queued. Each port also has a small process, linked to its owner: the
// owner's exit closes the port through it, and a port's failure is its exit, hence the
// owner's exit signal.
#include "nodus/zmq_port.hpp"

#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "runtime/context.hpp"
#include "nodus/log.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"

namespace nodus {
namespace zmq_port {

struct PortState {
  std::uint64_t id = 0;
  Type type = Type::pair;
  Options opts;
  Pid owner, proc;
  void* sock = nullptr;  // the port thread's
  void* monitor = nullptr;  // CURVE ports: libzmq's events of `sock` (handshake failures)
  bool failed = false;      // the port thread told the port's process (once)
  std::vector<std::string> bound;  // set at open, then read-only
  std::atomic<std::int64_t> unhandled{0};  // active: delivered, not yet destroyed
  // active: the port thread stopped reading at the budget; the handler that brings
  // `unhandled` down to resume_at() wakes it (so a busy owner costs a wake per half budget,
  // not per message)
  std::atomic<bool> paused{false};
  std::int64_t resume_at() const { return static_cast<std::int64_t>(opts.budget / 2); }
  std::atomic<std::int64_t> granted{0};    // counted, passive: may still be delivered
  // under Ports::mu
  std::deque<std::vector<std::string>> out;  // waiting for the socket
  std::vector<Pid> waiting;                  // senders suspended on a full queue
  bool closed = false;
  // Frames' memory handed back by delivered messages (PortToken::release), for the next ones
  std::mutex spare_mu;
  std::vector<std::vector<std::string>> returned;  // under spare_mu
  std::vector<std::vector<std::string>> spare;     // the port thread's
};

}  // namespace zmq_port

namespace zmq_port {
namespace {

struct Space {  // to a suspended sender: the port's send queue has room (or the port closed)
  std::uint64_t port;
};
struct Close {};  // owner -> port process
struct Failed {   // port thread -> port process
  Term reason;
};

int zmq_type(Type t) {
  switch (t) {
    case Type::pair: return ZMQ_PAIR;
    case Type::pub: return ZMQ_PUB;
    case Type::sub: return ZMQ_SUB;
    case Type::req: return ZMQ_REQ;
    case Type::rep: return ZMQ_REP;
    case Type::dealer: return ZMQ_DEALER;
    case Type::router: return ZMQ_ROUTER;
    case Type::pull: return ZMQ_PULL;
    case Type::push: return ZMQ_PUSH;
  }
  return ZMQ_PAIR;
}
bool receives(Type t) { return t != Type::pub && t != Type::push; }
bool sends(Type t) { return t != Type::sub && t != Type::pull; }
const char* type_name(Type t) {
  static const char* const names[] = {"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH"};
  return names[static_cast<int>(t)];
}

// One whole message from `sock` without waiting for its first frame (the rest of a multipart
// message is there once the first is). False if none was waiting. Keeps at most `max_parts`
// frames (the rest are read and dropped). The strings already in `parts` are reused.
bool recv_parts(void* sock, std::vector<std::string>& parts, std::size_t max_parts = SIZE_MAX) {
  std::size_t n = 0;
  bool any = false;
  for (;;) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, any ? 0 : ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      parts.resize(n);
      return any;
    }
    any = true;
    if (n < max_parts) {
      const char* data = static_cast<const char*>(zmq_msg_data(&m));
      if (n < parts.size()) {
        parts[n].assign(data, zmq_msg_size(&m));
      } else {
        parts.emplace_back(data, zmq_msg_size(&m));
      }
      ++n;
    }
    const bool more = zmq_msg_more(&m) != 0;
    zmq_msg_close(&m);
    if (!more) {
      parts.resize(n);
      return true;
    }
  }
}

// Kept for reuse per port, at most; a frame's string longer than this is not kept.
constexpr std::size_t kSpareMessages = 4096;
constexpr std::size_t kSpareFrameBytes = 512;

class Ports {
 public:
  Ports() {
    ctx_ = zmq_ctx_new();
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    thread_ = std::thread([this] { run(); });
  }
  ~Ports() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake();
    thread_.join();
    // (the thread is gone: the sockets are this thread's now)
    for (auto& [id, s] : ports_) {
      drain(s);
      if (s->monitor) zmq_close(s->monitor);
      if (s->sock) zmq_close(s->sock);
      s->sock = s->monitor = nullptr;
      s->closed = true;
    }
    if (zap_) zmq_close(zap_);
    zmq_ctx_term(ctx_);
    ::close(efd_);
  }

  // The port thread opens the socket; "" or libzmq's reason.
  std::string open(const std::shared_ptr<PortState>& s) {
    std::promise<std::string> done;
    auto f = done.get_future();
    post({Cmd::open, s, &done});
    return f.get();
  }
  void close(const std::shared_ptr<PortState>& s) { post({Cmd::close, s, nullptr}); }
  void wake() {
    const std::uint64_t one = 1;
    (void)!::write(efd_, &one, sizeof one);
  }
  std::mutex& mu() { return mu_; }

 private:
  struct Cmd {
    enum Kind { open, close } kind;
    std::shared_ptr<PortState> s;
    std::promise<std::string>* done;
  };
  void post(Cmd c) {
    {
      std::lock_guard lock(mu_);
      cmds_.push_back(std::move(c));
    }
    wake();
  }

  std::string do_open(PortState& s) {
    void* sock = zmq_socket(ctx_, zmq_type(s.type));
    if (!sock) return std::string("cannot make a socket: ") + zmq_strerror(zmq_errno());
    auto fail = [&](const std::string& what) {
      const std::string why = what + ": " + zmq_strerror(zmq_errno());
      zmq_close(sock);
      return why;
    };
    const Options& o = s.opts;
    if (zmq_setsockopt(sock, ZMQ_SNDHWM, &o.sndhwm, sizeof o.sndhwm) != 0) return fail("ZMQ_SNDHWM");
    if (zmq_setsockopt(sock, ZMQ_RCVHWM, &o.rcvhwm, sizeof o.rcvhwm) != 0) return fail("ZMQ_RCVHWM");
    if (zmq_setsockopt(sock, ZMQ_LINGER, &o.linger_ms, sizeof o.linger_ms) != 0) return fail("ZMQ_LINGER");
    if (zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &o.reconnect_ivl_ms, sizeof o.reconnect_ivl_ms) != 0) {
      return fail("ZMQ_RECONNECT_IVL");
    }
    if (!o.identity.empty() && zmq_setsockopt(sock, ZMQ_ROUTING_ID, o.identity.data(), o.identity.size()) != 0) {
      return fail("ZMQ_ROUTING_ID");
    }
    for (const std::string& p : o.subscribe) {
      if (zmq_setsockopt(sock, ZMQ_SUBSCRIBE, p.data(), p.size()) != 0) return fail("ZMQ_SUBSCRIBE");
    }
    if (o.curve) {
      if (std::string why = set_curve(s, sock); !why.empty()) {
        if (s.monitor) zmq_close(s.monitor);
        s.monitor = nullptr;
        zmq_close(sock);
        return why;
      }
    }
    for (const std::string& e : o.bind) {
      if (zmq_bind(sock, e.c_str()) != 0 && !(zmq_errno() == EADDRINUSE && take_over(e, sock))) {
        return fail("cannot bind " + e);
      }
      char last[256] = {};
      std::size_t len = sizeof last;
      zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, last, &len);
      s.bound.emplace_back(last);
    }
    for (const std::string& e : o.connect) {
      if (zmq_connect(sock, e.c_str()) != 0) return fail("cannot connect to " + e);
    }
    s.sock = sock;
    return {};
  }

  // CURVE options, the ZAP handler a server needs (one for every port: the ZAP domain names
  // the port) and the monitor that reports handshake failures. "" or why not.
  std::string set_curve(PortState& s, void* sock) {
    const CurveOptions& c = *s.opts.curve;
    if (!valid_z85_key(c.secret_key)) return "curve: the secret key is not 40 Z85 characters (nodus keygen writes one)";
    const std::string secret = c.secret_key;
    std::string pub;
    try {
      pub = curve_public_key(secret);
    } catch (const std::exception& e) {
      return std::string("curve: ") + e.what();
    }
    auto opt = [&](int name, const std::string& v, const char* what) -> std::string {
      if (zmq_setsockopt(sock, name, v.data(), v.size()) != 0) return std::string(what) + ": " + zmq_strerror(zmq_errno());
      return {};
    };
    std::string why;
    if (s.opts.curve_server_key.empty()) {
      if (c.allowed.empty()) return "curve: a CURVE server port needs the public keys it lets in (CurveOptions::allowed)";
      if (!zap_) {
        zap_ = zmq_socket(ctx_, ZMQ_REP);
        if (zap_ == nullptr || zmq_bind(zap_, "inproc://zeromq.zap.01") != 0) {
          why = std::string("curve: cannot start the ZAP handler: ") + zmq_strerror(zmq_errno());
          if (zap_) zmq_close(zap_);
          zap_ = nullptr;
          return why;
        }
      }
      const int one = 1;
      if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0) return "ZMQ_CURVE_SERVER: " + std::string(zmq_strerror(zmq_errno()));
      if (!(why = opt(ZMQ_CURVE_SECRETKEY, secret, "ZMQ_CURVE_SECRETKEY")).empty()) return why;
      if (!(why = opt(ZMQ_ZAP_DOMAIN, "nodus-port-" + std::to_string(s.id), "ZMQ_ZAP_DOMAIN")).empty()) return why;
    } else {
      std::string server;
      try {
        server = read_public_key(s.opts.curve_server_key);
      } catch (const std::exception& e) {
        return "curve: curve_server_key '" + s.opts.curve_server_key.substr(0, 200) +
               "' is not a CURVE public key (40 Z85 characters) or a .pub file holding one";
      }
      if (!(why = opt(ZMQ_CURVE_SERVERKEY, server, "ZMQ_CURVE_SERVERKEY")).empty()) return why;
      if (!(why = opt(ZMQ_CURVE_PUBLICKEY, pub, "ZMQ_CURVE_PUBLICKEY")).empty()) return why;
      if (!(why = opt(ZMQ_CURVE_SECRETKEY, secret, "ZMQ_CURVE_SECRETKEY")).empty()) return why;
    }
    const std::string mon = "inproc://nodus-port-monitor-" + std::to_string(s.id);
    if (zmq_socket_monitor(sock, mon.c_str(), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                                  ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      return std::string("curve: cannot monitor the socket: ") + zmq_strerror(zmq_errno());
    }
    s.monitor = zmq_socket(ctx_, ZMQ_PAIR);
    if (s.monitor == nullptr || zmq_connect(s.monitor, mon.c_str()) != 0) {
      return std::string("curve: cannot monitor the socket: ") + zmq_strerror(zmq_errno());
    }
    return {};
  }

  // One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism,
  // credentials (CURVE: the client's 32-byte public key). The domain names the port whose
  // allow list decides.
  void serve_zap() {
    for (int n = 0; n < 64; ++n) {
      std::vector<std::string> f;
      if (!recv_parts(zap_, f, 16)) return;
      std::string status = "400", text = "not allowed";
      const std::string id = f.size() > 1 ? f[1] : std::string();
      if (f.size() >= 7 && f[5] == "CURVE" && f[6].size() == 32) {
        char z85[41] = {};
        zmq_z85_encode(z85, reinterpret_cast<const std::uint8_t*>(f[6].data()), 32);
        std::shared_ptr<PortState> port;
        constexpr std::string_view prefix = "nodus-port-";
        if (f[2].rfind(prefix, 0) == 0) {
          std::uint64_t pid = 0;
          for (char ch : f[2].substr(prefix.size())) pid = pid * 10 + static_cast<std::uint64_t>(ch - '0');
          if (auto it = ports_.find(pid); it != ports_.end()) port = it->second;
          if (!port) port = opening_;  // (a handshake can begin while its port is still opening)
          if (port && port->id != pid) port = nullptr;
        }
        bool ok = false;
        if (port && port->opts.curve) {
          for (const auto& [key, name] : port->opts.curve->allowed) ok = ok || key == z85;
        }
        if (ok) {
          status = "200";
          text = "OK";
        } else {
          const std::string address = f[3].substr(0, 64);
          log_limited(spdlog::level::warn, "zmq_port_curve",
                      "zmq_port " + (port ? std::to_string(port->id) : f[2].substr(0, 32)) + ": refused a CURVE peer at " +
                          address + ": its key " + z85 + " is not among the port's allowed keys");
        }
      }
      const std::string reply[] = {"1.0", id, status, text, "", ""};
      for (std::size_t i = 0; i < 6; ++i) zmq_send(zap_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
    }
  }

  // A handshake failure the socket's monitor reports: a client port refused by its server
  // ends with {curve_refused, Endpoint}; anything else is logged.
  void read_monitor(const std::shared_ptr<PortState>& s) {
    for (int n = 0; n < 16 && s->monitor; ++n) {
      std::vector<std::string> f;
      if (!recv_parts(s->monitor, f, 2)) return;
      if (f.size() < 2 || f[0].size() < 6) continue;
      std::uint16_t event = 0;
      std::memcpy(&event, f[0].data(), sizeof event);
      const std::string endpoint = f[1].substr(0, 200);
      const bool client = !s->opts.curve_server_key.empty();
      if (client && event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        log_limited(spdlog::level::warn, "zmq_port_curve",
                    "zmq_port " + std::to_string(s->id) + ": the CURVE server at " + endpoint + " refused this port's key");
        if (!s->failed) {
          s->failed = true;
          do_close(s);  // closed before anyone hears of it: a send after the exit signal fails
          send(s->proc, Failed{tuple(atom("curve_refused"), Term(endpoint))});
          return;
        }
      } else if (client || event != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {  // (a server's refusals: serve_zap says)
        log_limited(spdlog::level::warn, "zmq_port_curve",
                    "zmq_port " + std::to_string(s->id) + ": a CURVE handshake on " + endpoint + " failed" +
                        (client ? " (the server's public key is not the one given?)" : " (a peer without CURVE, or with another server key?)"));
      }
    }
  }

  // A bind found its address in use. If a port of a process that has ended holds it (its
  // close is on its way: a supervisor restarted the owner before the port heard of the end),
  // that port closes now, and the bind is tried again while libzmq lets the address go
  // (its listener closes in libzmq's I/O thread, within milliseconds).
  bool take_over(const std::string& endpoint, void* sock) {
    std::shared_ptr<PortState> old;
    for (auto& [id, p] : ports_) {
      if (!is_process_alive(p->owner) &&
          std::find(p->bound.begin(), p->bound.end(), endpoint) != p->bound.end()) {
        old = p;
        break;
      }
    }
    if (old) {
      zmq_unbind(old->sock, endpoint.c_str());
      do_close(old);
    } else {
      // or a port closed it just now, and libzmq has not let it go yet
      auto it = let_go_.find(endpoint);
      if (it == let_go_.end() || std::chrono::steady_clock::now() - it->second > std::chrono::seconds(2)) return false;
    }
    for (int i = 0; i < 100; ++i) {
      if (zmq_bind(sock, endpoint.c_str()) == 0) return true;
      if (zmq_errno() != EADDRINUSE) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  void do_close(const std::shared_ptr<PortState>& s) {
    // what senders queued goes into the socket first, as far as it takes it now; the socket
    // then has its linger time to deliver
    if (s->sock && s->opts.linger_ms != 0) write_some(s);
    if (s->sock) {
      const auto now = std::chrono::steady_clock::now();
      std::erase_if(let_go_, [&](const auto& e) { return now - e.second > std::chrono::seconds(2); });
      for (const std::string& e : s->bound) {
        zmq_unbind(s->sock, e.c_str());
        let_go_[e] = now;
      }
      if (s->monitor) {
        zmq_socket_monitor(s->sock, nullptr, 0);
        zmq_close(s->monitor);
      }
      zmq_close(s->sock);
    }
    s->sock = s->monitor = nullptr;
    std::vector<Pid> waiting;
    {
      std::lock_guard lock(mu_);
      s->closed = true;
      s->out.clear();
      waiting.swap(s->waiting);
    }
    ports_.erase(s->id);
    for (const Pid& w : waiting) send(w, Space{s->id});
  }

  // At the Runtime's end: what senders queued goes into the socket, waiting for room up to the
  // port's linger time (a negative linger: up to a minute), so that a program that sends its
  // last messages and ends does not lose them before the socket's own linger takes over.
  void drain(const std::shared_ptr<PortState>& s) {
    if (!s->sock || s->opts.linger_ms == 0) return;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(s->opts.linger_ms < 0 ? 60000 : s->opts.linger_ms);
    for (;;) {
      write_some(s);
      {
        std::lock_guard lock(mu_);
        if (s->out.empty()) return;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        log_limited(spdlog::level::warn, "zmq_port",
                    "zmq_port " + std::to_string(s->id) + ": closed at the Runtime's end with messages its peer never took");
        return;
      }
      zmq_pollitem_t item{s->sock, 0, ZMQ_POLLOUT, 0};
      (void)zmq_poll(&item, 1, static_cast<long>(left.count()));
    }
  }

  bool wants_in(const PortState& s) const {
    if (!receives(s.type)) return false;
    if (s.opts.flow == Flow::active) return !s.paused.load() && s.unhandled.load() < static_cast<std::int64_t>(s.opts.budget);
    return s.granted.load() > 0;
  }

  // Up to 64 messages, as the flow allows.
  void read_some(const std::shared_ptr<PortState>& s) {
    for (int n = 0; n < 64 && wants_in(*s); ++n) {
      std::vector<std::string> parts = spare_parts(*s);
      if (!recv_parts(s->sock, parts)) {  // EAGAIN: nothing more now
        s->spare.push_back(std::move(parts));
        return;
      }
      if (s->opts.flow == Flow::active) {
        if (s->unhandled.fetch_add(1) + 1 >= static_cast<std::int64_t>(s->opts.budget)) {
          // pause at the budget; a handler that went below resume_at() meanwhile saw no pause
          // and did not wake this thread, so look again after setting it
          s->paused.store(true);
          if (s->unhandled.load() <= s->resume_at()) s->paused.store(false);
        }
      } else {
        s->granted.fetch_sub(1);
      }
      send(s->owner, ZmqMessage{Port{s->id, s->owner, s->proc}, std::move(parts), detail::PortToken(s)});
    }
  }

  // Frames' memory a delivered message gave back, or none.
  static std::vector<std::string> spare_parts(PortState& s) {
    if (s.spare.empty()) {
      std::lock_guard lock(s.spare_mu);
      s.spare.swap(s.returned);
    }
    if (s.spare.empty()) return {};
    std::vector<std::string> v = std::move(s.spare.back());
    s.spare.pop_back();
    return v;
  }

  // What senders queued, until the socket is full; room made wakes the suspended ones.
  void write_some(const std::shared_ptr<PortState>& s) {
    std::vector<Pid> wake_them;
    for (int n = 0; n < 256; ++n) {
      std::vector<std::string> parts;
      {
        std::lock_guard lock(mu_);
        if (s->out.empty()) break;
        parts = s->out.front();
      }
      bool sent = true;
      for (std::size_t i = 0; i < parts.size(); ++i) {
        const int flags = ZMQ_DONTWAIT | (i + 1 < parts.size() ? ZMQ_SNDMORE : 0);
        if (zmq_send(s->sock, parts[i].data(), parts[i].size(), flags) < 0) {
          // EAGAIN before the first frame: the socket is full (its high-water mark), so the
          // message waits; after it, libzmq takes the rest of a multipart message atomically
          sent = false;
          if (zmq_errno() != EAGAIN) {
            log_limited(spdlog::level::warn, "zmq_port",
                        "zmq_port " + std::to_string(s->id) + ": send failed: " + zmq_strerror(zmq_errno()));
            std::lock_guard lock(mu_);
            s->out.pop_front();  // (a REQ out of turn, EFSM: it can never go)
          }
          break;
        }
      }
      if (!sent) break;
      std::lock_guard lock(mu_);
      s->out.pop_front();
      if (!s->waiting.empty() && s->out.size() <= s->opts.send_queue / 2) wake_them.swap(s->waiting);
    }
    for (const Pid& w : wake_them) send(w, Space{s->id});
  }

  void run() {
    std::vector<zmq_pollitem_t> items;
    std::vector<std::shared_ptr<PortState>> polled, monitored;
    for (;;) {
      std::deque<Cmd> cmds;
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
        cmds.swap(cmds_);
      }
      for (Cmd& c : cmds) {
        if (c.kind == Cmd::open) {
          opening_ = c.s;
          std::string why = do_open(*c.s);
          opening_ = nullptr;
          if (why.empty()) ports_[c.s->id] = c.s;
          c.done->set_value(std::move(why));
        } else if (c.s->sock) {
          do_close(c.s);
        }
      }
      items.clear();
      polled.clear();
      items.push_back({nullptr, efd_, ZMQ_POLLIN, 0});
      if (zap_) items.push_back({zap_, 0, ZMQ_POLLIN, 0});
      const std::size_t mon_at = items.size();
      monitored.clear();
      for (auto& [id, s] : ports_) {
        if (s->monitor) monitored.push_back(s);
      }
      for (auto& s : monitored) items.push_back({s->monitor, 0, ZMQ_POLLIN, 0});
      const std::size_t first = items.size();
      for (auto& [id, s] : ports_) {
        short ev = wants_in(*s) ? ZMQ_POLLIN : 0;
        {
          std::lock_guard lock(mu_);
          if (!s->out.empty()) ev |= ZMQ_POLLOUT;
        }
        if (ev == 0) continue;
        items.push_back({s->sock, 0, ev, 0});
        polled.push_back(s);
      }
      if (zmq_poll(items.data(), static_cast<int>(items.size()), 1000) < 0 && zmq_errno() != EINTR) {
        logger().error("zmq_port: zmq_poll: {}", zmq_strerror(zmq_errno()));
      }
      if (items[0].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        (void)!::read(efd_, &n, sizeof n);
      }
      if (mon_at == 2 && (items[1].revents & ZMQ_POLLIN)) serve_zap();
      for (std::size_t i = 0; i < monitored.size(); ++i) {
        if (monitored[i]->monitor && (items[mon_at + i].revents & ZMQ_POLLIN)) read_monitor(monitored[i]);
      }
      for (std::size_t i = 0; i < polled.size(); ++i) {
        const auto& s = polled[i];
        if (!s->sock) continue;
        if (items[first + i].revents & ZMQ_POLLIN) read_some(s);
        if (items[first + i].revents & ZMQ_POLLOUT) write_some(s);
      }
    }
  }

  void* ctx_ = nullptr;
  int efd_ = -1;
  std::mutex mu_;
  bool stop_ = false;
  std::deque<Cmd> cmds_;
  void* zap_ = nullptr;  // the ZAP handler (a REP on inproc://zeromq.zap.01), from the first CURVE server port on
  std::shared_ptr<PortState> opening_;  // the port do_open is opening
  std::unordered_map<std::uint64_t, std::shared_ptr<PortState>> ports_;  // the thread's
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> let_go_;  // bound endpoints closed lately
  std::thread thread_;
};

std::mutex g_mu;
std::shared_ptr<Ports> g_ports;  // while a Runtime runs, from its first port on
std::atomic<std::uint64_t> g_next{1};

// The port thread, started with the first port; null once the Runtime is being destroyed (its
// processes may still close ports then: the thread has already closed every socket).
std::shared_ptr<Ports> ports() {
  runtime::Context* c = runtime::ctx_if();
  std::lock_guard lock(g_mu);
  if (c == nullptr || c->stopping.load()) return nullptr;
  if (!g_ports) {
    g_ports = std::make_shared<Ports>();
    runtime::on_stop([] {  // first in the Runtime's end, while every process still exists
      std::shared_ptr<Ports> p;
      {
        std::lock_guard l(g_mu);
        p.swap(g_ports);
      }
      // (destroyed here, or by the last caller still using it: either way its thread is
      // joined before the workers stop, so it delivers to no process that is gone)
    });
  }
  return g_ports;
}

std::shared_ptr<PortState> state_of(const Port& p);

// The port's process: linked to the owner. The owner's exit closes the port; the port's
// failure ends it with the reason (the owner's exit signal); Close ends it quietly.
Proc port_body(std::shared_ptr<PortState> s) {
  trap_exit(true);
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ExitMsg>() && m.get<ExitMsg>().from == s->owner) {
      if (auto ps = ports()) ps->close(s);
      co_return;
    }
    if (m.is<Close>()) {
      if (auto ps = ports()) ps->close(s);
      unlink(s->owner);
      co_return;
    }
    if (m.is<Failed>()) {
      if (auto ps = ports()) ps->close(s);
      exit_self(m.get<Failed>().reason);
    }
  }
}

std::mutex g_states_mu;
std::unordered_map<std::uint64_t, std::weak_ptr<PortState>> g_states;  // handle -> state

std::shared_ptr<PortState> state_of(const Port& p) {
  std::lock_guard lock(g_states_mu);
  auto it = g_states.find(p.id);
  return it == g_states.end() ? nullptr : it->second.lock();
}

Error closed_error(const Port& p) {
  return Error(Errc::noproc, atom("closed"), "zmq_port " + std::to_string(p.id) + " is closed");
}

void check_owner(const Port& p, const char* what) {
  if (self() != p.owner) {
    throw Error(Errc::badarg, atom("not_owner"),
                std::string("zmq_port::") + what + ": port " + std::to_string(p.id) + " belongs to " +
                    to_string(p.owner) + ", not to the calling " + (self().is_null() ? "thread" : to_string(self())));
  }
}

// Queues parts unless the queue is full; throws if the port is closed. With `wait_as`, a full
// queue puts that pid on the list the thread tells when there is room.
bool try_queue(const Port& p, std::vector<std::string>& parts, const Pid& wait_as) {
  auto s = state_of(p);
  if (!s) throw closed_error(p);
  const std::shared_ptr<Ports> ps = ports();
  if (!ps) throw closed_error(p);
  bool wake = false;
  {
    std::lock_guard lock(ps->mu());
    if (s->closed) throw closed_error(p);
    if (!sends(s->type)) {
      throw Error(Errc::badarg, atom("badarg"),
                  std::string("zmq_port ") + std::to_string(p.id) + ": a " + type_name(s->type) + " socket does not send");
    }
    if (s->out.size() >= s->opts.send_queue) {
      if (!wait_as.is_null()) s->waiting.push_back(wait_as);
      return false;
    }
    wake = s->out.empty();
    s->out.push_back(std::move(parts));
  }
  if (wake) ps->wake();
  return true;
}

}  // namespace

Expected<Port> open(Type type, Options opts) {
  const Pid owner = self();
  if (owner.is_null()) {
    return Failure{Errc::badarg, atom("badarg"), "zmq_port::open needs a calling process or Mailbox"};
  }
  if (opts.bind.empty() && opts.connect.empty()) {
    return Failure{Errc::badarg, atom("badarg"), "zmq_port::open: give an endpoint to bind or connect"};
  }
  auto s = std::make_shared<PortState>();
  s->id = g_next.fetch_add(1);
  s->type = type;
  s->opts = std::move(opts);
  s->owner = owner;
  if (s->opts.flow != Flow::active) s->granted.store(s->opts.grant);
  if (type == Type::sub && s->opts.subscribe.empty()) s->opts.subscribe.push_back("");
  if (s->opts.send_queue == 0) s->opts.send_queue = 1;
  s->proc = spawn_link(port_body, s);  // (before the thread can deliver: messages name it)
  const std::shared_ptr<Ports> ps = ports();
  const std::string why = ps ? ps->open(s) : std::string("the Runtime is stopping");
  if (!why.empty()) {
    unlink(s->proc);
    exit(s->proc, atom("kill"));
    return Failure{Errc::badarg, tuple(atom("zmq_error"), Term(why)),
                   std::string("zmq_port::open(") + type_name(type) + "): " + why};
  }
  {
    std::lock_guard lock(g_states_mu);
    std::erase_if(g_states, [](const auto& e) { return e.second.expired(); });
    g_states[s->id] = s;
  }
  return Port{s->id, owner, s->proc};
}

std::vector<std::string> bound(const Port& p) {
  auto s = state_of(p);
  if (!s) throw closed_error(p);
  return s->bound;
}

void active(const Port& p, std::uint32_t n) {
  check_owner(p, "active");
  auto s = state_of(p);
  if (!s) throw closed_error(p);
  s->granted.fetch_add(n);
  if (auto ps = ports()) ps->wake();
}

Async<void> send(Port p, std::vector<std::string> parts) {
  while (!try_queue(p, parts, self())) {
    const std::uint64_t id = p.id;
    co_await receive<Space>([id](const Space& sp) { return sp.port == id; });
  }
}

void send(Mailbox& mb, const Port& p, std::vector<std::string> parts) {
  while (!try_queue(p, parts, mb.pid())) {
    const std::uint64_t id = p.id;
    (void)mb.receive<Space>([id](const Space& sp) { return sp.port == id; }, std::chrono::hours(24));
  }
}

bool send_nosuspend(const Port& p, std::vector<std::string> parts) { return try_queue(p, parts, Pid{}); }

void close(const Port& p) {
  check_owner(p, "close");
  nodus::send(p.proc, Close{});
}

Async<std::optional<ZmqMessage>> recv(Port p, std::chrono::milliseconds timeout) {
  check_owner(p, "recv");
  auto s = state_of(p);
  if (!s) throw closed_error(p);
  if (s->opts.flow == Flow::passive) {
    s->granted.fetch_add(1);
    if (auto ps = ports()) ps->wake();
  }
  const std::uint64_t id = p.id;
  auto m = co_await receive<ZmqMessage>([id](const ZmqMessage& z) { return z.port.id == id; }, timeout);
  if (!m && s->opts.flow == Flow::passive) {
    // not taken: the grant goes (a message delivered meanwhile waits for the next recv)
    std::int64_t g = s->granted.load();
    while (g > 0 && !s->granted.compare_exchange_weak(g, g - 1)) {
    }
  }
  co_return m;
}

}  // namespace zmq_port

void detail::PortToken::release(std::vector<std::string>& parts) noexcept {
  if (!s) return;
  if (s->opts.flow == zmq_port::Flow::active) {
    const std::int64_t left = s->unhandled.fetch_sub(1) - 1;
    if (left <= s->resume_at() && s->paused.load() && s->paused.exchange(false)) {  // paused at its budget
      std::shared_ptr<zmq_port::Ports> ps;
      {
        std::lock_guard lock(zmq_port::g_mu);
        ps = zmq_port::g_ports;
      }
      if (ps) ps->wake();
    }
  }
  if (parts.capacity() == 0) return;  // (moved out by its handler)
  for (std::string& f : parts) {
    if (f.capacity() > zmq_port::kSpareFrameBytes) std::string().swap(f);
  }
  try {
    std::lock_guard lock(s->spare_mu);
    if (s->returned.size() < zmq_port::kSpareMessages) s->returned.push_back(std::move(parts));
  } catch (...) {  // (no room to keep it: it is freed here)
  }
}

}  // namespace nodus
