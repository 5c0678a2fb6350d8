// libFuzzer target: bytes a peer could send. Each input is fed to an offline node (no I/O
// thread, no port mapper) as one ZeroMQ message from an unauthenticated peer (handshake state
// machine) and from an authenticated one (records, frames, envelopes, payloads, spawn and
// link/monitor frames, delivery to a registered process that decodes Terms and typed values),
// and straight to the Term, JSON and typed-message decoders.
//   scripts/fuzz.sh [SECONDS]
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "../../src/dist/codec.hpp"
#include "../../src/dist/json.hpp"
#include "../../src/dist/node_impl.hpp"
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
  try {
    wire::InputArchive ar(bytes);
    Sample s;
    ar(s);
  } catch (const std::exception&) {
  }
  return 0;
}
