// Term codec: round trips, exact bytes, and a table of malformed inputs that must be refused.
#include <catch2/catch.hpp>

#include "dist/codec.hpp"

using namespace nodus;
using namespace nodus::dist;

namespace {
std::string encode(const Term& t) {
  std::string s;
  Writer w(s);
  encode_term(w, t);
  return s;
}
std::optional<Term> decode(std::string_view bytes, bool* consumed_all = nullptr) {
  Reader r(bytes);
  auto t = decode_term(r);
  if (consumed_all) *consumed_all = r.at_end();
  return t;
}
}  // namespace

TEST_CASE("terms survive encode/decode", "[codec]") {
  const Term cases[] = {
      Term(0), Term(-128), Term(127), Term(128), Term(-1'000'000'000'000), Term(1.5),
      Term(atom("hi")), Term(atom("")), Term("bin"), Term(std::string("\0\xff", 2)),
      tuple(atom("seq"), 1, "xxxxxxxxxxxxxxxx"), list(1, list(2, list())), Term::map({{1, atom("a")}}),
      Term(Pid{atom("kate@localhost"), 7, 132, 1}), Term(Ref{atom("kate@localhost"), 7, 99}),
  };
  for (const auto& t : cases) {
    bool all = false;
    auto back = decode(encode(t), &all);
    REQUIRE(back);
    CHECK(*back == t);
    CHECK(all);
  }
}

TEST_CASE("the term bytes are the ones docs/PROTOCOL.md shows", "[codec]") {
  const std::string b = encode(tuple(atom("seq"), 1, std::string(16, 'x')));
  const std::string expect = std::string("\x06\x03\x00\x00\x00", 5) + "\x04\x03" "seq" + "\x01\x01" +
                             std::string("\x05\x10\x00\x00\x00", 5) + std::string(16, 'x');
  CHECK(b == expect);
}

TEST_CASE("malformed terms are refused without crashing or over-allocating", "[codec]") {
  const std::string bad[] = {
      std::string(),                                   // nothing
      std::string("\x02\x01\x02", 3),                  // i64 cut short
      std::string("\x04\x05" "ab", 4),                    // atom longer than the input
      std::string("\x05\xff\xff\xff\xff", 5),          // 4 GiB binary declared
      std::string("\x06\xff\xff\xff\x7f", 5),          // 2^31 tuple elements declared
      std::string("\x08\x02\x00\x00\x00\x01\x01", 7),  // map with fewer bytes than pairs
      std::string("\x09\x00\x01\x00\x00\x00", 6),      // pid with empty node name
      std::string("\x7f", 1),                          // unknown tag
      std::string(1000, '\x07') ,                      // lists nested too deep (and truncated)
  };
  for (const auto& b : bad) CHECK_FALSE(decode(b).has_value());
  // deep but well-formed nesting beyond the limit
  std::string deep;
  for (int i = 0; i <= kMaxTermDepth + 1; ++i) deep += std::string("\x07\x01\x00\x00\x00", 5);
  deep += std::string("\x07\x00\x00\x00\x00", 5);
  CHECK_FALSE(decode(deep).has_value());
}

TEST_CASE("a Term field may be JSON text (tag 0x0B), for foreign tools", "[codec]") {
  auto json_field = [](std::string_view text) {
    std::string s("\x0b", 1);
    const auto n = static_cast<std::uint32_t>(text.size());
    s.append(reinterpret_cast<const char*>(&n), 4);
    s.append(text);
    return s;
  };
  bool all = false;
  auto t = decode(json_field(R"({"$tuple":[{"$atom":"hi"},[1,2]]})"), &all);
  REQUIRE(t);
  CHECK(all);
  CHECK(*t == tuple(atom("hi"), list(1, 2)));
  CHECK_FALSE(decode(json_field("{nope")));
  CHECK_FALSE(decode(json_field("[1]").substr(0, 7)));  // truncated
}

TEST_CASE("a string longer than its field is refused at the sender, never cut", "[codec]") {
  std::string out;
  Writer w(out);
  w.str8(std::string(255, 'a'));
  CHECK(w.ok());
  CHECK(out.size() == 256);
  w.str8(std::string(256, 'b'));
  CHECK_FALSE(w.ok());
  CHECK(out.size() == 256);  // nothing of it written
  // atoms cannot outgrow the field in the first place (Erlang's system_limit)
  CHECK_NOTHROW(Atom(std::string(255, 'x')));
  CHECK_THROWS_AS(Atom(std::string(256, 'x')), std::length_error);
}

TEST_CASE("integers are little-endian on the wire", "[codec]") {
  std::string out;
  Writer w(out);
  w.u16(0x0102);
  w.u32(0x03040506);
  w.u64(0x0708090a0b0c0d0eULL);
  CHECK(out == std::string("\x02\x01\x06\x05\x04\x03\x0e\x0d\x0c\x0b\x0a\x09\x08\x07", 14));
  Reader r(out);
  CHECK(r.u16() == 0x0102);
  CHECK(r.u32() == 0x03040506u);
  CHECK(r.u64() == 0x0708090a0b0c0d0eULL);
  CHECK(r.at_end());
}

TEST_CASE("atoms from the network: known ones always, new ones within the budget; find never interns", "[codec][atoms]") {
  CHECK_FALSE(Atom::find("never-interned-anywhere-xyz").has_value());
  CHECK_FALSE(Atom::find("never-interned-anywhere-xyz").has_value());  // (and still not)
  const Atom known = atom("known_atom_for_budget");
  CHECK(Atom::find("known_atom_for_budget") == known);
  const std::size_t saved = detail::network_atom_budget();
  detail::set_network_atom_budget(detail::network_atoms() + 2);
  CHECK(decode(encode(Term(atom("known_atom_for_budget")))).has_value());
  // the wire form of new atoms: made from bytes, so this test does not intern them first
  auto new_atom = [](const std::string& name) {
    std::string bytes = encode(Term(atom("x")));
    bytes.replace(bytes.size() - 1, 1, name);       // (tag, length 1, 'x') -> the new name
    bytes[bytes.size() - name.size() - 1] = static_cast<char>(name.size());
    return bytes;
  };
  CHECK(decode(new_atom("budget_new_1")).has_value());
  CHECK(decode(new_atom("budget_new_2")).has_value());
  CHECK_FALSE(detail::take_atom_budget_hit());
  CHECK_FALSE(decode(new_atom("budget_new_3")).has_value());  // past the budget: refused
  CHECK(detail::take_atom_budget_hit());
  CHECK_FALSE(detail::take_atom_budget_hit());  // (once)
  CHECK_FALSE(Atom::find("budget_new_3").has_value());
  CHECK(decode(new_atom("budget_new_1")).has_value());  // made already: fine
  detail::set_network_atom_budget(saved);
}
