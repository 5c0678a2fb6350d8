// Interned symbols, like Erlang atoms: cheap to copy and compare, printable.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// The longest atom, in bytes (Erlang allows 255 characters): what the wire's str8 holds.
inline constexpr std::size_t kMaxAtomBytes = 255;

/// An interned name. Two atoms are equal iff their text is equal; comparison is one integer
/// compare. The table is process-wide and never shrinks (as in Erlang).
class Atom {
 public:
  /// The empty atom ('').
  constexpr Atom() = default;
  /// Interns `text` (thread-safe); std::length_error if it is longer than kMaxAtomBytes (as
  /// Erlang raises system_limit), so an atom always crosses the wire whole.
  explicit Atom(std::string_view text);

  /// The atom's text; valid for the life of the program.
  std::string_view name() const;
  std::uint32_t id() const { return id_; }
  /// The atom `text` if it was interned already; never interns.
  static std::optional<Atom> find(std::string_view text);
  static Atom from_id(std::uint32_t id) {
    Atom a;
    a.id_ = id;
    return a;
  }

  friend bool operator==(Atom a, Atom b) { return a.id_ == b.id_; }
  /// Ordering by text, as Erlang orders atoms.
  friend bool operator<(Atom a, Atom b) { return a.name() < b.name(); }

 private:
  std::uint32_t id_ = 0;
};

}  // namespace nodus
#include "nodus/detail/atom.hpp"  // the hooks this header's templates use
namespace nodus {

/// Shorthand for `Atom(text)`.
inline Atom atom(std::string_view text) { return Atom(text); }

/// Atoms the runtime itself uses, interned once.
namespace atoms {
Atom normal();
Atom kill();
Atom killed();
Atom noproc();
Atom noconnection();
Atom exception();
Atom timeout();
Atom ok();
Atom error();
Atom undefined();
}  // namespace atoms

}  // namespace nodus

template <>
struct std::hash<nodus::Atom> {
  std::size_t operator()(nodus::Atom a) const noexcept { return a.id(); }
};

NODUS_API_END
