// nodus::io: output via the group leader.
#include "nodus/io.hpp"

#include <cstdio>

#include "context.hpp"
#include "nodus/process.hpp"

namespace nodus::io {

void put_chars(std::string_view text) {
  if (runtime::ctx_if() == nullptr) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return;
  }
  send(group_leader(), Request{std::string(text)});
}

void puts(std::string_view text) {
  std::string line;
  line.reserve(text.size() + 1);
  line.append(text).push_back('\n');
  if (runtime::ctx_if() == nullptr) {
    put_chars(line);
    return;
  }
  send(group_leader(), Request{std::move(line)});
}

}  // namespace nodus::io
