// Term <-> JSON, the bridge's payload encoding (docs/PROTOCOL.md, section 5b): how a foreign
// tool (pyzmq, zeromq.js) exchanges messages with nodes without a Term codec of its own.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "nodus/term.hpp"

namespace nodus::dist {

/// The JSON text of `t` (UTF-8, no insignificant white space).
std::string term_to_json(const Term& t);
/// The Term a JSON text stands for; nullopt with `error` set for anything else: malformed
/// JSON, nesting deeper than kMaxTermDepth, an integer outside int64, a reserved `$` key used
/// wrongly, trailing bytes.
std::optional<Term> json_to_term(std::string_view json, std::string* error);

}  // namespace nodus::dist
