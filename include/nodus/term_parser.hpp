// Reading terms in Erlang syntax: `{hi, self()}`, `[1, 2.5, "text", 'Quoted atom', <0.12.0>]`.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "nodus/error.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// Resolves names the parser meets: `self()` and variables. A Capitalized name must be bound;
/// a lowercase name is the bound value if `variable` knows it (shell bindings, as in iex),
/// else an atom.
struct TermScope {
  std::function<std::optional<Term>(std::string_view var)> variable;  ///< e.g. `Pid`
  std::function<Term()> self;                                         ///< `self()`
};

/// Parses one term. Integers, floats, atoms (`hi`, `'sup?'`), "strings" (binaries), tuples,
/// lists, maps `#{k => v}`, local pids `<0.ID.SERIAL>`, `self()` and variables. On failure a
/// Failure (code badarg) whose `text` says what was expected where.
Expected<Term> parse_term(std::string_view text, const TermScope& scope = {});

}  // namespace nodus

NODUS_API_END
