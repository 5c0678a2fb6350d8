// Multi-process test harness: child OS processes that are always killed and reaped, a private
// port mapper per test, and waiting on conditions with deadlines.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nodus::test {

/// A child process, started with stdout/stderr to files; SIGTERM then SIGKILL, and reaped,
/// when it goes out of scope (also when the test fails).
class Child {
 public:
  /// `input`: text written to a file that becomes the child's stdin (else /dev/null).
  Child(std::vector<std::string> args, const std::string& tag, const std::string& input = {})
      : out_(tmp(tag + ".out")), err_(tmp(tag + ".err")), in_(input.empty() ? "/dev/null" : tmp(tag + ".in")) {
    if (!input.empty()) std::ofstream(in_) << input;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // only async-signal-safe calls until exec. If the test process dies without running
      // destructors (a sanitizer abort, the watchdog), the kernel kills this child too.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int in = ::open(in_.c_str(), O_RDONLY);
      const int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Child() { stop(); }
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
  int status_ = 0;
  std::string out_, err_, in_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago (for nodes given a fixed --port).
inline std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
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
  const char* base = std::getenv("NODUS_PORTMAPPER_PORT");
  const int b = base ? std::atoi(base) : 24000 + (::getpid() % 10000);
  return static_cast<std::uint16_t>(b + 1 + (n++ % 200));
}

}  // namespace nodus::test
