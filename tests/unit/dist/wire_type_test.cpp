// Typed messages: cereal through nodus's wire archives, bounded decoding, the registry.
#include <catch2/catch.hpp>

#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "nodus/nodus.hpp"

using namespace nodus;

namespace {

struct Inner {
  std::map<std::string, double> weights;
  template <class A>
  void serialize(A& a) { a(weights); }
  bool operator==(const Inner&) const = default;
};

struct Sample {
  std::string text;
  std::int32_t n = 0;
  std::vector<std::uint16_t> nums;
  std::vector<Inner> inner;
  Pid from;
  Atom tag;
  Term extra;
  template <class A>
  void serialize(A& a) { a(text, n, nums, inner, from, tag, extra); }
};

struct Two {
  std::uint16_t a = 0x0102;
  std::string b = "xy";
  template <class A>
  void serialize(A& ar) { ar(a, b); }
};
struct TypeA {
  int x = 0;
  template <class Ar>
  void serialize(Ar& a) { a(x); }
};
struct TypeB {
  int y = 0;
  template <class Ar>
  void serialize(Ar& a) { a(y); }
};

std::string encode(const Sample& s) {
  std::string out;
  wire::OutputArchive ar(out);
  ar(s);
  return out;
}

Sample decode(std::string_view bytes) {
  wire::InputArchive ar(bytes);
  Sample s;
  ar(s);
  return s;
}

}  // namespace

TEST_CASE("typed values survive the wire archives", "[wire]") {
  Runtime rt({.schedulers = 1});
  Sample s{"hi", -7, {1, 2, 65535}, {Inner{{{"a", 0.5}}}, Inner{}}, Pid{}, atom("greeting"),
           tuple(atom("ok"), 42, "bin")};
  Mailbox mb;
  s.from = self();
  const Sample d = decode(encode(s));
  CHECK(d.text == "hi");
  CHECK(d.n == -7);
  CHECK(d.nums == s.nums);
  CHECK(d.inner == s.inner);
  CHECK(d.from == s.from);
  CHECK(d.tag == atom("greeting"));
  CHECK(d.extra == s.extra);
  // empty containers (a null data pointer) round-trip too
  const Sample e = decode(encode(Sample{}));
  CHECK(e.text.empty());
  CHECK(e.nums.empty());
}

TEST_CASE("the layout is little-endian with u64 sizes, as docs/PROTOCOL.md says", "[wire]") {
  std::string out;
  {
    wire::OutputArchive ar(out);
    ar(Two{});
  }
  CHECK(out == std::string("\x02\x01" "\x02\0\0\0\0\0\0\0" "xy", 12));
}

TEST_CASE("malformed typed bytes are refused without over-allocating", "[wire]") {
  Runtime rt({.schedulers = 1});
  const std::string good = encode(Sample{"hello", 1, {1, 2, 3}, {}, Pid{}, atom("a"), Term(1)});
  // every truncation fails cleanly
  for (std::size_t i = 0; i < good.size(); ++i) {
    CHECK_THROWS(decode(std::string_view(good).substr(0, i)));
  }
  // a string claiming 2^40 bytes: refused before allocating
  std::string huge("\0\0\0\0\0\x01\0\0", 8);
  CHECK_THROWS_WITH(decode(huge), Catch::Contains("size larger than the rest"));
  // a vector claiming more elements than bytes left
  std::string vec;
  {
    wire::OutputArchive ar(vec);
    ar(std::string("t"), std::int32_t{1}, std::uint64_t{1} << 33);
  }
  CHECK_THROWS_WITH(decode(vec), Catch::Contains("size larger than the rest"));
}

TEST_CASE("wire names are unique per type", "[wire]") {
  register_type<TypeA>("test.A");
  CHECK_NOTHROW(register_type<TypeA>("test.A"));  // again, same name: fine
  CHECK_THROWS_AS(register_type<TypeA>("test.A2"), std::invalid_argument);
  CHECK_THROWS_AS(register_type<TypeB>("test.A"), std::invalid_argument);
  CHECK_THROWS_AS(register_type<TypeB>(""), std::invalid_argument);
  CHECK_THROWS_AS(register_type<TypeB>(std::string(256, 'x')), std::invalid_argument);
}
