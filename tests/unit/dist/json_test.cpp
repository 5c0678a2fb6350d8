// Term <-> JSON (the bridge's payloads): the documented mapping, round trips, and refusals.
#include <catch2/catch.hpp>

#include <cmath>

#include "dist/json.hpp"

using namespace nodus;
using namespace nodus::dist;

namespace {
Term parse(std::string_view json) {
  std::string why;
  auto t = json_to_term(json, &why);
  INFO(why);
  REQUIRE(t.has_value());
  return *t;
}
std::string refused(std::string_view json) {
  std::string why;
  auto t = json_to_term(json, &why);
  CHECK_FALSE(t.has_value());
  return why;
}
}  // namespace

TEST_CASE("JSON maps onto Terms as docs/PROTOCOL.md says", "[json]") {
  CHECK(parse("42") == Term(42));
  CHECK(parse("-9223372036854775808") == Term(INT64_MIN));
  CHECK(parse("1.5").is_float());
  CHECK(parse("2.0").is_float());
  CHECK(parse("\"hi\"") == Term("hi"));
  CHECK(parse("true") == Term(atom("true")));
  CHECK(parse("false") == Term(atom("false")));
  CHECK(parse("null") == Term(atom("nil")));
  CHECK(parse("[1,[2]]") == list(1, list(2)));
  CHECK(parse(R"({"$atom":"ok"})") == Term(atom("ok")));
  CHECK(parse(R"({"$tuple":[{"$atom":"seq"},1,"x"]})") == tuple(atom("seq"), 1, "x"));
  CHECK(parse(R"({"a":1,"b":[]})") == Term::map({{Term("a"), Term(1)}, {Term("b"), list()}}));
  CHECK(parse(R"({"$map":[[1,{"$atom":"one"}]]})") == Term::map({{Term(1), Term(atom("one"))}}));
  CHECK(parse(R"({"$bin":"AP8="})") == Term(std::string("\0\xff", 2)));
  CHECK(parse(R"({"$pid":{"node":"kate@localhost","creation":7,"id":132,"serial":1}})") ==
        Term(Pid{atom("kate@localhost"), 7, 132, 1}));
  CHECK(parse(R"({"$ref":{"node":"kate@localhost","creation":7,"id":99}})") ==
        Term(Ref{atom("kate@localhost"), 7, 99}));
  CHECK(std::isinf(parse(R"({"$float":"-inf"})").as_double()));
  CHECK(parse("  {\"s\" : \"\\u00e9\\n\"} ") == Term::map({{Term("s"), Term("\xc3\xa9\n")}}));
}

TEST_CASE("Terms print as JSON and read back the same", "[json]") {
  const Term cases[] = {
      Term(0), Term(-1'000'000'000'000), Term(1.5), Term(2.0), Term(-0.25), Term(1e300),
      Term(atom("hi")), Term(atom("true")), Term(atom("nil")), Term(atom("$odd")), Term("bin"),
      Term(std::string("\0\xff", 2)), Term("quote \" backslash \\ tab \t ctl \x01"),
      tuple(atom("seq"), 1, "xxxxxxxxxxxxxxxx"), list(1, list(2, list())), Term::map({{1, atom("a")}}),
      Term::map({{Term("k"), Term(1)}, {Term("$k"), Term(2)}}), Term::map({{Term("k"), tuple()}}),
      Term(Pid{atom("kate@localhost"), 7, 132, 1}), Term(Ref{atom("kate@localhost"), 7, 99}),
      Term(HUGE_VAL),
  };
  for (const Term& t : cases) {
    const std::string j = term_to_json(t);
    INFO(t.to_string() << " -> " << j);
    std::string why;
    auto back = json_to_term(j, &why);
    INFO(why);
    REQUIRE(back.has_value());
    CHECK(*back == t);
    CHECK(back->kind() == t.kind());
  }
  CHECK(term_to_json(tuple(atom("ok"), true, atom("nil"), 1.0)) == R"({"$tuple":[{"$atom":"ok"},true,null,1.0]})");
  CHECK(term_to_json(Term::map({{Term("a"), list(1, "x")}})) == R"({"a":[1,"x"]})");
}

TEST_CASE("malformed or misused JSON is refused with a reason", "[json]") {
  CHECK(refused("").size() > 0);
  CHECK(refused("{").size() > 0);
  CHECK(refused("[1,]").size() > 0);
  CHECK(refused("1 2").size() > 0);
  CHECK(refused("\"\xff\"").size() > 0);  // not UTF-8
  CHECK(refused("18446744073709551615").find("out of range") != std::string::npos);
  CHECK(refused(R"({"$atom":1})").find("$atom") != std::string::npos);
  CHECK(refused(R"({"$atom":"a","x":1})").find("only key") != std::string::npos);
  CHECK(refused(R"({"$nope":1})").find("unknown reserved key") != std::string::npos);
  CHECK(refused(R"({"$pid":{"node":"kate","creation":1,"id":1,"serial":1}})").find("$pid") != std::string::npos);
  CHECK(refused(R"({"$pid":{"node":"k@h","creation":-1,"id":1,"serial":1}})").find("$pid") != std::string::npos);
  CHECK(refused(R"({"$bin":"not base64!"})").find("$bin") != std::string::npos);
  CHECK(refused(R"({"$map":[[1]]})").find("$map") != std::string::npos);
  CHECK(refused(std::string(101, '[') + std::string(101, ']')).find("deeper") != std::string::npos);
  CHECK(parse(std::string(100, '[') + std::string(100, ']')).is_list());
  // a deep attack is refused before it nests, not after a stack overflow
  CHECK(refused(std::string(1'000'000, '[')).find("deeper") != std::string::npos);
}
