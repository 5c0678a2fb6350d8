// libFuzzer target: bytes a peer could send. Each input is fed to an offline node (no I/O
// thread, no port mapper) as one ZeroMQ message from an unauthenticated peer (handshake state
// machine) and from an authenticated one (records, frames, envelopes, payloads, spawn and
// link/monitor frames, delivery to a registered process that decodes Terms and typed values),
// and straight to the Term, JSON and typed-message decoders, and to the native ZMTP reader
// (zmtp.hpp) both raw and after a valid greeting and READY.
//   scripts/fuzz.sh [SECONDS]
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dist/codec.hpp"
#include "dist/json.hpp"
#include "dist/node_impl.hpp"
#include "dist/zmtp.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;

namespace {

struct Sample {
  Pid from;
  std::string text;
  std::vector<std::int64_t> nums;
  Term extra;
  template <class A>
  void serialize(A& a) { a(from, text, nums, extra); }
};

// Takes whatever arrives, so delivered messages get decoded (on a worker) and dropped.
Proc sink() {
  for (;;) (void)co_await receive_any();
}

struct World {
  Runtime rt{{.schedulers = 1}};
  dist::NodeImpl node{{.name = "kate@localhost", .cookie = "fuzz-cookie"}};
  World() {
    nodus::logger().set_level(spdlog::level::off);
    register_type<Sample>("fuzz.Sample");
    node.start_offline();
    register_name(atom("sink"), spawn(sink));
  }
};

// Bytes a peer's socket delivers to a native ZMTP stream: read until the stream fails or the
// bytes run out.
void feed_zmtp(std::string_view prefix, std::string_view bytes) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return;
  std::string all(prefix);
  all.append(bytes);
  if (::write(sv[1], all.data(), all.size()) != static_cast<ssize_t>(all.size())) {
    ::close(sv[0]);
    ::close(sv[1]);
    return;
  }
  ::close(sv[1]);
  dist::zmtp::Stream s(sv[0], "ROUTER", 1 << 20, true);
  for (;;) {
    const auto st = s.fill();
    std::string_view m;
    while (s.next(&m)) (void)s.take_multipart();
    if (s.writes_due()) (void)s.service();
    if (st != dist::zmtp::Stream::Status::ok && st != dist::zmtp::Stream::Status::drained) break;
  }
}

std::string zmtp_preamble() {
  std::string g(64, '\0');
  g[0] = static_cast<char>(0xff);
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  g.replace(12, 4, "NULL");
  const std::string body = std::string("\x05READY\x0bSocket-Type\0\0\0\x06", 22) + "DEALER";
  return g + std::string{'\x04', static_cast<char>(body.size())} + body;
}

World& world() {
  static World* w = new World();  // never destroyed: libFuzzer exits without unwinding
  return *w;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  world();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  World& w = world();
  w.node.fuzz_feed(bytes, false);
  w.node.fuzz_feed(bytes, true);
  w.node.fuzz_reset();
  {
    dist::Reader r(bytes);
    (void)dist::decode_term(r);
  }
  if (auto t = dist::json_to_term(bytes, nullptr)) {  // JSON payloads; what parses prints back
    (void)dist::term_to_json(*t);
  }
  static const std::string preamble = zmtp_preamble();
  feed_zmtp({}, bytes);
  feed_zmtp(preamble, bytes);
  try {
    wire::InputArchive ar(bytes);
    Sample s;
    ar(s);
  } catch (const std::exception&) {
  }
  return 0;
}
