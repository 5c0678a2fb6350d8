// The dynamic term: Erlang's data model for ad-hoc messages like `{hi, <0.106.0>}`.
#pragma once

#include <compare>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "nodus/atom.hpp"
#include "nodus/pid.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

class Term;

/// A dynamic value: integer, float, atom, reference, pid, tuple, map, list or binary (a byte
/// string; nodus has no char lists, so "text" is a binary). Terms compare in Erlang's term order
/// (number < atom < reference < pid < tuple < map < list < binary) and print in Erlang syntax.
class Term {
 public:
  /// Kinds, declared in Erlang's term order.
  enum class Kind : std::uint8_t { integer, floating, atom, ref, pid, tuple, map, list, binary };

  struct Tuple {
    std::vector<Term> elems;
  };
  struct List {
    std::vector<Term> elems;
  };
  struct Map {
    std::vector<std::pair<Term, Term>> entries;  ///< sorted by key, keys unique
  };

  /// The empty list `[]`.
  Term() : v_(List{}) {}
  template <class I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool>)
  Term(I i) : v_(static_cast<std::int64_t>(i)) {}
  /// `true` / `false` are atoms, as in Erlang.
  Term(bool b) : v_(Atom(b ? "true" : "false")) {}
  Term(double d) : v_(d) {}
  Term(Atom a) : v_(a) {}
  Term(const Pid& p) : v_(p) {}
  Term(const Ref& r) : v_(r) {}
  Term(std::string s) : v_(std::move(s)) {}
  Term(std::string_view s) : v_(std::string(s)) {}
  Term(const char* s) : v_(std::string(s)) {}
  Term(Tuple t) : v_(std::move(t)) {}
  Term(List l) : v_(std::move(l)) {}
  Term(Map m);  // sorts and deduplicates keys (last wins)

  static Term tuple(std::vector<Term> elems) { return Term(Tuple{std::move(elems)}); }
  static Term list(std::vector<Term> elems) { return Term(List{std::move(elems)}); }
  static Term map(std::vector<std::pair<Term, Term>> entries) { return Term(Map{std::move(entries)}); }

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_integer() const { return kind() == Kind::integer; }
  bool is_float() const { return kind() == Kind::floating; }
  bool is_atom() const { return kind() == Kind::atom; }
  bool is_atom(std::string_view name) const { return is_atom() && as_atom().name() == name; }
  bool is_pid() const { return kind() == Kind::pid; }
  bool is_ref() const { return kind() == Kind::ref; }
  bool is_tuple() const { return kind() == Kind::tuple; }
  /// True for a tuple of `arity` elements whose first element is the atom `tag`.
  bool is_tuple(std::size_t arity, std::string_view tag) const;
  bool is_list() const { return kind() == Kind::list; }
  bool is_map() const { return kind() == Kind::map; }
  bool is_binary() const { return kind() == Kind::binary; }

  /// Accessors throw nodus::BadTerm (a std::bad_variant_access) on the wrong kind, naming the
  /// kind wanted and the term found.
  std::int64_t as_int() const { return get<std::int64_t>(Kind::integer); }
  double as_double() const { return get<double>(Kind::floating); }
  Atom as_atom() const { return get<Atom>(Kind::atom); }
  const Pid& as_pid() const { return get<Pid>(Kind::pid); }
  const Ref& as_ref() const { return get<Ref>(Kind::ref); }
  const std::string& as_binary() const { return get<std::string>(Kind::binary); }
  /// Elements of a tuple or list.
  const std::vector<Term>& elems() const;
  std::vector<Term>& elems();
  const std::vector<std::pair<Term, Term>>& entries() const { return get<Map>(Kind::map).entries; }
  /// Element `i` of a tuple or list (bounds-checked, throws std::out_of_range).
  const Term& operator[](std::size_t i) const { return elems().at(i); }
  std::size_t size() const;
  /// Value for `key` in a map, or nullptr.
  const Term* find(const Term& key) const;

  std::string to_string() const;
  /// At most `max_bytes` of the printed term, then "..." if it is longer; prints no more than
  /// that (a log line about a 60 MiB message costs what the line holds).
  std::string to_string(std::size_t max_bytes) const;

  friend bool operator==(const Term& a, const Term& b) { return compare(a, b) == 0; }
  friend std::strong_ordering operator<=>(const Term& a, const Term& b) {
    const int c = compare(a, b);
    return c < 0 ? std::strong_ordering::less
                 : c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal;
  }
  /// -1, 0, 1 in Erlang term order (integers and floats compare by value).
  static int compare(const Term& a, const Term& b);

 private:
  template <class T>
  const T& get(Kind wanted) const {
    if (const T* p = std::get_if<T>(&v_)) return *p;
    wrong_kind(wanted);
  }
  [[noreturn]] void wrong_kind(Kind wanted) const;

  std::variant<std::int64_t, double, Atom, Ref, Pid, Tuple, Map, List, std::string> v_;
};

/// "an integer", "a float", "an atom", ... "a binary".
std::string_view kind_name(Term::Kind k);

/// Thrown by Term's accessors on the wrong kind ("expected an atom, got a binary:
/// \"moebi@localhost\""). It keeps the term it was asked of, so that whoever catches it (a
/// task's report) can say which argument it was.
class BadTerm : public std::bad_variant_access {
 public:
  BadTerm(Term::Kind wanted, const Term& got);
  const char* what() const noexcept override { return what_.c_str(); }
  Term::Kind wanted() const { return wanted_; }
  const Term& term() const { return got_; }

 private:
  Term::Kind wanted_;
  Term got_;
  std::string what_;
};

/// `{a, b, ...}` from anything a Term can be built from.
template <class... Ts>
Term tuple(Ts&&... ts) {
  return Term::tuple(std::vector<Term>{Term(std::forward<Ts>(ts))...});
}
/// `[a, b, ...]`.
template <class... Ts>
Term list(Ts&&... ts) {
  return Term::list(std::vector<Term>{Term(std::forward<Ts>(ts))...});
}

std::ostream& operator<<(std::ostream& os, const Term& t);

/// Erlang's printing of an atom: bare when it is a plain lowercase identifier, else quoted.
std::string atom_to_string(Atom a);

}  // namespace nodus

NODUS_API_END
