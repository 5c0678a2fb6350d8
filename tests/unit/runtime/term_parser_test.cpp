// Erlang-syntax term reading (the shell's input): good and bad inputs.
#include <catch2/catch.hpp>

#include "nodus/term_parser.hpp"

using namespace nodus;

namespace {
std::string round(std::string_view in) {
  TermScope scope;
  scope.self = [] { return Term(Pid{Atom(), 0, 7, 1}); };
  scope.variable = [](std::string_view v) -> std::optional<Term> {
    if (v == "Pid") return Term(Pid{Atom(), 0, 9, 1});
    return std::nullopt;
  };
  auto t = parse_term(in, scope);
  return t ? t->to_string() : "error: " + t.error().text;
}
}  // namespace

TEST_CASE("terms in Erlang syntax are read back as printed", "[term][parser]") {
  CHECK(round("{hi, self()}") == "{hi, <0.7.0>}");
  CHECK(round("{hi, Pid}") == "{hi, <0.9.0>}");
  CHECK(round("  [1, -2, 2.5, \"text\", 'sup?', true]  ") == "[1, -2, 2.5, \"text\", 'sup?', true]");
  CHECK(round("#{a => 1, b => [x]}") == "#{a => 1, b => [x]}");
  CHECK(round("<0.42.0>") == "<0.42.0>");
  CHECK(round("kate@localhost") == "kate@localhost");
  CHECK(round("{}") == "{}");
  CHECK(round("\"a\\\"b\"") == "\"a\\\"b\"");
}

TEST_CASE("bad input says what was expected, and where", "[term][parser]") {
  CHECK(round("{hi, ") == "error: expected a term at column 6");
  CHECK(round("{hi hi}") == "error: expected ',' or '}' at column 5");
  CHECK(round("Unbound") == "error: unbound variable Unbound");
  CHECK(round("\"open") == "error: expected closing \" at column 6");
  CHECK(round("{a} b") == "error: expected end of input at column 5");
  CHECK(round("<1.2.3>") == "error: expected a local pid like <0.42.0> at column 8");
  CHECK(round(std::string(500, '[')).rfind("error: expected less nesting", 0) == 0);
  CHECK(round("") == "error: expected a term at column 1");
  // an atom is at most 255 bytes (it must cross the wire whole)
  CHECK(round(std::string(255, 'a')) == std::string(255, 'a'));
  CHECK(round(std::string(256, 'a')).rfind("error: expected an atom of at most 255 bytes", 0) == 0);
  CHECK(round("'" + std::string(256, 'b') + "'").rfind("error: expected an atom of at most 255 bytes", 0) == 0);
}
