// Testing distributed code: real peer nodes as child OS processes, always killed and reaped
// (even when the test fails or the test binary dies), private port mappers, waiting on
// conditions with deadlines, and the lesson's [distributed] tag rule. Header-only; no test
// framework needed (docs/testing.md shows it with Catch2).
//
//   nodus::testing::PortMapper pm;                       // private port, exported to children
//   nodus::testing::PeerNode kate({"./chat", "--sname", "kate@localhost", "--cookie", "c"}, pm, "kate");
//   REQUIRE(kate.ready());                               // registered and answering ping
//   ... kate.out() / kate.err() / kate.signal(SIGKILL) ...
//   nodus::testing::CurveKeys keys({"kate", "alex"});        // CURVE mode: keys.flags("kate")
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nodus::testing {


/// A child process, started with stdout/stderr to files; SIGTERM then SIGKILL, and reaped,
/// when it goes out of scope (also when the test fails).
class Child {
 public:
  /// Marks a child whose stdin is a pipe the test writes to (write_stdin, close_stdin).
  struct Pipe {};

  /// `input`: text written to a file that becomes the child's stdin (else /dev/null).
  Child(std::vector<std::string> args, const std::string& tag, const std::string& input = {})
      : Child(std::move(args), tag, input, false) {}
  Child(std::vector<std::string> args, const std::string& tag, Pipe) : Child(std::move(args), tag, {}, true) {}

  /// Pipe children: sends `text` to the child's stdin / ends it.
  bool write_stdin(const std::string& text) {
    return stdin_fd_ >= 0 && ::write(stdin_fd_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }
  void close_stdin() {
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
    stdin_fd_ = -1;
  }

 private:
  Child(std::vector<std::string> args, const std::string& tag, const std::string& input, bool pipe)
      : out_(tmp(tag + ".out")), err_(tmp(tag + ".err")), in_(input.empty() ? "/dev/null" : tmp(tag + ".in")) {
    if (!input.empty()) std::ofstream(in_) << input;
    int fds[2] = {-1, -1};
    if (pipe && ::pipe2(fds, O_CLOEXEC) != 0) fds[0] = fds[1] = -1;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // opened (emptied) here, before the child exists: out() never reads an earlier child's
    // output left in the same file
    const int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // only async-signal-safe calls until exec. If the test process dies without running
      // destructors (a sanitizer abort, the watchdog), the kernel kills this child too.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int in = fds[0] >= 0 ? fds[0] : ::open(in_.c_str(), O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    if (fds[0] >= 0) ::close(fds[0]);
    stdin_fd_ = fds[1];
  }

 public:
  ~Child() {
    close_stdin();
    stop();
  }
  Child(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = st;
      pid_ = -1;
      return false;
    }
    return true;
  }
  /// Waits for the exit (with a deadline); the exit code, or -1.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < end) poll_pause();
    if (running()) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (wait(std::chrono::seconds(3)) == -1 && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      pid_ = -1;
    }
  }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

  static void poll_pause() { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }  // NOLINT: polling interval of a deadline wait

 private:
  static std::string tmp(const std::string& name) {
    static const std::string dir = [] {
      char t[] = "/tmp/nodus-test-XXXXXX";
      return std::string(::mkdtemp(t));
    }();
    return dir + "/" + name;
  }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int status_ = 0;
  std::string out_, err_, in_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago (for nodes given a fixed --port).
/// A TCP socket bound to 127.0.0.1:`port` (0: a free one) with SO_REUSEADDR, as the port
/// mapper binds; -1 if the port is taken.
inline int bind_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline std::uint16_t free_port() {
  const int fd = bind_loopback(0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  std::uint16_t port = 0;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// A test binary can also run as a peer node of its own tests: started as
/// `<binary> --nodus-peer ARGS...`, test_main.cpp calls this function (set by the test file)
/// instead of Catch2. `self_exe()` is the path to start.
inline int (*peer_main)(int argc, char** argv) = nullptr;
inline std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

/// How many times `what` occurs in `text` (log lines, a child's output).
inline std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

/// Waits until `cond` holds or `timeout` passes; returns the last value of `cond`.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    Child::poll_pause();
  }
  return cond();
}

/// A port for this test's private port mapper: $NODUS_PORTMAPPER_PORT (set per run by
/// scripts/test.sh) plus a counter, so tests never meet a user's nodes or each other.
inline std::uint16_t next_portmapper_port() {
  static int n = 0;
  // read once: PortMapper exports the port it uses in the same variable
  static const int b = [] {
    const char* base = std::getenv("NODUS_PORTMAPPER_PORT");
    return base ? std::atoi(base) : 22000 + (::getpid() % 10000);
  }();
  // the next one nothing listens on (a port mapper a test's node started on its own, which
  // outlives the test, must not answer for the next test's)
  for (int tries = 0; tries < 200; ++tries) {
    const auto port = static_cast<std::uint16_t>(b + 1 + (n++ % 200));
    if (const int fd = bind_loopback(port); fd >= 0) {
      ::close(fd);
      return port;
    }
  }
  return static_cast<std::uint16_t>(b + 1 + (n++ % 200));
}

/// The lesson's rule for tests tagged [distributed]: exclude them when nodes cannot be
/// started here (NODUS_NO_DIST=1, or no TCP on 127.0.0.1); `why` says which.
inline bool distributed_excluded(std::string* why = nullptr) {
  if (const char* no = std::getenv("NODUS_NO_DIST"); no && std::string(no) == "1") {
    if (why) *why = "NODUS_NO_DIST=1";
    return true;
  }
  if (free_port() == 0) {
    if (why) *why = "cannot listen on 127.0.0.1";
    return true;
  }
  return false;
}

/// A private port mapper for one test, started from `binary` (nodus-portmapper) on a fresh
/// port, which it also exports as $NODUS_PORTMAPPER_PORT to nodes started afterwards.
class PortMapper {
 public:
  /// `extra`: more nodus-portmapper flags (`--request-timeout 2000`...).
  explicit PortMapper(const std::string& binary, std::uint16_t port = next_portmapper_port(),
                      std::vector<std::string> extra = {})
      : port_(port), child_(args(binary, port, std::move(extra)), "portmapper-" + std::to_string(port)) {
    ::setenv("NODUS_PORTMAPPER_PORT", std::to_string(port).c_str(), 1);
    // listening before the constructor returns: a node started right after it would otherwise
    // find nobody on the port and start a port mapper of its own (which outlives the test)
    (void)ready();
  }
  /// Its log (stderr).
  std::string err() const { return child_.err(); }
  std::uint16_t port() const { return port_; }
  /// True once it answers (a name list request) within `timeout`.
  bool ready(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return eventually([&] { return names().has_value() || !child_.running(); }, timeout) && child_.running();
  }
  /// The NAMES answer, one `name kate at port 40123` line each; nullopt if it does not answer.
  std::optional<std::vector<std::string>> names() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      return std::nullopt;
    }
    const char req[] = "NAMES\n";
    std::string text;
    if (::write(fd, req, sizeof(req) - 1) == static_cast<ssize_t>(sizeof(req) - 1)) {
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }
  bool lists(const std::string& short_name) { return port_of(short_name) != 0; }
  /// The port `short_name` is registered at, from the NAMES answer; 0 if it is not.
  std::uint16_t port_of(const std::string& short_name) {
    auto n = names();
    if (!n) return 0;
    const std::string head = "name " + short_name + " at port ";
    for (const auto& l : *n) {
      if (l.rfind(head, 0) == 0) return static_cast<std::uint16_t>(std::stoul(l.substr(head.size())));
    }
    return 0;
  }

 private:
  static std::vector<std::string> args(const std::string& binary, std::uint16_t port, std::vector<std::string> extra) {
    std::vector<std::string> a{binary, "--port", std::to_string(port)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::uint16_t port_;
  Child child_;
};

/// A peer node: a node program started as a child process (killed and reaped at the end of
/// the scope). ready() waits until it is registered with the port mapper under `short_name`.
class PeerNode {
 public:
  PeerNode(std::vector<std::string> args, PortMapper& pm, std::string short_name)
      : pm_(pm), name_(std::move(short_name)), child_(std::move(args), name_ + std::to_string(pm.port()), Child::Pipe{}) {}
  bool ready(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return eventually([&] { return pm_.lists(name_) || !child_.running(); }, timeout) && child_.running();
  }
  Child& process() { return child_; }
  std::string out() const { return child_.out(); }
  std::string err() const { return child_.err(); }
  void signal(int sig) { child_.signal(sig); }
  bool say(const std::string& line) { return child_.write_stdin(line + "\n"); }

 private:
  PortMapper& pm_;
  std::string name_;
  Child child_;
};

/// CURVE key pairs for tests, in a fresh directory removed with the object: DIR/<name>/node.key
/// (mode 0400) and DIR/<name>/node.pub for each of `names`, and DIR/allow/<name>.pub for each
/// of `allowed` (default: all of them), the directory to pass as --curve-allow.
class CurveKeys {
 public:
  explicit CurveKeys(const std::vector<std::string>& names, std::optional<std::vector<std::string>> allowed = {}) {
    char tmpl[] = "/tmp/nodus-keys-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    std::filesystem::create_directory(allow());
    for (const auto& n : names) {
      char pub[41], sec[41];
      if (zmq_curve_keypair(pub, sec) != 0) throw std::runtime_error("this libzmq has no CURVE");
      std::filesystem::create_directory(dir_ + "/" + n);
      std::ofstream(key_file(n)) << sec << "\n";
      ::chmod(key_file(n).c_str(), 0400);
      std::ofstream(pub_file(n)) << pub << "\n";
    }
    for (const auto& n : allowed ? *allowed : names) std::filesystem::copy_file(pub_file(n), allow() + "/" + n + ".pub");
  }
  ~CurveKeys() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  CurveKeys(const CurveKeys&) = delete;

  const std::string& dir() const { return dir_; }
  std::string key_file(const std::string& n) const { return dir_ + "/" + n + "/node.key"; }
  std::string pub_file(const std::string& n) const { return dir_ + "/" + n + "/node.pub"; }
  std::string allow() const { return dir_ + "/allow"; }
  /// The Z85 public key of `n`.
  std::string pub(const std::string& n) const {
    std::ifstream in(pub_file(n));
    std::string l;
    std::getline(in, l);
    return l;
  }
  /// `--curve-key <n's key> --curve-allow <allow dir>`.
  std::vector<std::string> flags(const std::string& n) const {
    return {"--curve-key", key_file(n), "--curve-allow", allow()};
  }

 private:
  std::string dir_;
};

}  // namespace nodus::testing
