// Port mapper daemon and client (see portmapper.hpp).
#include "portmapper.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <sstream>

#include "nodus/log.hpp"
#include "nodus/node.hpp"

extern char** environ;

namespace nodus::dist {
namespace {

constexpr std::size_t kMaxLine = 512;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 255) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::optional<sockaddr_in> resolve(const std::string& host, std::uint16_t port, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr) {
    if (error) *error = "cannot resolve host " + host + ": " + gai_strerror(rc);
    return std::nullopt;
  }
  sockaddr_in a = *reinterpret_cast<sockaddr_in*>(res->ai_addr);
  freeaddrinfo(res);
  a.sin_port = htons(port);
  return a;
}

// Connects with a deadline; -1 and `error` (with errno in `err`) on failure.
int connect_to(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
               std::string* error, int* err = nullptr) {
  auto addr = resolve(host, port, error);
  if (!addr) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr));
  if (rc < 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    int so = 0;
    socklen_t len = sizeof(so);
    if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) == 0 && so == 0) {
      rc = 0;
    } else {
      errno = rc == 0 ? ETIMEDOUT : (so ? so : errno);
      rc = -1;
    }
  }
  if (rc < 0) {
    if (err) *err = errno;
    if (error) *error = "port mapper " + host + ":" + std::to_string(port) + " unreachable: " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

// Reads until EOF (or `one_line`: until a newline), with a deadline.
std::optional<std::string> read_reply(int fd, bool one_line, std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[1024];
  for (;;) {
    if (one_line && out.find('\n') != std::string::npos) return out;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return one_line ? std::nullopt : std::optional<std::string>(out);
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > 1 << 20) return std::nullopt;
  }
}

std::string find_daemon_binary() {
  if (const char* env = std::getenv("NODUS_PORTMAPPER_BIN")) return env;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = 0;
    std::string dir(self);
    dir.resize(dir.rfind('/') + 1);
    if (::access((dir + "nodus-portmapper").c_str(), X_OK) == 0) return dir + "nodus-portmapper";
  }
#ifdef NODUS_PORTMAPPER_BUILD_PATH
  if (::access(NODUS_PORTMAPPER_BUILD_PATH, X_OK) == 0) return NODUS_PORTMAPPER_BUILD_PATH;
#endif
#ifdef NODUS_PORTMAPPER_INSTALL_PATH
  if (::access(NODUS_PORTMAPPER_INSTALL_PATH, X_OK) == 0) return NODUS_PORTMAPPER_INSTALL_PATH;
#endif
  return "nodus-portmapper";  // PATH
}

}  // namespace

std::uint16_t portmapper_port() {
  if (const char* env = std::getenv("NODUS_PORTMAPPER_PORT")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0 && v < 65536) return static_cast<std::uint16_t>(v);
    logger().warn("ignoring NODUS_PORTMAPPER_PORT={} (not a port number)", env);
  }
  return 4370;
}

// ------------------------------------------------------------------------------ the daemon

namespace {

bool loopback(std::uint32_t ip_network_order) { return (ntohl(ip_network_order) >> 24) == 127; }

std::string ip_text(std::uint32_t ip_network_order) {
  in_addr a{};
  a.s_addr = ip_network_order;
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

// The IPv4 TCP sockets of this network namespace, as /proc/net/tcp lists them.
struct TcpSocket {
  std::uint32_t local_ip = 0, remote_ip = 0;  // network order
  std::uint16_t local_port = 0, remote_port = 0;
  int state = 0;  // 0x0A: listening
  long uid = -1;
};
std::vector<TcpSocket> tcp_sockets() {
  std::vector<TcpSocket> out;
  FILE* f = std::fopen("/proc/net/tcp", "re");
  if (f == nullptr) return out;
  char line[512];
  if (std::fgets(line, sizeof(line), f) == nullptr) {  // the header
    std::fclose(f);
    return out;
  }
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned lip = 0, lport = 0, rip = 0, rport = 0, st = 0;
    long uid = -1;
    // sl local rem st tx:rx tr:when retrnsmt uid ...
    if (std::sscanf(line, " %*d: %8X:%4X %8X:%4X %2X %*X:%*X %*X:%*X %*X %ld", &lip, &lport, &rip, &rport, &st,
                    &uid) == 6) {
      out.push_back({lip, rip, static_cast<std::uint16_t>(lport), static_cast<std::uint16_t>(rport),
                     static_cast<int>(st), uid});
    }
  }
  std::fclose(f);
  return out;
}

// The user owning the other end of an accepted loopback connection (peer -> us), or -1.
long owner_of(const sockaddr_in& peer, const sockaddr_in& us) {
  for (const TcpSocket& t : tcp_sockets()) {
    if (t.local_ip == peer.sin_addr.s_addr && t.local_port == ntohs(peer.sin_port) &&
        t.remote_ip == us.sin_addr.s_addr && t.remote_port == ntohs(us.sin_port)) {
      return t.uid;
    }
  }
  return -1;
}

// Does `uid` have a TCP socket listening on `port` (any local address)?
bool listening(std::uint16_t port, long uid) {
  for (const TcpSocket& t : tcp_sockets()) {
    if (t.state == 0x0A && t.local_port == port && t.uid == uid) return true;
  }
  return false;
}

// Lines about what clients do (connecting is free for anyone who can reach the port).
void log_limited(const char* kind, const std::string& line) {
  nodus::log_limited(spdlog::level::warn, kind, "port mapper: " + line);
}

int listen_on(const std::string& addr, std::uint16_t port, std::string* error) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1) {
    *error = "bad bind address " + addr + " (expected an IPv4 address)";
    return -1;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(fd, 128) < 0) {
    *error = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int run_portmapper(const PortmapperOptions& opts) {
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  ::sigprocmask(SIG_UNBLOCK, &stop_signals, nullptr);
  const std::uint16_t port = opts.port ? opts.port : portmapper_port();
  const bool check_owner = opts.check_owner && ::access("/proc/net/tcp", R_OK) == 0;
  if (opts.check_owner && !check_owner) {
    logger().warn("port mapper: cannot read /proc/net/tcp: registrations are not checked against their port's owner");
  }
  std::vector<std::pair<int, std::string>> listeners;  // fd, address
  for (const std::string& b : opts.bind.empty() ? std::vector<std::string>{"127.0.0.1"} : opts.bind) {
    std::string error;
    const int fd = listen_on(b, port, &error);
    if (fd < 0) {
      logger().error("port mapper: {}", error);
      for (auto& [l, a] : listeners) ::close(l);
      return 1;
    }
    listeners.emplace_back(fd, b);
    logger().info("port mapper listening on {}:{}", b, port);
  }

  struct Client {
    std::string buf;
    std::string name;  // set once registered
    sockaddr_in peer{}, us{};
    Clock::time_point since;
  };
  struct Entry {
    std::uint16_t port;
    std::uint32_t creation;
    std::string key;  // CURVE public key (Z85), or empty
    long uid = -1;    // who registered it
    int fd = -1;      // its registration connection
  };
  std::map<int, Client> clients;
  std::map<std::string, Entry> names;
  std::map<std::string, std::uint32_t> creations;
  std::map<std::uint32_t, std::size_t> pending_from;  // unregistered clients by address
  std::size_t pending = 0;
  std::mt19937 rng(std::random_device{}());
  auto idle_since = Clock::now();
  auto next_check = Clock::now() + opts.check_interval;

  auto uncount = [&](Client& c) {
    if (!c.name.empty()) return;
    --pending;
    if (auto it = pending_from.find(c.peer.sin_addr.s_addr); it != pending_from.end() && --it->second == 0) {
      pending_from.erase(it);
    }
  };
  auto drop = [&](int fd) {
    auto it = clients.find(fd);
    if (it == clients.end()) return;
    if (!it->second.name.empty()) {
      names.erase(it->second.name);
      logger().info("port mapper: {} went away", it->second.name);
      if (names.empty()) idle_since = Clock::now();
    } else {
      uncount(it->second);
    }
    clients.erase(it);
    ::close(fd);
  };

  auto handle = [&](int fd, Client& c, const std::string& line) -> bool {  // false: close
    std::istringstream in(line);
    std::string cmd, name;
    in >> cmd;
    if (cmd == "REGISTER" && c.name.empty()) {
      long p = 0;
      std::string key, extra;
      in >> name >> p >> key >> extra;
      if (!valid_name(name) || p <= 0 || p > 65535 || !extra.empty() || (!key.empty() && !valid_z85_key(key))) {
        write_all(fd, "ERR bad_request\n");
        return false;
      }
      if (!loopback(c.peer.sin_addr.s_addr)) {  // as epmd: nodes register with their own host's mapper
        log_limited("register", "refused REGISTER " + name + " from " + ip_text(c.peer.sin_addr.s_addr) +
                                    ": registrations come from this host only");
        write_all(fd, "ERR not_local\n");
        return false;
      }
      if (names.size() >= opts.max_names) {
        log_limited("register", "refused REGISTER " + name + ": " + std::to_string(opts.max_names) + " names registered");
        write_all(fd, "ERR too_many_names\n");
        return false;
      }
      const long uid = owner_of(c.peer, c.us);
      if (auto taken = names.find(name); taken != names.end()) {
        if (taken->second.uid != uid) {
          log_limited("register", "refused REGISTER " + name + " by uid " + std::to_string(uid) +
                                      ": it is registered by uid " + std::to_string(taken->second.uid));
        }
        write_all(fd, "ERR name_taken\n");
        return false;
      }
      // the node must be listening on the port it names, as the same user
      if (check_owner && !listening(static_cast<std::uint16_t>(p), uid)) {
        log_limited("register", "refused REGISTER " + name + " " + std::to_string(p) + " by uid " +
                                    std::to_string(uid) + ": that user has no socket listening on port " +
                                    std::to_string(p));
        write_all(fd, "ERR not_listening\n");
        return false;
      }
      auto [it, fresh] = creations.try_emplace(name, 0);
      it->second = fresh ? (rng() | 1u) : it->second + 1;
      if (it->second == 0) it->second = 1;
      uncount(c);
      names[name] = Entry{static_cast<std::uint16_t>(p), it->second, key, uid, fd};
      c.name = name;
      write_all(fd, "OK " + std::to_string(it->second) + "\n");
      logger().info("port mapper: {} registered at port {}{}", name, p, key.empty() ? "" : " (CURVE)");
      return true;
    }
    if (cmd == "BIND" && c.name.empty()) {  // a node on this host asks to be found on ADDR too
      std::string addr, extra;
      in >> addr >> extra;
      if (!loopback(c.peer.sin_addr.s_addr) || addr.empty() || !extra.empty()) {
        write_all(fd, "ERR bad_request\n");
        return false;
      }
      bool have = false;
      for (auto& [l, a] : listeners) have = have || a == addr || a == "0.0.0.0";
      std::string error;
      if (!have) {
        const int l = listen_on(addr, port, &error);
        if (l < 0) {
          write_all(fd, "ERR " + error + "\n");
          return false;
        }
        listeners.emplace_back(l, addr);
        logger().info("port mapper listening on {}:{} too", addr, port);
      }
      write_all(fd, "OK\n");
      return false;
    }
    if (cmd == "LOOKUP") {
      in >> name;
      auto it = names.find(name);
      write_all(fd, it == names.end() ? std::string("NOTFOUND\n")
                                      : "PORT " + std::to_string(it->second.port) + " " +
                                            std::to_string(it->second.creation) +
                                            (it->second.key.empty() ? "" : " " + it->second.key) + "\n");
      return false;
    }
    if (cmd == "NAMES") {
      std::string out;
      for (const auto& [n, e] : names) out += "name " + n + " at port " + std::to_string(e.port) + "\n";
      write_all(fd, out);
      return false;
    }
    write_all(fd, "ERR bad_request\n");
    return false;
  };

  int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // taken when out of descriptors
  auto accept_from = [&](int lfd) {
    for (;;) {
      Client c;
      socklen_t len = sizeof(c.peer);
      const int cfd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&c.peer), &len, SOCK_CLOEXEC);
      if (cfd < 0 && (errno == EMFILE || errno == ENFILE) && spare >= 0) {
        // the connection would wait in the backlog and the socket stay readable: close it
        ::close(std::exchange(spare, -1));
        const int taken = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (taken >= 0) ::close(taken);
        spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        log_limited("connections", "closed a connection: out of file descriptors");
        continue;
      }
      if (cfd < 0) return;
      const std::uint32_t ip = c.peer.sin_addr.s_addr;
      if (pending >= opts.max_pending || pending_from[ip] >= opts.max_pending_per_address) {
        if (pending_from[ip] == 0) pending_from.erase(ip);
        ::close(cfd);
        log_limited("connections", "closed a connection from " + ip_text(ip) + ": " +
                                       (pending >= opts.max_pending ? std::to_string(pending) + " requests are open"
                                                                    : "that address has " +
                                                                          std::to_string(opts.max_pending_per_address) +
                                                                          " requests open"));
        continue;
      }
      const int one = 1;
      ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      len = sizeof(c.us);
      ::getsockname(cfd, reinterpret_cast<sockaddr*>(&c.us), &len);
      c.since = Clock::now();
      ++pending;
      ++pending_from[ip];
      clients.emplace(cfd, std::move(c));
    }
  };

  while (!g_stop) {
    std::vector<pollfd> fds;
    for (auto& [l, a] : listeners) fds.push_back({l, POLLIN, 0});
    const std::size_t first = fds.size();
    for (auto& [fd, c] : clients) fds.push_back({fd, POLLIN, 0});
    const int rc = ::poll(fds.data(), fds.size(), 250);
    if (rc < 0 && errno != EINTR) break;
    const auto now = Clock::now();
    if (opts.idle_exit.count() > 0 && names.empty() && clients.empty() && now - idle_since > opts.idle_exit) {
      logger().info("port mapper: idle for {} s, exiting", opts.idle_exit.count());
      break;
    }
    // a request must be whole within request_timeout, however slowly its bytes come
    std::vector<int> late;
    for (auto& [fd, c] : clients) {
      if (c.name.empty() && now - c.since > opts.request_timeout) late.push_back(fd);
    }
    for (int fd : late) {
      log_limited("connections", "closed a connection from " + ip_text(clients[fd].peer.sin_addr.s_addr) +
                                     ": no request within " + std::to_string(opts.request_timeout.count()) + " ms");
      drop(fd);
    }
    // a registration whose node no longer listens (it hung, or a squatter named a port it
    // does not serve) is dropped
    if (check_owner && now >= next_check) {
      next_check = now + opts.check_interval;
      std::vector<int> gone;
      for (const auto& [n, e] : names) {
        if (!listening(e.port, e.uid)) gone.push_back(e.fd);
      }
      for (int fd : gone) {
        log_limited("register", "dropped " + clients[fd].name + ": nothing listens on its port any more");
        drop(fd);
      }
    }
    if (rc <= 0) continue;
    for (std::size_t i = 0; i < first; ++i) {
      if (fds[i].revents & POLLIN) accept_from(fds[i].fd);
    }
    for (std::size_t i = first; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      const int fd = fds[i].fd;
      auto it = clients.find(fd);
      if (it == clients.end()) continue;
      char buf[512];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        drop(fd);
        continue;
      }
      Client& c = it->second;
      if (!c.name.empty()) continue;  // a registration says nothing more; ignore noise
      c.buf.append(buf, static_cast<std::size_t>(n));
      const auto nl = c.buf.find('\n');
      if (nl == std::string::npos) {
        if (c.buf.size() > kMaxLine) drop(fd);
        continue;
      }
      if (!handle(fd, c, c.buf.substr(0, nl))) drop(fd);
    }
  }
  for (auto& [fd, c] : clients) ::close(fd);
  for (auto& [l, a] : listeners) ::close(l);
  if (spare >= 0) ::close(spare);
  return 0;
}

// ------------------------------------------------------------------------------ the client

PortmapperClient::~PortmapperClient() { unregister(); }

void PortmapperClient::unregister() {
  if (reg_fd_ >= 0) ::close(reg_fd_);
  reg_fd_ = -1;
}

std::optional<std::uint32_t> PortmapperClient::register_node(const std::string& name,
                                                             std::uint16_t node_port,
                                                             const std::string& curve_key,
                                                             std::string* error, const std::string& listen_addr) {
  if (!ensure_portmapper(port_, error, listen_addr)) return std::nullopt;
  int fd = connect_to(host_, port_, std::chrono::seconds(2), error);
  if (fd < 0) return std::nullopt;
  write_all(fd, "REGISTER " + name + " " + std::to_string(node_port) + (curve_key.empty() ? "" : " " + curve_key) + "\n");
  auto reply = read_reply(fd, true, std::chrono::seconds(2));
  if (!reply || reply->rfind("OK ", 0) != 0) {
    if (error) *error = reply ? reply->substr(0, reply->find('\n')) : "no answer from port mapper";
    if (error && error->rfind("ERR ", 0) == 0) *error = error->substr(4);
    ::close(fd);
    return std::nullopt;
  }
  reg_fd_ = fd;
  return static_cast<std::uint32_t>(std::strtoul(reply->c_str() + 3, nullptr, 10));
}

std::optional<NodeAddress> PortmapperClient::lookup(const std::string& name, std::string* error) const {
  int fd = connect_to(host_, port_, std::chrono::seconds(2), error);
  if (fd < 0) return std::nullopt;
  write_all(fd, "LOOKUP " + name + "\n");
  auto reply = read_reply(fd, true, std::chrono::seconds(2));
  ::close(fd);
  if (!reply || reply->rfind("PORT ", 0) != 0) {
    if (error) *error = reply && reply->rfind("NOTFOUND", 0) == 0 ? "not registered" : "no answer from port mapper";
    return std::nullopt;
  }
  std::istringstream in(reply->substr(5));
  long port = 0;
  unsigned long creation = 0;
  std::string key;
  in >> port >> creation >> key;
  if (port <= 0 || port > 65535 || (!key.empty() && !valid_z85_key(key))) {
    if (error) *error = "bad answer from port mapper";
    return std::nullopt;
  }
  return NodeAddress{static_cast<std::uint16_t>(port), static_cast<std::uint32_t>(creation), key};
}

std::optional<std::vector<std::string>> PortmapperClient::names(std::string* error) const {
  int fd = connect_to(host_, port_, std::chrono::seconds(2), error);
  if (fd < 0) return std::nullopt;
  write_all(fd, "NAMES\n");
  auto reply = read_reply(fd, false, std::chrono::seconds(2));
  ::close(fd);
  if (!reply) {
    if (error) *error = "no answer from port mapper";
    return std::nullopt;
  }
  std::vector<std::string> lines;
  std::istringstream in(*reply);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) lines.push_back(l);
  }
  return lines;
}

namespace {
// Asks the running port mapper to listen on `addr` too (a node there must be found from other
// hosts); false with `error` if it cannot.
bool ask_bind(std::uint16_t port, const std::string& addr, std::string* error) {
  const int fd = connect_to("127.0.0.1", port, std::chrono::seconds(1), error);
  if (fd < 0) return false;
  write_all(fd, "BIND " + addr + "\n");
  auto reply = read_reply(fd, true, std::chrono::seconds(2));
  ::close(fd);
  if (reply && reply->rfind("OK", 0) == 0) return true;
  if (error) {
    *error = reply ? "the port mapper cannot listen on " + addr + ": " + reply->substr(0, reply->find('\n'))
                   : "no answer from the port mapper";
  }
  return false;
}
}  // namespace

bool ensure_portmapper(std::uint16_t port, std::string* error, const std::string& listen_addr) {
  const bool remote = !listen_addr.empty() && listen_addr.rfind("127.", 0) != 0;
  int err = 0;
  int fd = connect_to("127.0.0.1", port, std::chrono::seconds(1), error, &err);
  if (fd >= 0) {
    ::close(fd);
    return !remote || ask_bind(port, listen_addr, error);
  }
  if (err != ECONNREFUSED) return false;
  // nobody listens: start the daemon, in its own session so it outlives this node; on
  // 127.0.0.1, and on the node's address when other hosts must find it there
  const std::string bin = find_daemon_binary();
  const std::string port_arg = std::to_string(port);
  std::vector<char*> argv{const_cast<char*>(bin.c_str()), const_cast<char*>("--port"),
                          const_cast<char*>(port_arg.c_str()), const_cast<char*>("--bind"),
                          const_cast<char*>("127.0.0.1")};
  if (remote) {
    argv.push_back(const_cast<char*>("--bind"));
    argv.push_back(const_cast<char*>(listen_addr.c_str()));
  }
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // its own session, default signal handling and an empty signal mask (the spawning node may
  // block or ignore signals for its own reasons; the daemon must still stop on SIGTERM)
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, bin.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (error) *error = "cannot start port mapper " + bin + ": " + std::strerror(rc);
    return false;
  }
  logger().info("started port mapper {} on port {} (pid {})", bin, port, pid);
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (Clock::now() < deadline) {
    fd = connect_to("127.0.0.1", port, std::chrono::milliseconds(200), nullptr);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    pollfd none{-1, 0, 0};
    ::poll(&none, 0, 20);  // retry pacing while the daemon binds
  }
  if (error) *error = "port mapper did not start on port " + port_arg;
  return false;
}

}  // namespace nodus::dist
