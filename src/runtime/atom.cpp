// The process-wide atom table.
#include "nodus/atom.hpp"

#include <deque>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace nodus {
namespace {

struct AtomTable {
  std::shared_mutex mu;
  std::deque<std::string> names{std::string()};  // id 0 is ''; deque keeps views stable
  std::unordered_map<std::string_view, std::uint32_t> ids{{std::string_view(), 0}};
};

AtomTable& table() {
  static AtomTable* t = new AtomTable;  // never destroyed: atoms outlive static destructors
  return *t;
}

}  // namespace

Atom::Atom(std::string_view text) {
  auto& t = table();
  {
    std::shared_lock lock(t.mu);
    if (auto it = t.ids.find(text); it != t.ids.end()) {
      id_ = it->second;
      return;
    }
  }
  std::unique_lock lock(t.mu);
  if (auto it = t.ids.find(text); it != t.ids.end()) {
    id_ = it->second;
    return;
  }
  id_ = static_cast<std::uint32_t>(t.names.size());
  t.names.emplace_back(text);
  t.ids.emplace(t.names.back(), id_);
}

std::string_view Atom::name() const {
  auto& t = table();
  std::shared_lock lock(t.mu);
  return t.names[id_];
}

namespace atoms {
#define NODUS_ATOM(fn, text)        \
  Atom fn() {                       \
    static const Atom a{text};      \
    return a;                       \
  }
NODUS_ATOM(normal, "normal")
NODUS_ATOM(kill, "kill")
NODUS_ATOM(killed, "killed")
NODUS_ATOM(noproc, "noproc")
NODUS_ATOM(noconnection, "noconnection")
NODUS_ATOM(exception, "exception")
NODUS_ATOM(timeout, "timeout")
NODUS_ATOM(ok, "ok")
NODUS_ATOM(error, "error")
NODUS_ATOM(undefined, "undefined")
#undef NODUS_ATOM
}  // namespace atoms

}  // namespace nodus
