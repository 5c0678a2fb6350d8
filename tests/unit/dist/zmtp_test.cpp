// The native ZMTP transport (src/dist/zmtp.hpp) against libzmq itself, both ways, and against
// malformed bytes.
#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>
#include <string>
#include <zmq.hpp>

#include "dist/zmtp.hpp"

using nodus::dist::zmtp::Stream;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  REQUIRE((rc == 0 || errno == EINPROGRESS));
  pollfd p{fd, POLLOUT, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);  // connected
  return fd;
}

// A listening socket on 127.0.0.1 (any port); its port in `port`.
int listen_loopback(std::uint16_t* port) {
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof(a);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return lfd;
}

std::uint16_t port_of(zmq::socket_t& s) {
  const std::string ep = s.get(zmq::sockopt::last_endpoint);
  return static_cast<std::uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));
}

// Drives `s` (reads, services, flushes) until a message arrives or the deadline passes.
std::optional<std::string> pump(Stream& s, std::chrono::milliseconds within = 5s) {
  const auto until = Clock::now() + within;
  while (Clock::now() < until) {
    const auto st = s.fill();
    std::string_view m;
    if (s.next(&m)) return std::string(m);
    if (s.writes_due() || s.has_output()) (void)s.service();
    if (st == Stream::Status::closed || st == Stream::Status::failed || s.failed()) return std::nullopt;
    std::this_thread::yield();
  }
  return std::nullopt;
}

std::optional<zmq::message_t> recv_within(zmq::socket_t& s, std::chrono::milliseconds within = 5s) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, within) <= 0) return std::nullopt;
  zmq::message_t m;
  if (!s.recv(m, zmq::recv_flags::dontwait)) return std::nullopt;
  return m;
}

// A stream fed by hand through a socket pair.
struct Fed {
  int peer = -1;
  std::unique_ptr<Stream> s;
  explicit Fed(std::uint64_t max = 1 << 20) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    peer = sv[1];
    s = std::make_unique<Stream>(sv[0], "ROUTER", max, true);
  }
  ~Fed() { ::close(peer); }
  void feed(std::string_view bytes) { REQUIRE(::write(peer, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size())); }
  // fill + next until nothing more comes; the messages seen
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    for (int i = 0; i < 8; ++i) {
      (void)s->fill();
      std::string_view m;
      while (s->next(&m)) out.emplace_back(m);
    }
    return out;
  }
};

std::string greeting(std::string_view mechanism = "NULL") {
  std::string g(64, '\0');
  g[0] = static_cast<char>(0xff);
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  std::copy(mechanism.begin(), mechanism.end(), g.begin() + 12);
  return g;
}

std::string ready() {
  std::string props;
  props += '\x0b';
  props += "Socket-Type";
  props += std::string("\0\0\0\x06", 4);
  props += "DEALER";
  std::string body = std::string("\x05READY") + props;
  return std::string{'\x04', static_cast<char>(body.size())} + body;
}

}  // namespace

TEST_CASE("a native DEALER talks to a libzmq ROUTER: short, long and big messages both ways", "[zmtp]") {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  Stream s(connect_to(port_of(router)), "DEALER", 64 << 20, true);
  const std::string big(3 << 20, 'x');
  const std::string sizes[] = {"", "hi", std::string(255, 'a'), std::string(256, 'b'), std::string(70000, 'c'), big};
  for (const auto& body : sizes) (void)s.send(body);
  std::string rid;
  for (const auto& body : sizes) {
    std::optional<zmq::message_t> id;
    for (auto until = Clock::now() + 10s; !id && Clock::now() < until;) {
      (void)pump(s, 10ms);  // drives the handshake and the output
      id = recv_within(router, 10ms);
    }
    REQUIRE(id);
    REQUIRE(id->more());
    rid = id->to_string();
    auto m = recv_within(router);
    REQUIRE(m);
    CHECK(m->size() == body.size());
    CHECK(m->to_string() == body);
  }
  CHECK(s.ready());
  // and back: a ROUTER sends to the DEALER by routing id
  router.send(zmq::buffer(rid), zmq::send_flags::sndmore);
  router.send(zmq::str_buffer("answer"));
  CHECK(pump(s) == "answer");
  // a multi-part message: only its last part, flagged
  router.send(zmq::buffer(rid), zmq::send_flags::sndmore);
  router.send(zmq::str_buffer("part1"), zmq::send_flags::sndmore);
  router.send(zmq::str_buffer("part2"));
  CHECK(pump(s) == "part2");
  CHECK(s.take_multipart());
  CHECK_FALSE(s.failed());
}

TEST_CASE("a libzmq DEALER with heartbeats talks to a native ROUTER, which answers its PINGs", "[zmtp]") {
  zmq::context_t ctx;
  std::uint16_t port = 0;
  const int lfd = listen_loopback(&port);
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::heartbeat_ivl, 50);
  dealer.set(zmq::sockopt::heartbeat_timeout, 500);
  dealer.connect("tcp://127.0.0.1:" + std::to_string(port));
  const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
  REQUIRE(fd >= 0);
  ::close(lfd);
  Stream s(fd, "ROUTER", 64 << 20, true);
  dealer.send(zmq::str_buffer("hello"));
  CHECK(pump(s) == "hello");
  // PINGs come every 50 ms; answering them keeps the connection up for three times the 500 ms
  // timeout (without PONGs libzmq drops it after one)
  int pongs = 0;
  for (auto until = Clock::now() + 20s; pongs < 30 && Clock::now() < until;) {
    (void)s.fill();
    std::string_view m;
    while (s.next(&m)) {}
    if (s.writes_due()) {
      ++pongs;
      (void)s.service();
    }
    pollfd readable{s.fd(), POLLIN, 0};
    (void)::poll(&readable, 1, 100);  // the next PING (or anything else) to read
  }
  CHECK(pongs >= 30);
  dealer.send(zmq::str_buffer("still here"));
  CHECK(pump(s) == "still here");
  // a big message grows the read buffer (and gives the memory back afterwards)
  std::string big(5 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  dealer.send(zmq::buffer(big));
  dealer.send(zmq::str_buffer("after"));
  auto got = pump(s);
  REQUIRE(got);
  CHECK(got->size() == big.size());
  CHECK(*got == big);
  CHECK(pump(s) == "after");
  CHECK(s.send("to the dealer"));
  auto m = recv_within(dealer);
  REQUIRE(m);
  CHECK(m->to_string() == "to the dealer");
}

TEST_CASE("malformed ZMTP input fails the stream, never more", "[zmtp]") {
  SECTION("not ZMTP at all") {
    Fed f;
    f.feed("GET / HTTP/1.1\r\n\r\n");
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
    CHECK(f.s->error().find("bad signature") != std::string::npos);
  }
  SECTION("an old ZMTP version") {
    Fed f;
    std::string g = greeting();
    g[10] = 2;
    f.feed(g);
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
  }
  SECTION("another security mechanism") {
    Fed f;
    f.feed(greeting("CURVE"));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
    CHECK(f.s->peer_mechanism() == "CURVE");
  }
  SECTION("a message before READY") {
    Fed f;
    f.feed(greeting() + std::string("\x00\x02hi", 4));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
  }
  SECTION("a READY whose property runs past its end") {
    Fed f;
    f.feed(greeting() + std::string("\x04\x0b\x05READY\x03" "abc\x7f", 13));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
  }
  SECTION("a message over the limit, announced with a long size") {
    Fed f(1000);
    f.feed(greeting() + ready() + std::string("\x02\x00\x00\x00\x00\x00\x00\x10\x00", 9));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
    CHECK(f.s->error().find("exceeds") != std::string::npos);
  }
  SECTION("a huge long size") {
    Fed f;
    f.feed(greeting() + ready() + std::string("\x02\xff\xff\xff\xff\xff\xff\xff\xff", 9));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
  }
  SECTION("unknown flag bits") {
    Fed f;
    f.feed(greeting() + ready() + std::string("\x80\x01x", 3));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
  }
  SECTION("a truncated message waits; the rest completes it; byte by byte works too") {
    Fed f;
    const std::string all = greeting() + ready() + std::string("\x00\x05hello", 7) + std::string("\x01\x01" "a\x00\x01z", 6);
    for (char c : all.substr(0, all.size() - 3)) f.feed(std::string_view(&c, 1));
    auto got = f.drain();
    CHECK(got == std::vector<std::string>{"hello"});
    f.feed(all.substr(all.size() - 3));
    got = f.drain();
    CHECK(got == std::vector<std::string>{"z"});
    CHECK(f.s->take_multipart());
    CHECK_FALSE(f.s->failed());
  }
  SECTION("a malformed PING and an ERROR") {
    Fed f;
    f.feed(greeting() + ready() + std::string("\x04\x05\x04PING", 7));
    CHECK(f.drain().empty());
    CHECK(f.s->failed());
    Fed g;
    g.feed(greeting() + ready() + std::string("\x04\x0b\x05" "ERROR\x04nope", 13));
    CHECK(g.drain().empty());
    CHECK(g.s->error().find("nope") != std::string::npos);
  }
  SECTION("the peer hangs up") {
    Fed f;
    f.feed(greeting().substr(0, 20));
    ::shutdown(f.peer, SHUT_WR);
    CHECK(f.s->fill() != Stream::Status::closed);  // the 20 bytes
    std::string_view m;
    CHECK_FALSE(f.s->next(&m));
    CHECK(f.s->fill() == Stream::Status::closed);
    CHECK_FALSE(f.s->ready());
  }
}

namespace {
using nodus::dist::zmtp::Curve;
using nodus::dist::zmtp::Key;

struct KeyPair {
  std::string pub, sec;  // Z85
  Key pub_raw{}, sec_raw{};
  KeyPair() {
    char p[41], s[41];
    REQUIRE(zmq_curve_keypair(p, s) == 0);
    pub = p;
    sec = s;
    zmq_z85_decode(pub_raw.data(), p);
    zmq_z85_decode(sec_raw.data(), s);
  }
};
}  // namespace

TEST_CASE("CURVE: a native client talks to a libzmq CURVE ROUTER, both ways, heartbeats too", "[zmtp][curve]") {
  KeyPair server, client;
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::curve_server, 1);
  router.set(zmq::sockopt::curve_secretkey, server.sec);
  router.set(zmq::sockopt::heartbeat_ivl, 50);
  router.set(zmq::sockopt::heartbeat_timeout, 500);
  router.bind("tcp://127.0.0.1:*");
  auto curve = std::make_shared<Curve>();
  curve->public_key = client.pub_raw;
  curve->secret_key = client.sec_raw;
  curve->server_key = server.pub_raw;
  Stream s(connect_to(port_of(router)), "DEALER", 64 << 20, true, curve);
#ifdef __SANITIZE_THREAD__
  // under TSan libzmq (not instrumented, but its memory calls are intercepted) reads a big
  // message more slowly than its own heartbeat timeout: our PONGs wait behind it
  const std::string sizes[] = {"early", "", std::string(255, 'a')};
#else
  const std::string sizes[] = {"early", "", std::string(255, 'a'), std::string(70000, 'c'), std::string(3 << 20, 'x')};
#endif
  for (const auto& body : sizes) (void)s.send(body);  // queued until the handshake is done
  std::string rid;
  for (const auto& body : sizes) {
    std::optional<zmq::message_t> id;
    for (auto until = Clock::now() + 10s; !id && Clock::now() < until;) {
      (void)pump(s, 10ms);
      id = recv_within(router, 10ms);
    }
    REQUIRE(id);
    rid = id->to_string();
    auto m = recv_within(router);
    REQUIRE(m);
    CHECK(m->to_string() == body);
  }
  CHECK(s.ready());
  CHECK(s.peer_key() == server.pub_raw);
  for (int i = 0; i < 3; ++i) {
    router.send(zmq::buffer(rid), zmq::send_flags::sndmore);
    router.send(zmq::buffer("answer " + std::to_string(i)));
    CHECK(pump(s) == "answer " + std::to_string(i));
  }
  // libzmq's PINGs (encrypted) get our PONGs for three of its timeouts; it keeps the connection
  const auto until = Clock::now() + 1500ms;
  while (Clock::now() < until) {
    (void)pump(s, 20ms);
    REQUIRE_FALSE(s.failed());
  }
  router.send(zmq::buffer(rid), zmq::send_flags::sndmore);
  router.send(zmq::str_buffer("still there"));
  CHECK(pump(s) == "still there");
}

TEST_CASE("CURVE: a libzmq CURVE DEALER talks to a native server, which checks its key", "[zmtp][curve]") {
  KeyPair server, client, stranger;
  std::uint16_t port = 0;
  const int lfd = listen_loopback(&port);
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(port);
  auto curve = std::make_shared<Curve>();
  curve->server = true;
  curve->public_key = server.pub_raw;
  curve->secret_key = server.sec_raw;
  const Key allowed = client.pub_raw;
  curve->allow = [allowed](const Key& k) { return k == allowed; };
  zmq::context_t ctx;
  const bool known = GENERATE(true, false);
  INFO((known ? "an allowed client" : "a client whose key is not allowed"));
  const KeyPair& who = known ? client : stranger;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::curve_serverkey, server.pub);
  dealer.set(zmq::sockopt::curve_publickey, who.pub);
  dealer.set(zmq::sockopt::curve_secretkey, who.sec);
  dealer.connect(ep);
  dealer.send(zmq::str_buffer("hello from libzmq"), zmq::send_flags::dontwait);
  pollfd p{lfd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
  REQUIRE(fd >= 0);
  Stream s(fd, "ROUTER", 64 << 20, true, curve);
  auto m = pump(s);
  if (!known) {
    CHECK_FALSE(m);
    CHECK(s.failed());
    CHECK(s.refused());
    ::close(lfd);
    return;
  }
  REQUIRE(m);
  CHECK(*m == "hello from libzmq");
  CHECK(s.peer_key() == client.pub_raw);
  (void)s.send("and back");
  for (int i = 0; i < 100 && s.has_output(); ++i) (void)s.flush();
  auto back = recv_within(dealer);
  REQUIRE(back);
  CHECK(back->to_string() == "and back");
  ::close(lfd);
}
