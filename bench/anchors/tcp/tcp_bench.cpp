// The physical limit on this machine for what nodus does on loopback: raw TCP between two
// OS processes (fork), no library. Records are length-prefixed like a nodus batch: u32 length,
// u64 sequence, payload. The sender batches records into 64 KiB writes; the receiver reads
// 256 KiB at a time, walks the records and checks every sequence number.
//   tcp_bench oneway   --n N --payload P   -> RESULT name=tcp_oneway_<P>B_batched (msgs/s)
//   tcp_bench oneway ... --name NAME       -> RESULT name=NAME (msgs/s)
//   tcp_bench pingpong --n N [--spin]      -> RESULT name=tcp_pingpong[_spin]_median/_p99 (us)
// A record larger than the receiver's buffer grows it (the size curve goes to 16 MiB).
// msgs/s is measured at the sender from the first write to the receiver's one-byte ack.
#include <algorithm>
#include <arpa/inet.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using clk = std::chrono::steady_clock;
[[noreturn]] static void die(const char* w) { std::perror(w); _exit(2); }

static int listen_any(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (sockaddr*)&a, sizeof a) || listen(fd, 1)) die("bind/listen");
  socklen_t l = sizeof a; getsockname(fd, (sockaddr*)&a, &l); port = ntohs(a.sin_port);
  return fd;
}
static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK); a.sin_port = htons(port);
  if (connect(fd, (sockaddr*)&a, sizeof a)) die("connect");
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}
static void write_all(int fd, const char* p, size_t n) {
  while (n) { ssize_t w = write(fd, p, n); if (w <= 0) die("write"); p += w; n -= w; }
}
static bool read_all(int fd, char* p, size_t n, bool spin) {
  while (n) {
    ssize_t r = recv(fd, p, n, spin ? MSG_DONTWAIT : 0);
    if (r < 0 && spin && errno == EAGAIN) continue;
    if (r <= 0) return false;
    p += r; n -= r;
  }
  return true;
}

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: tcp_bench oneway|pingpong [--n N] [--payload P] [--spin]\n"); return 2; }
  std::string mode = argv[1];
  long n = mode == "oneway" ? 10'000'000 : 100'000, payload = 36;
  bool spin = false;
  std::string name;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) n = std::atol(argv[++i]);
    else if (a == "--payload" && i + 1 < argc) payload = std::atol(argv[++i]);
    else if (a == "--spin") spin = true;
    else if (a == "--name" && i + 1 < argc) name = argv[++i];
  }
  int port = 0, lfd = listen_any(port);
  pid_t child = fork();
  if (child == 0) {  // receiver / echo side
    int fd = accept(lfd, nullptr, nullptr);
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (mode == "oneway") {
      std::vector<char> buf(256 * 1024);
      size_t have = 0; long seen = 0, bad = 0;
      while (seen < n) {
        ssize_t r = read(fd, buf.data() + have, buf.size() - have);
        if (r <= 0) die("read");
        have += r;
        size_t off = 0;
        while (have - off >= 4) {
          uint32_t len; std::memcpy(&len, buf.data() + off, 4);
          if (have - off < 4 + len) {
            if (4 + (size_t)len > buf.size()) buf.resize(4 + (size_t)len);
            break;
          }
          uint64_t seq; std::memcpy(&seq, buf.data() + off + 4, 8);
          if (seq != (uint64_t)seen) ++bad;
          ++seen; off += 4 + len;
        }
        std::memmove(buf.data(), buf.data() + off, have - off); have -= off;
      }
      char ack = bad ? 'B' : 'A'; write_all(fd, &ack, 1);
    } else {
      char m[48];
      for (long i = 0; i < n; ++i) { if (!read_all(fd, m, sizeof m, spin)) die("echo read"); write_all(fd, m, sizeof m); }
    }
    _exit(0);
  }
  close(lfd);
  int fd = dial(port);
  if (mode == "oneway") {
    const size_t rec = 4 + 8 + payload;
    std::vector<char> out(64 * 1024 + rec);
    std::vector<char> body(payload, 'x');
    auto t0 = clk::now();
    size_t used = 0;
    for (long i = 0; i < n; ++i) {
      uint32_t len = 8 + payload; uint64_t seq = i;
      char* p = out.data() + used;
      std::memcpy(p, &len, 4); std::memcpy(p + 4, &seq, 8); std::memcpy(p + 12, body.data(), payload);
      used += rec;
      if (used >= 64 * 1024) { write_all(fd, out.data(), used); used = 0; }
    }
    if (used) write_all(fd, out.data(), used);
    char ack = 0; if (!read_all(fd, &ack, 1, false)) die("ack");
    double s = std::chrono::duration<double>(clk::now() - t0).count();
    if (ack != 'A') { std::fprintf(stderr, "sequence errors\n"); return 1; }
    if (name.empty()) {
      std::printf("RESULT name=tcp_oneway_%ldB_batched value=%.0f unit=msgs/s\n", payload + 12, n / s);
    } else {
      std::printf("RESULT name=%s value=%.0f unit=msgs/s\n", name.c_str(), n / s);
    }
  } else {
    std::vector<double> us; us.reserve(n);
    char m[48] = {};
    for (long i = 0; i < n; ++i) {
      auto t0 = clk::now();
      write_all(fd, m, sizeof m);
      if (!read_all(fd, m, sizeof m, spin)) die("read");
      us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    const char* nm = spin ? "tcp_pingpong_spin" : "tcp_pingpong";
    std::printf("RESULT name=%s_median value=%.1f unit=us\n", nm, us[us.size() / 2]);
    std::printf("RESULT name=%s_p99 value=%.1f unit=us\n", nm, us[us.size() * 99 / 100]);
  }
  int st; waitpid(child, &st, 0);
  return 0;
}
