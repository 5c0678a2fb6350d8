// Term ordering and Erlang-syntax printing.
#include "nodus/term.hpp"
#include "nodus/message.hpp"

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <stdexcept>

#include <fmt/format.h>

namespace nodus {

Term::Term(Map m) {
  auto& e = m.entries;
  std::stable_sort(e.begin(), e.end(),
                   [](const auto& a, const auto& b) { return compare(a.first, b.first) < 0; });
  // keep the last value of duplicate keys, as a map literal does
  std::vector<std::pair<Term, Term>> out;
  out.reserve(e.size());
  for (auto& kv : e) {
    if (!out.empty() && compare(out.back().first, kv.first) == 0) {
      out.back().second = std::move(kv.second);
    } else {
      out.push_back(std::move(kv));
    }
  }
  v_ = Map{std::move(out)};
}

bool Term::is_tuple(std::size_t arity, std::string_view tag) const {
  if (!is_tuple()) return false;
  const auto& e = std::get<Tuple>(v_).elems;
  return e.size() == arity && arity > 0 && e[0].is_atom(tag);
}

const std::vector<Term>& Term::elems() const {
  if (auto* t = std::get_if<Tuple>(&v_)) return t->elems;
  return get<List>(Kind::list).elems;
}

std::vector<Term>& Term::elems() {
  if (auto* t = std::get_if<Tuple>(&v_)) return t->elems;
  if (auto* l = std::get_if<List>(&v_)) return l->elems;
  wrong_kind(Kind::list);
}

void Term::wrong_kind(Kind wanted) const { throw BadTerm(wanted, *this); }

std::string_view kind_name(Term::Kind k) {
  switch (k) {
    case Term::Kind::integer: return "an integer";
    case Term::Kind::floating: return "a float";
    case Term::Kind::atom: return "an atom";
    case Term::Kind::ref: return "a reference";
    case Term::Kind::pid: return "a pid";
    case Term::Kind::tuple: return "a tuple";
    case Term::Kind::map: return "a map";
    case Term::Kind::list: return "a list";
    case Term::Kind::binary: return "a binary";
  }
  return "a term";
}

BadTerm::BadTerm(Term::Kind wanted, const Term& got)
    : wanted_(wanted), got_(got),
      what_("expected " + std::string(kind_name(wanted)) + ", got " + std::string(kind_name(got.kind())) + ": " +
            got.to_string(200)) {}

std::size_t Term::size() const {
  switch (kind()) {
    case Kind::tuple:
    case Kind::list: return elems().size();
    case Kind::map: return entries().size();
    case Kind::binary: return as_binary().size();
    default: return 0;
  }
}

const Term* Term::find(const Term& key) const {
  const auto& e = entries();
  auto it = std::lower_bound(e.begin(), e.end(), key,
                             [](const auto& kv, const Term& k) { return compare(kv.first, k) < 0; });
  return (it != e.end() && compare(it->first, key) == 0) ? &it->second : nullptr;
}

namespace {
template <class T>
int cmp3(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}
int order_rank(Term::Kind k) {
  // integers and floats share the "number" rank
  return k == Term::Kind::floating ? 0 : static_cast<int>(k);
}
int compare_seq(const std::vector<Term>& a, const std::vector<Term>& b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (int c = Term::compare(a[i], b[i])) return c;
  }
  return cmp3(a.size(), b.size());
}
}  // namespace

int Term::compare(const Term& a, const Term& b) {
  const Kind ka = a.kind(), kb = b.kind();
  if (order_rank(ka) != order_rank(kb)) return cmp3(order_rank(ka), order_rank(kb));
  switch (ka) {
    case Kind::integer:
      if (kb == Kind::integer) return cmp3(a.as_int(), b.as_int());
      return cmp3(static_cast<double>(a.as_int()), b.as_double());
    case Kind::floating:
      if (kb == Kind::floating) return cmp3(a.as_double(), b.as_double());
      return cmp3(a.as_double(), static_cast<double>(b.as_int()));
    case Kind::atom: return cmp3(a.as_atom().name(), b.as_atom().name());
    case Kind::ref: return cmp3(a.as_ref(), b.as_ref());
    case Kind::pid: return cmp3(a.as_pid(), b.as_pid());
    case Kind::tuple: {
      // tuples order by size first, then element-wise
      const auto &x = a.elems(), &y = b.elems();
      if (x.size() != y.size()) return cmp3(x.size(), y.size());
      return compare_seq(x, y);
    }
    case Kind::map: {
      const auto &x = a.entries(), &y = b.entries();
      if (x.size() != y.size()) return cmp3(x.size(), y.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (int c = compare(x[i].first, y[i].first)) return c;
      }
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (int c = compare(x[i].second, y[i].second)) return c;
      }
      return 0;
    }
    case Kind::list: return compare_seq(a.elems(), b.elems());
    case Kind::binary: return cmp3(a.as_binary(), b.as_binary());
  }
  return 0;
}

std::string atom_to_string(Atom a) {
  const std::string_view s = a.name();
  bool bare = !s.empty() && s[0] >= 'a' && s[0] <= 'z';
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '@';
    bare = bare && ok;
  }
  if (bare) return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

namespace {
bool printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') return false;
    if (c == 0x7f) return false;
  }
  return true;
}

// Printing stops once `out` holds `limit` bytes (to_string(max_bytes)): the caller cuts it.
void print(std::string& out, const Term& t, std::size_t limit);

void print_seq(std::string& out, const std::vector<Term>& v, std::size_t limit) {
  for (std::size_t i = 0; i < v.size() && out.size() < limit; ++i) {
    if (i) out += ", ";
    print(out, v[i], limit);
  }
}

void print(std::string& out, const Term& t, std::size_t limit) {
  if (out.size() >= limit) return;
  switch (t.kind()) {
    case Term::Kind::integer: out += fmt::format("{}", t.as_int()); break;
    case Term::Kind::floating: {
      std::string s = fmt::format("{}", t.as_double());
      if (s.find_first_of(".eni") == std::string::npos) s += ".0";
      out += s;
      break;
    }
    case Term::Kind::atom: out += atom_to_string(t.as_atom()); break;
    case Term::Kind::ref: out += to_string(t.as_ref()); break;
    case Term::Kind::pid: out += to_string(t.as_pid()); break;
    case Term::Kind::tuple:
      out += '{';
      print_seq(out, t.elems(), limit);
      out += '}';
      break;
    case Term::Kind::list:
      out += '[';
      print_seq(out, t.elems(), limit);
      out += ']';
      break;
    case Term::Kind::map: {
      out += "#{";
      bool first = true;
      for (const auto& [k, v] : t.entries()) {
        if (out.size() >= limit) break;
        if (!first) out += ", ";
        first = false;
        print(out, k, limit);
        out += " => ";
        print(out, v, limit);
      }
      out += '}';
      break;
    }
    case Term::Kind::binary: {
      const auto& s = t.as_binary();
      if (printable(s)) {
        out += '"';
        for (char c : s) {
          if (out.size() >= limit) break;
          switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default: out += c;
          }
        }
        out += '"';
      } else {
        out += "<<";
        for (std::size_t i = 0; i < s.size() && out.size() < limit; ++i) {
          if (i) out += ',';
          out += fmt::format("{}", static_cast<unsigned char>(s[i]));
        }
        out += ">>";
      }
      break;
    }
  }
}
}  // namespace

std::string Term::to_string() const {
  std::string out;
  print(out, *this, SIZE_MAX);
  return out;
}

std::string Term::to_string(std::size_t max_bytes) const {
  std::string out;
  print(out, *this, max_bytes);
  if (out.size() > max_bytes) {
    out.resize(max_bytes);
    out += "...";
  } else if (out.size() == max_bytes) {
    // (it may have stopped just there: say so only if something was left out)
    std::string whole;
    print(whole, *this, max_bytes + 1);
    if (whole.size() > max_bytes) out += "...";
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Term& t) { return os << t.to_string(); }

}  // namespace nodus

namespace nodus {

std::string MessageRef::to_string(std::size_t max_bytes) const {
  if (is<Term>()) return get<Term>().to_string(max_bytes);
  std::string s = to_string();
  if (s.size() > max_bytes) {
    s.resize(max_bytes);
    s += "...";
  }
  return s;
}

}  // namespace nodus
