// Output through the caller's group leader: a process spawned on behalf of another node prints
// where its group leader lives, as Erlang's io does.
#pragma once

#include <string>
#include <string_view>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::io {

/// The message a group leader receives: text to write, already newline-terminated if needed.
struct Request {
  std::string text;
};

/// Writes `text` through the calling process's group leader (the node's stdout by default).
/// Output of one process keeps its order. Outside any process it goes to the node's stdout.
void put_chars(std::string_view text);
/// `text` followed by a newline (Elixir's IO.puts).
void puts(std::string_view text);

}  // namespace nodus::io

NODUS_API_END
