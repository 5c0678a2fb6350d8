// The implementation hooks of nodus/atom.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/atom.hpp at the point they are
// needed; not an interface of its own: include nodus/atom.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

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

}  // namespace nodus

NODUS_API_END
