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
#include <cstring>
#include <map>
#include <random>
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
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, opts.bind.c_str(), &a.sin_addr) != 1) {
    logger().error("port mapper: bad bind address {}", opts.bind);
    return 1;
  }
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || ::listen(lfd, 128) < 0) {
    const int err = errno;  // before the logger can touch it
    logger().error("port mapper: cannot listen on {}:{}: {}", opts.bind, port, std::strerror(err));
    ::close(lfd);
    return 1;
  }
  logger().info("port mapper listening on {}:{}", opts.bind, port);

  struct Client {
    std::string buf;
    std::string name;  // set once registered
  };
  struct Entry {
    std::uint16_t port;
    std::uint32_t creation;
    std::string key;  // CURVE public key (Z85), or empty
  };
  std::map<int, Client> clients;
  std::map<std::string, Entry> names;
  std::map<std::string, std::uint32_t> creations;
  std::mt19937 rng(std::random_device{}());
  auto idle_since = Clock::now();

  auto drop = [&](int fd) {
    auto it = clients.find(fd);
    if (it != clients.end() && !it->second.name.empty()) {
      names.erase(it->second.name);
      logger().info("port mapper: {} went away", it->second.name);
      if (names.empty()) idle_since = Clock::now();
    }
    clients.erase(fd);
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
      if (names.count(name)) {
        write_all(fd, "ERR name_taken\n");
        return false;
      }
      auto [it, fresh] = creations.try_emplace(name, 0);
      it->second = fresh ? (rng() | 1u) : it->second + 1;
      if (it->second == 0) it->second = 1;
      names[name] = Entry{static_cast<std::uint16_t>(p), it->second, key};
      c.name = name;
      write_all(fd, "OK " + std::to_string(it->second) + "\n");
      logger().info("port mapper: {} registered at port {}{}", name, p, key.empty() ? "" : " (CURVE)");
      return true;
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

  while (!g_stop) {
    std::vector<pollfd> fds{{lfd, POLLIN, 0}};
    for (auto& [fd, c] : clients) fds.push_back({fd, POLLIN, 0});
    const int rc = ::poll(fds.data(), fds.size(), 1000);
    if (rc < 0 && errno != EINTR) break;
    if (opts.idle_exit.count() > 0 && names.empty() && clients.empty() &&
        Clock::now() - idle_since > opts.idle_exit) {
      logger().info("port mapper: idle for {} s, exiting", opts.idle_exit.count());
      break;
    }
    if (rc <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd >= 0) {
        ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        clients[cfd];
      }
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
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
  ::close(lfd);
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
                                                             std::string* error) {
  if (!ensure_portmapper(port_, error)) return std::nullopt;
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

bool ensure_portmapper(std::uint16_t port, std::string* error) {
  int err = 0;
  int fd = connect_to("127.0.0.1", port, std::chrono::seconds(1), error, &err);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  if (err != ECONNREFUSED) return false;
  // nobody listens: start the daemon, in its own session so it outlives this node
  const std::string bin = find_daemon_binary();
  const std::string port_arg = std::to_string(port);
  char* argv[] = {const_cast<char*>(bin.c_str()), const_cast<char*>("--port"),
                  const_cast<char*>(port_arg.c_str()), nullptr};
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
  const int rc = posix_spawnp(&pid, bin.c_str(), &fa, &attr, argv, environ);
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
