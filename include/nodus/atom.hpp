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

namespace detail {
/// Interns an atom that arrived from the network: an existing atom always, a new one only
/// while fewer than the network atom budget were made this way (nullopt past it, and the
/// calling thread's atom_budget_hit flag is set). The table never shrinks, so the budget
/// bounds what peers can add to it.
std::optional<Atom> network_atom(std::string_view text);
/// The budget (NodeOptions::max_network_atoms sets it when a node starts).
void set_network_atom_budget(std::size_t n);
std::size_t network_atom_budget();
/// Atoms interned by network_atom so far.
std::size_t network_atoms();
/// True once after a network_atom on this thread was refused (clears the flag).
bool take_atom_budget_hit();
}  // namespace detail

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
