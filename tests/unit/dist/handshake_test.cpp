// The wire-protocol-2 handshake (src/dist/handshake.hpp), frame by frame, without sockets.
#include <catch2/catch.hpp>

#include "dist/codec.hpp"
#include "dist/handshake.hpp"
#include "dist/wire.hpp"

using namespace nodus::dist;
using Step = Handshake::Step;

namespace {

Handshake connector(const std::string& cookie = "c", const std::string& peer = "kate@localhost") {
  return Handshake(Handshake::Role::connector, "alex@localhost", 7, cookie, 0, peer);
}
Handshake acceptor(const std::string& cookie = "c", const std::string& self = "kate@localhost") {
  return Handshake(Handshake::Role::acceptor, self, 9, cookie, kHelloJson);
}

// HELLO -> CHALLENGE -> REPLY -> ACCEPT between `c` and `a`; the last step of each side.
std::pair<Step, Step> run(Handshake& c, Handshake& a) {
  Step s = a.on_frame(c.hello());
  REQUIRE(s.kind == Step::hello);
  CHECK(a.peer() == "alex@localhost");
  CHECK(a.peer_creation() == 7);
  Step cs = c.on_frame(a.challenge());
  if (cs.kind != Step::wait) return {cs, Step{}};
  REQUIRE(cs.frames.size() == 1);  // REPLY
  Step as = a.on_frame(cs.frames[0]);
  if (as.kind != Step::up) return {cs, as};
  REQUIRE(as.frames.size() == 1);  // ACCEPT
  return {c.on_frame(as.frames[0]), as};
}

std::string frame(Op op, std::string body = {}, std::uint8_t version = kWireVersion) {
  std::string f{static_cast<char>(version), static_cast<char>(op)};
  return f + body;
}

}  // namespace

TEST_CASE("handshake: both sides prove the cookie and learn each other's name, creation and flags", "[handshake]") {
  Handshake c = connector(), a = acceptor();
  auto [cs, as] = run(c, a);
  CHECK(cs.kind == Step::up);
  CHECK(as.kind == Step::up);
  CHECK(c.done());
  CHECK(a.done());
  CHECK(c.peer_creation() == 9);
  CHECK(c.peer_flags() == kHelloJson);
  CHECK(a.peer_flags() == 0);
}

TEST_CASE("handshake: a wrong cookie is refused on both sides, and the connector still answers", "[handshake]") {
  Handshake c = connector("wrong"), a = acceptor("right");
  auto [cs, as] = run(c, a);
  CHECK(cs.kind == Step::refused);
  CHECK(cs.why.find("cookie mismatch") != std::string::npos);
  REQUIRE(cs.frames.size() == 1);  // its REPLY goes anyway: the acceptor logs the refusal too
  Handshake c2 = connector("wrong"), a2 = acceptor("right");
  REQUIRE(a2.on_frame(c2.hello()).kind == Step::hello);
  Step reply = c2.on_frame(a2.challenge());
  Step refused = a2.on_frame(reply.frames.at(0));
  CHECK(refused.kind == Step::refused);
  CHECK(refused.why == "invalid challenge reply");
  REQUIRE(refused.frames.size() == 1);  // REFUSE
  Step back = c2.on_frame(refused.frames[0]);
  CHECK(back.kind == Step::refused);
}

TEST_CASE("handshake: the acceptor must be the node the connector meant to reach", "[handshake]") {
  Handshake c = connector("c", "kate@localhost"), a = acceptor("c", "mallory@localhost");
  auto [cs, as] = run(c, a);
  CHECK(cs.kind == Step::refused);
  CHECK(cs.why.find("mallory@localhost") != std::string::npos);
}

TEST_CASE("handshake: REFUSE says why; `simultaneous` tells a connector the peer's connection wins", "[handshake]") {
  Handshake c = connector();
  (void)c.hello();
  Step s = c.on_frame(Handshake::refuse(Handshake::kSimultaneous, "kate@localhost's goes on"));
  CHECK(s.kind == Step::simultaneous);
  Handshake c2 = connector();
  (void)c2.hello();
  Step r = c2.on_frame(Handshake::refuse(Handshake::kRefused, "go away"));
  CHECK(r.kind == Step::refused);
  CHECK(r.why == "go away");
}

TEST_CASE("handshake: a version-1 HELLO gets a version-1 REFUSE that says so", "[handshake]") {
  Handshake a = acceptor();
  std::string hello = frame(Op::hello, {}, 1);
  Writer hw(hello);
  hw.str8("old@localhost");
  hw.u32(1);
  hw.bytes(std::string(16, 'n'));
  Step s = a.on_frame(hello);
  CHECK(s.kind == Step::bad);
  REQUIRE(s.frames.size() == 1);
  Reader r(s.frames[0]);
  CHECK(r.u8() == 1);
  CHECK(r.u8() == static_cast<std::uint8_t>(Op::refuse));
  CHECK(std::string(r.str8()).find("wire protocol 2") != std::string::npos);
  CHECK(r.at_end());
}

TEST_CASE("handshake: malformed, out-of-order and unknown frames are refused, never trusted", "[handshake]") {
  struct Case {
    const char* what;
    Handshake::Role role;
    std::string frame;
  };
  std::string long_name = frame(Op::hello);
  Writer(long_name).str8(std::string(200, 'a'));  // no '@', no creation
  std::string own_name = frame(Op::hello);
  {
    Writer w(own_name);
    w.str8("kate@localhost");
    w.u32(1);
    w.bytes(std::string(16, 'n'));
    w.u8(0);
  }
  const Case cases[] = {
      {"empty", Handshake::Role::acceptor, ""},
      {"header only", Handshake::Role::acceptor, std::string(1, '\x02')},
      {"truncated HELLO", Handshake::Role::acceptor, frame(Op::hello, "\x03" "a@b")},
      {"HELLO with a bad name", Handshake::Role::acceptor, long_name},
      {"HELLO with our own name", Handshake::Role::acceptor, own_name},
      {"REPLY before HELLO", Handshake::Role::acceptor, frame(Op::reply, std::string(32, 'm'))},
      {"data before the handshake", Handshake::Role::acceptor, frame(Op::send_name, "\x01x\x01\x04\x01o\x6b")},
      {"ACCEPT before CHALLENGE", Handshake::Role::connector, frame(Op::accept)},
      {"unknown op", Handshake::Role::acceptor, frame(static_cast<Op>(0x7f))},
      {"REFUSE without reason", Handshake::Role::connector, frame(Op::refuse)},
  };
  for (const auto& k : cases) {
    INFO(k.what);
    Handshake h = k.role == Handshake::Role::acceptor ? acceptor() : connector();
    if (k.role == Handshake::Role::connector) (void)h.hello();
    Step s = h.on_frame(k.frame);
    CHECK(s.kind == Step::bad);
    CHECK_FALSE(h.done());
  }
  // a CHALLENGE with a bad MAC
  Handshake c = connector();
  (void)c.hello();
  std::string ch = frame(Op::challenge);
  {
    Writer w(ch);
    w.str8("kate@localhost");
    w.u32(1);
    w.bytes(std::string(16, 'n'));
    w.bytes(std::string(32, 'm'));
    w.u8(0);
  }
  CHECK(c.on_frame(ch).kind == Step::refused);
}
