// Term construction, ordering and Erlang-syntax printing.
#include <catch2/catch.hpp>

#include "nodus/term.hpp"

using namespace nodus;

TEST_CASE("terms print in Erlang syntax", "[term]") {
  CHECK(Term(42).to_string() == "42");
  CHECK(Term(-7).to_string() == "-7");
  CHECK(Term(1.5).to_string() == "1.5");
  CHECK(Term(2.0).to_string() == "2.0");
  CHECK(Term(atom("hi")).to_string() == "hi");
  CHECK(Term(atom("sup?")).to_string() == "'sup?'");
  CHECK(Term(atom("Kate.say_name")).to_string() == "'Kate.say_name'");
  CHECK(Term(atom("kate@localhost")).to_string() == "kate@localhost");
  CHECK(Term("hello").to_string() == "\"hello\"");
  CHECK(Term(std::string("a\"b\n")).to_string() == "\"a\\\"b\\n\"");
  CHECK(Term(std::string("\x01\x02", 2)).to_string() == "<<1,2>>");
  CHECK(Term().to_string() == "[]");
  CHECK(tuple(atom("ok"), 1, "x").to_string() == "{ok, 1, \"x\"}");
  CHECK(list(1, 2, list()).to_string() == "[1, 2, []]");
  CHECK(Term(true).to_string() == "true");
  CHECK(Term::map({{atom("b"), 2}, {atom("a"), 1}}).to_string() == "#{a => 1, b => 2}");
}

TEST_CASE("pids print as <node.id.serial>", "[term]") {
  Pid local{Atom(), 0, 106, 1};
  CHECK(tuple(atom("hi"), local).to_string() == "{hi, <0.106.0>}");
  Pid remote{atom("kate@localhost"), 3, 132, 1};
  const auto s = Term(remote).to_string();
  CHECK(s.rfind("<", 0) == 0);
  CHECK(s.find(".132.0>") != std::string::npos);
  CHECK(s.rfind("<0.", 0) != 0);  // not printed as a local pid
}

TEST_CASE("terms compare in Erlang term order", "[term]") {
  CHECK(Term(1) < Term(atom("a")));
  CHECK(Term(atom("a")) < Term(make_ref()));
  CHECK(Term(1) == Term(1.0));
  CHECK(Term(1) < Term(1.5));
  CHECK(tuple(1, 2) < tuple(1, 2, 0));  // size first
  CHECK(tuple(9) < Term::map({}));
  CHECK(Term::map({}) < list());
  CHECK(list(1) < Term("a"));
  CHECK(list(1, 2) < list(1, 3));
  CHECK(list(1) < list(1, 0));
  CHECK(Term(atom("abc")) < Term(atom("abd")));
}

TEST_CASE("term accessors and maps", "[term]") {
  Term t = tuple(atom("hi"), 5);
  CHECK(t.is_tuple(2, "hi"));
  CHECK_FALSE(t.is_tuple(3, "hi"));
  CHECK_FALSE(t.is_tuple(2, "ho"));
  CHECK(t[1].as_int() == 5);
  CHECK_THROWS_AS(t[2], std::out_of_range);
  CHECK_THROWS_AS(t.as_int(), std::bad_variant_access);
  Term m = Term::map({{atom("k"), 1}, {atom("k"), 2}, {3, atom("v")}});
  CHECK(m.size() == 2);
  REQUIRE(m.find(atom("k")) != nullptr);
  CHECK(m.find(atom("k"))->as_int() == 2);  // last duplicate wins
  CHECK(m.find(atom("nope")) == nullptr);
}

TEST_CASE("an accessor of the wrong kind throws BadTerm, naming both kinds and the term", "[term]") {
  const Term t("moebi@localhost");
  try {
    (void)t.as_atom();
    FAIL("as_atom of a binary did not throw");
  } catch (const BadTerm& e) {
    CHECK(std::string(e.what()) == "expected an atom, got a binary: \"moebi@localhost\"");
    CHECK(e.wanted() == Term::Kind::atom);
    CHECK(e.term() == t);
  }
  CHECK_THROWS_AS(Term(1).as_binary(), std::bad_variant_access);  // (still one, for old callers)
  CHECK_THROWS_WITH(Term(atom("x")).elems(), "expected a list, got an atom: x");
  CHECK_THROWS_WITH(Term(std::string(1000, 'a')).as_int(), Catch::Matchers::Contains("..."));
}
