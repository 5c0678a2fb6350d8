// Hostile peers and hosts (docs/security.md): CURVE keys bound to node names, unauthenticated
// connection floods against a node and the port mapper, port mapper squatting, the network
// atom budget, unknown registered names, log amplification, the cookie file's mode, keygen.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

const std::string kNodus = NODUS_TOOL;
const std::string kPortmapper = NODUS_PORTMAPPER_TOOL;

[[maybe_unused]] const bool kWatchdog = [] {
  watchdog_seconds = 400;
  // under ASan (the suite's --sanitize sets ASAN_OPTIONS), the nodes started here keep a small
  // quarantine of freed memory, so that their RSS measures what they hold, not what ASan keeps
  if (const char* asan = std::getenv("ASAN_OPTIONS"); asan != nullptr) {
    ::setenv("ASAN_OPTIONS", (std::string(asan) + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64").c_str(), 1);
  }
  return true;
}();


// A private port mapper (nodus/testing.hpp), ready.
struct Mapper : PortMapper {
  explicit Mapper(std::vector<std::string> extra = {}) : PortMapper(kPortmapper, next_portmapper_port(), std::move(extra)) {
    REQUIRE(ready());
  }
};

// `nodus node --sname NAME@localhost ...`, once registered.
std::unique_ptr<Child> start_node(Mapper& pm, const std::string& name, std::vector<std::string> extra,
                                  std::vector<std::string> prefix = {}) {
  auto c = std::make_unique<Child>(
      prefix + std::vector<std::string>{kNodus, "node", "--sname", name + "@localhost", "--ticktime", "1000"} + extra,
      "sec-" + name + std::to_string(pm.port()));
  REQUIRE(eventually([&] { return pm.lists(name) || !c->running(); }));
  INFO(c->err());
  REQUIRE(c->running());
  return c;
}

// A TCP connection to 127.0.0.1:`port` from `source` (any 127/8 address); -1 if it fails.
int raw_connect(std::uint16_t port, const char* source = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Has the other side closed `fd` (EOF or reset)? Reads and drops what it sent.
bool closed_by_peer(int fd) {
  char buf[256];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }
}

// One request line to the port mapper on a fresh connection; the answer line.
std::string mapper_request(std::uint16_t port, const std::string& line, int* keep = nullptr) {
  const int fd = raw_connect(port);
  if (fd < 0) return "(no connection)";
  (void)!::write(fd, line.data(), line.size());
  std::string answer;
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (answer.find('\n') == std::string::npos && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  if (keep != nullptr) {
    *keep = fd;
  } else {
    ::close(fd);
  }
  return answer.substr(0, answer.find('\n'));
}

// A TCP socket listening on 127.0.0.1, any port; its port in `port`.
int listener(std::uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::listen(fd, 8);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("VmRSS:", 0) == 0) return std::stol(l.substr(6));
  }
  return -1;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void raise_fd_limit(rlim_t want) {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur < want) {
    r.rlim_cur = std::min(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

// This test process as alex@localhost (cookie "secret"), connected to kate@localhost.
struct Alex {
  Runtime rt;
  Node node{NodeOptions{.name = "alex@localhost", .cookie = "secret", .ticktime = 1000ms}};
  Mailbox mb;
  const Atom kate = atom("kate@localhost");
  Alex() { REQUIRE(node::connect(kate)); }
};

// An echo round trip to `kate`'s `echo` process from this thread's mailbox.
bool echo(Mailbox& mb, Atom kate, std::int64_t i) {
  send(atom("echo"), kate, tuple(self(), i));
  auto r = mb.receive<Term>([&](const Term& t) { return t.is_tuple(2, "echo") && t[1] == Term(i); }, 10s);
  return r.has_value();
}

}  // namespace

// ------------------------------------------------------------------------------ CURVE names

TEST_CASE("CURVE allow files bind keys to node names: the file's name, or the names listed in it", "[curve]") {
  CurveKeys keys({"kate", "alex", "mallory"});
  // team.pub: mallory's key, usable as zed (any host) and as bob@hostB only
  std::ofstream(keys.allow() + "/team.pub") << keys.pub("mallory") << "\n# who may use it\nzed\n  bob@hostB \n";
  const CurveOptions c = load_curve(keys.key_file("kate"), keys.allow());
  CHECK(curve_key_bound(c, keys.pub("alex"), "alex@localhost"));
  CHECK(curve_key_bound(c, keys.pub("alex"), "alex@hostB"));
  CHECK_FALSE(curve_key_bound(c, keys.pub("alex"), "kate@localhost"));
  CHECK(curve_key_bound(c, keys.pub("mallory"), "mallory@localhost"));  // (mallory.pub too)
  CHECK(curve_key_bound(c, keys.pub("mallory"), "zed@anywhere"));
  CHECK(curve_key_bound(c, keys.pub("mallory"), "bob@hostB"));
  CHECK_FALSE(curve_key_bound(c, keys.pub("mallory"), "bob@hostC"));
  CHECK_FALSE(curve_key_bound(c, keys.pub("mallory"), "alex@localhost"));
  CHECK(curve_key_names(c, keys.pub("mallory")) == "mallory, zed, bob@hostB");
  std::ofstream(keys.allow() + "/bad.pub") << keys.pub("alex") << "\nnot a name\n";
  CHECK_THROWS_WITH(load_curve(keys.key_file("kate"), keys.allow()),
                    Catch::Matchers::Contains("bad.pub line 2: not a node name"));
}

TEST_CASE("CURVE: an allowed key claiming another node's name is refused and logged on both sides",
          "[distributed][curve][security]") {
  Mapper pm;
  CurveKeys keys({"kate", "alex", "mallory"});
  auto kate = start_node(pm, "kate", keys.flags("kate"));
  const std::uint16_t kate_port = pm.port_of("kate");
  REQUIRE(kate_port != 0);

  // calling side: a port mapper entry for bob carrying mallory's (allowed) key is not bob's key
  auto bob = start_node(pm, "bob", keys.flags("mallory"));
  Child call_bob(std::vector<std::string>{kNodus, "ping", "bob@localhost", "--sname", "alex@localhost"} + keys.flags("alex"),
                 "sec-call-bob" + std::to_string(pm.port()));
  CHECK(call_bob.wait(20s) == 1);
  CHECK(call_bob.out() == "pang\n");
  CHECK(call_bob.err().find("** Not connecting to node bob@localhost: its CURVE key " + keys.pub("mallory") +
                            " (from the port mapper) is allowed only as mallory, not as bob@localhost **") !=
        std::string::npos);

  // the real alex, connected
  Runtime rt;
  NodeOptions o{.name = "alex@localhost", .ticktime = 1000ms};
  o.curve = load_curve(keys.key_file("alex"), keys.allow());
  Node alex(o);
  Mailbox mb;
  const Atom k = atom("kate@localhost");
  REQUIRE(node::connect(k));
  REQUIRE(echo(mb, k, 1));

  // accepting side: mallory, with her own allowed key, says she is alex (static peer: the port
  // mapper has the real alex)
  Child mallory(std::vector<std::string>{kNodus, "ping", "kate@localhost", "--sname", "alex@localhost",
                                         "--no-portmapper", "--peer",
                                         "kate@localhost=tcp://127.0.0.1:" + std::to_string(kate_port)} +
                    keys.flags("mallory"),
                "sec-mallory" + std::to_string(pm.port()));
  CHECK(mallory.wait(20s) == 1);
  CHECK(mallory.out() == "pang\n");
  INFO("mallory: " << mallory.err());
  CHECK(mallory.err().find("** Connection to node kate@localhost refused: its CURVE key is not bound to the name "
                           "alex@localhost here (allowed as mallory) **") != std::string::npos);
  CHECK(eventually([&] {
    return kate->err().find("rejected: it claims to be alex@localhost, but its CURVE key " + keys.pub("mallory") +
                            " is allowed only as mallory **") != std::string::npos;
  }));
  // the real alex never noticed
  CHECK(echo(mb, k, 2));
  const auto up = node::list();
  CHECK(std::find(up.begin(), up.end(), k) != up.end());
  // and mallory as herself is welcome
  Child herself(std::vector<std::string>{kNodus, "ping", "kate@localhost", "--sname", "mallory@localhost"} +
                    keys.flags("mallory"),
                "sec-herself" + std::to_string(pm.port()));
  CHECK(herself.wait(20s) == 0);
  CHECK(herself.out() == "pong\n");
}

// ------------------------------------------------------------------------------ connection floods

TEST_CASE("2,000 unauthenticated connections are bounded and closed within the handshake limit; "
          "connected and new authenticated peers keep being served",
          "[distributed][security]") {
  raise_fd_limit(8192);
  Mapper pm;
  // kate with 1,024 descriptors (the flood is twice that) and a 3 s handshake limit
  auto kate = start_node(pm, "kate", {"--cookie", "secret", "--handshake-timeout", "3000"},
                         {"/usr/bin/prlimit", "--nofile=1024", "--"});
  const std::uint16_t kate_port = pm.port_of("kate");
  Alex alex;
  Mailbox& mb = alex.mb;
  const Atom k = alex.kate;

  std::vector<int> idle, trickle;
  std::int64_t i = 0, failed = 0;
  for (int n = 0; n < 2000; ++n) {
    const int fd = raw_connect(kate_port, "127.0.0.2");  // (the kernel accepts into the backlog)
    if (fd >= 0) idle.push_back(fd);
    if (n % 200 == 0 && !echo(mb, k, ++i)) ++failed;
  }
  for (int n = 0; n < 5; ++n) {
    const int fd = raw_connect(kate_port, "127.0.0.3");
    if (fd >= 0) trickle.push_back(fd);
  }
  CHECK(idle.size() == 2000);
  CHECK(trickle.size() == 5);
  // a new authenticated peer from another address during the flood
  Child bob({kNodus, "ping", "kate@localhost", "--sname", "bob@localhost", "--cookie", "secret"},
            "sec-flood-bob" + std::to_string(pm.port()));
  // every connection closed by kate, the trickling ones too (a byte of ZMTP greeting each round)
  const unsigned char greeting[] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3};
  std::size_t sent = 0;
  auto all_closed = [&] {
    if (!echo(mb, k, ++i)) ++failed;
    for (int fd : trickle) (void)!::send(fd, &greeting[sent % sizeof(greeting)], 1, MSG_NOSIGNAL);
    ++sent;
    std::size_t closed = 0;
    for (int fd : idle) closed += closed_by_peer(fd) ? 1 : 0;
    for (int fd : trickle) closed += closed_by_peer(fd) ? 1 : 0;
    return closed == idle.size() + trickle.size();
  };
  CHECK(eventually(all_closed, 60s));
  CHECK(bob.wait(30s) == 0);
  CHECK(bob.out() == "pong\n");
  CHECK(failed == 0);
  CHECK(echo(mb, k, ++i));
  for (int fd : idle) ::close(fd);
  for (int fd : trickle) ::close(fd);
  // said, without a line per connection
  const std::string err = kate->err();
  CHECK(err.find("connections from that address are in their handshake (max_handshakes_per_address)") !=
        std::string::npos);
  CHECK(err.find("closed: no handshake within 3000 ms") != std::string::npos);
  CHECK(count(err, "Connection attempt from 127.0.0.") < 200);
}

TEST_CASE("the port mapper closes idle and slow connections, bounds them, and keeps registering nodes",
          "[distributed][security]") {
  raise_fd_limit(8192);
  Mapper pm({"--request-timeout", "2000"});
  std::vector<int> idle;
  for (int n = 0; n < 2000; ++n) {
    const int fd = raw_connect(pm.port(), "127.0.0.2");
    if (fd >= 0) idle.push_back(fd);
  }
  CHECK(idle.size() == 2000);
  const int slow = raw_connect(pm.port(), "127.0.0.3");
  // a node registers meanwhile, and is found
  auto zed = start_node(pm, "zed", {"--cookie", "secret"});
  std::size_t sent = 0;
  const std::string req = "NAMES\n";
  CHECK(eventually([&] {
    (void)!::send(slow, &req[sent++ % 5], 1, MSG_NOSIGNAL);  // never the newline
    std::size_t closed = closed_by_peer(slow) ? 1 : 0;
    for (int fd : idle) closed += closed_by_peer(fd) ? 1 : 0;
    return closed == idle.size() + 1;
  }, 60s));
  CHECK(pm.lists("zed"));
  for (int fd : idle) ::close(fd);
  ::close(slow);
  const std::string err = pm.err();
  CHECK(err.find("that address has 64 requests open") != std::string::npos);
  CHECK(err.find("no request within 2000 ms") != std::string::npos);
  CHECK(count(err, "closed a connection") < 200);
}

// ------------------------------------------------------------------------------ squatting

TEST_CASE("port mapper: a name needs a port its user listens on, stays its user's, and goes with its node",
          "[distributed][security]") {
  Mapper pm;
  // a registration naming a port nobody listens on
  CHECK(mapper_request(pm.port(), "REGISTER kate 9\n") == "ERR not_listening");
  // one whose listener closes afterwards is dropped, though its connection stays
  std::uint16_t lport = 0;
  const int lfd = listener(&lport);
  int held = -1;
  CHECK(mapper_request(pm.port(), "REGISTER kate " + std::to_string(lport) + "\n", &held).rfind("OK ", 0) == 0);
  CHECK(pm.lists("kate"));
  ::close(lfd);
  CHECK(eventually([&] { return !pm.lists("kate"); }, 15s));
  CHECK(eventually([&] { return pm.err().find("dropped kate: nothing listens on its port any more") != std::string::npos; }));
  ::close(held);

  // the real kate registers; another user's process cannot take the name, with its own port
  auto kate = start_node(pm, "kate", {"--cookie", "secret"});
  auto as_nobody = [&](const std::string& name) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string answer = "setuid failed";
      if (::setresgid(65534, 65534, 65534) == 0 && ::setresuid(65534, 65534, 65534) == 0) {
        std::uint16_t p = 0;
        const int l = listener(&p);  // a socket of nobody's
        answer = mapper_request(pm.port(), "REGISTER " + name + " " + std::to_string(p) + "\n");
        ::close(l);
      }
      (void)!::write(fds[1], answer.data(), answer.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string answer;
    char buf[128];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) answer.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return answer;
  };
  if (::geteuid() != 0) {  // another user's process needs root to make here
    WARN("not root: the other-user part of the squatting test is skipped");
    return;
  }
  CHECK(as_nobody("kate") == "ERR name_taken");
  CHECK(eventually([&] { return pm.err().find("refused REGISTER kate by uid 65534: it is registered by uid 0") != std::string::npos; }));
  CHECK(as_nobody("nobodys-node").rfind("OK ", 0) == 0);  // a free name, with its own port: fine
  CHECK(pm.lists("kate"));
  Child ping({kNodus, "ping", "kate@localhost", "--sname", "alex@localhost", "--cookie", "secret"},
             "sec-squat-ping" + std::to_string(pm.port()));
  CHECK(ping.wait(20s) == 0);
}

// ------------------------------------------------------------------------------ state from peers

TEST_CASE("the network atom budget: a peer sending too many new atoms is disconnected; the node's memory stays bounded",
          "[distributed][security]") {
  Mapper pm;
  auto kate = start_node(pm, "kate", {"--cookie", "secret", "--max-network-atoms", "2000"});
  Alex alex;
  Mailbox& mb = alex.mb;
  const Atom k = alex.kate;
  REQUIRE(echo(mb, k, 0));
  node::monitor(k);
  const long before = rss_kb(kate->pid());
  const std::string pad(200, 'x');
  for (int n = 0; n < 100000; ++n) send(atom("bench_sink"), k, atom("atom" + std::to_string(n) + pad));
  auto down = mb.receive<Term>([&](const Term& t) { return t.is_tuple(2, "nodedown"); }, 60s);
  REQUIRE(down);
  CHECK(eventually([&] {
    return kate->err().find("it sent more new atoms than this node takes from the network (2000, max_network_atoms); "
                            "disconnecting it") != std::string::npos;
  }));
  REQUIRE(eventually([&] { return echo(mb, k, 1); }, 30s));  // it reconnects, and known atoms still go
  const long after = rss_kb(kate->pid());
  INFO("kate RSS " << before << " kB -> " << after << " kB");
  CHECK(after - before < 16 * 1024);  // (100,000 new 200-byte atoms would be over 25 MB)
}

TEST_CASE("sends to names nothing is registered under keep nothing and are logged, rate-limited",
          "[distributed][security]") {
  Mapper pm;
  auto kate = start_node(pm, "kate", {"--cookie", "secret"});
  Alex alex;
  Mailbox& mb = alex.mb;
  const Atom k = alex.kate;
  REQUIRE(echo(mb, k, 0));
  const long before = rss_kb(kate->pid());
  const std::string pad(200, 'y');
  for (int n = 0; n < 100000; ++n) {
    send(atom("nobody" + std::to_string(n) + pad), k, atom("hi"));
    if (n % 10000 == 0) REQUIRE(echo(mb, k, n + 1));  // (paced: the log sees it over several seconds)
  }
  REQUIRE(echo(mb, k, -1));
  const long after = rss_kb(kate->pid());
  INFO("kate RSS " << before << " kB -> " << after << " kB");
  CHECK(after - before < 16 * 1024);
  const std::string err = kate->err();
  CHECK(err.find("(no process is registered under that name) from alex@localhost") != std::string::npos);
  CHECK(count(err, "no process is registered under that name") < 500);
}

TEST_CASE("log lines about unexpected messages are cut and rate-limited", "[distributed][security]") {
  Mapper pm;
  auto kate = start_node(pm, "kate", {"--cookie", "secret"});
  Alex alex;
  Mailbox& mb = alex.mb;
  const Atom k = alex.kate;
  const std::string big(200 * 1024, 'z');
  for (int n = 0; n < 300; ++n) send(atom("BenchSup"), k, Term(big));  // 60 MB of unexpected messages
  REQUIRE(echo(mb, k, 1));
  // the next line after the burst says how many were suppressed
  CHECK(eventually([&] {
    send(atom("BenchSup"), k, atom("one_more"));
    return kate->err().find("more like it suppressed") != std::string::npos;
  }, 20s));
  const std::string err = kate->err();
  INFO("kate's log: " << err.size() << " bytes");
  CHECK(err.size() < 64 * 1024);
  CHECK(err.find("unexpected message \"zzzz") != std::string::npos);
  CHECK(err.find("zzz...") != std::string::npos);
}

// ------------------------------------------------------------------------------ files

TEST_CASE("a cookie file others can read is refused with the file and the fix named", "[security]") {
  char tmpl[] = "/tmp/nodus-home-XXXXXX";
  const std::string home = ::mkdtemp(tmpl);
  const std::string file = home + "/.nodus.cookie";
  std::ofstream(file) << "SEKRIT\n";
  auto run = [&](mode_t mode) {
    ::chmod(file.c_str(), mode);
    Child c({"/usr/bin/env", "-u", "NODUS_COOKIE", "HOME=" + home, kNodus, "ping", "x@localhost", "--sname",
             "a@localhost", "--no-portmapper"},
            "sec-cookie" + std::to_string(mode));
    const int rc = c.wait(20s);
    return std::make_pair(rc, c.err());
  };
  for (mode_t mode : {0644, 0440, 0604, 0600 | 0040}) {
    auto [rc, err] = run(mode);
    INFO("mode " << std::oct << mode << ": " << err);
    CHECK(rc == 1);
    char m[8];
    std::snprintf(m, sizeof(m), "%04o", static_cast<unsigned>(mode));
    CHECK(err.find("cookie file " + file + " has mode " + m + ": it must be readable by its owner only (chmod 400 " +
                   file + ")") != std::string::npos);
  }
  auto [rc, err] = run(0400);
  CHECK(err.find("cookie file") == std::string::npos);
  CHECK(rc == 1);  // (pang: nobody is x)
  std::filesystem::remove_all(home);
}

TEST_CASE("nodus keygen --out creates the directory, private", "[keys]") {
  char tmpl[] = "/tmp/nodus-keys-XXXXXX";
  const std::string base = ::mkdtemp(tmpl);
  const std::string dir = base + "/keys/kate";
  Child gen({kNodus, "keygen", "--out", dir}, "sec-keygen");
  REQUIRE(gen.wait() == 0);
  struct stat st{};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((base + "/keys").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(std::filesystem::exists(dir + "/node.key"));
  CHECK(std::filesystem::exists(dir + "/node.pub"));
  std::ofstream(base + "/file") << "x";
  Child bad({kNodus, "keygen", "--out", base + "/file/kate"}, "sec-keygen-bad");
  CHECK(bad.wait() == 1);
  CHECK(bad.err().find("cannot create directory") != std::string::npos);
  std::filesystem::remove_all(base);
}
