// A small recursive-descent reader for Erlang-syntax terms (the shell's input).
#include "nodus/term_parser.hpp"

#include <cctype>
#include <cstdlib>

namespace nodus {
namespace {

class Parser {
 public:
  Parser(std::string_view s, const TermScope& scope) : s_(s), scope_(scope) {}

  std::optional<Term> parse_all(std::string* error) {
    auto t = term(0);
    skip();
    if (t && pos_ != s_.size()) fail("end of input");
    if (!t || failed_) {
      if (error) *error = error_;
      return std::nullopt;
    }
    return t;
  }

 private:
  static constexpr int kMaxDepth = 100;

  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::optional<Term> fail(const std::string& expected) {
    if (!failed_) {
      failed_ = true;
      error_ = "expected " + expected + " at column " + std::to_string(pos_ + 1);
    }
    return std::nullopt;
  }
  std::string word() {
    const std::size_t b = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' ||
                                s_[pos_] == '@' || s_[pos_] == '.')) {
      ++pos_;
    }
    return std::string(s_.substr(b, pos_ - b));
  }
  std::optional<std::string> quoted(char q) {
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      char c = s_[pos_++];
      if (c == '\\' && pos_ < s_.size()) {
        c = s_[pos_++];
        c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
      }
      out += c;
    }
    if (pos_ >= s_.size()) return std::nullopt;
    ++pos_;
    return out;
  }
  std::optional<std::vector<Term>> seq(char close, int depth) {
    std::vector<Term> v;
    if (eat(close)) return v;
    for (;;) {
      auto t = term(depth + 1);
      if (!t) return std::nullopt;
      v.push_back(std::move(*t));
      if (eat(close)) return v;
      if (!eat(',')) {
        fail(std::string("',' or '") + close + "'");
        return std::nullopt;
      }
    }
  }

  std::optional<Term> term(int depth) {
    if (depth > kMaxDepth) return fail("less nesting");
    skip();
    if (pos_ >= s_.size()) return fail("a term");
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      auto v = seq('}', depth);
      if (!v) return std::nullopt;
      return Term::tuple(std::move(*v));
    }
    if (c == '[') {
      ++pos_;
      auto v = seq(']', depth);
      if (!v) return std::nullopt;
      return Term::list(std::move(*v));
    }
    if (c == '#') {
      ++pos_;
      if (!eat('{')) return fail("'{' after '#'");
      std::vector<std::pair<Term, Term>> kv;
      if (eat('}')) return Term::map(std::move(kv));
      for (;;) {
        auto k = term(depth + 1);
        if (!k) return std::nullopt;
        skip();
        if (s_.substr(pos_, 2) != "=>") return fail("'=>'");
        pos_ += 2;
        auto v = term(depth + 1);
        if (!v) return std::nullopt;
        kv.emplace_back(std::move(*k), std::move(*v));
        if (eat('}')) return Term::map(std::move(kv));
        if (!eat(',')) return fail("',' or '}'");
      }
    }
    if (c == '"' || c == '\'') {
      ++pos_;
      auto str = quoted(c);
      if (!str) return fail(std::string("closing ") + c);
      if (c == '\'' && str->size() > kMaxAtomBytes) return fail("an atom of at most 255 bytes");
      if (c == '\'') return Term(Atom(*str));
      return Term(std::move(*str));
    }
    if (c == '<') {  // <0.ID.SERIAL>: a local pid
      ++pos_;
      const std::string w = word();
      if (!eat('>')) return fail("'>' closing a pid");
      unsigned long node = 0, id = 0, serial = 0;
      if (std::sscanf(w.c_str(), "%lu.%lu.%lu", &node, &id, &serial) != 3 || node != 0) {
        return fail("a local pid like <0.42.0>");
      }
      return Term(Pid{Atom(), 0, static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(serial + 1)});
    }
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      const char* b = s_.data() + pos_;
      char* e = nullptr;
      const std::string num(s_.substr(pos_, std::min<std::size_t>(64, s_.size() - pos_)));
      errno = 0;
      const long long i = std::strtoll(num.c_str(), &e, 10);
      if (e != num.c_str() && *e != '.' && *e != 'e' && *e != 'E' && errno == 0) {
        pos_ += static_cast<std::size_t>(e - num.c_str());
        return Term(static_cast<std::int64_t>(i));
      }
      const double d = std::strtod(num.c_str(), &e);
      if (e == num.c_str()) return fail("a number");
      (void)b;
      pos_ += static_cast<std::size_t>(e - num.c_str());
      return Term(d);
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const std::string w = word();
      if (w == "self" && eat('(')) {
        if (!eat(')')) return fail("')'");
        if (!scope_.self) return fail("a term (self() is not available here)");
        return scope_.self();
      }
      if (std::isupper(static_cast<unsigned char>(w[0])) || w[0] == '_') {
        if (scope_.variable) {
          if (auto v = scope_.variable(w)) return v;
        }
        failed_ = true;
        error_ = "unbound variable " + w;
        return std::nullopt;
      }
      if (w == "true") return Term(true);
      if (w == "false") return Term(false);
      if (scope_.variable) {  // a shell binding (`pid = ...`) shadows the atom of that name
        if (auto v = scope_.variable(w)) return v;
      }
      if (w.size() > kMaxAtomBytes) return fail("an atom of at most 255 bytes");
      return Term(Atom(w));
    }
    return fail("a term");
  }

  std::string_view s_;
  const TermScope& scope_;
  std::size_t pos_ = 0;
  bool failed_ = false;
  std::string error_;
};

}  // namespace

Expected<Term> parse_term(std::string_view text, const TermScope& scope) {
  std::string error;
  auto t = Parser(text, scope).parse_all(&error);
  if (!t) return Failure{Errc::badarg, atom("badarg"), std::move(error)};
  return std::move(*t);
}

}  // namespace nodus
