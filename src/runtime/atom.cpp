// The process-wide atom table. Reading an atom's name is lock-free (names live in chunks that
// are published once and never move); interning takes a lock only on a thread-cache miss.
#include <stdexcept>
#include "nodus/atom.hpp"

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

namespace nodus {
namespace {

constexpr std::uint32_t kChunkBits = 12;
constexpr std::uint32_t kChunk = 1u << kChunkBits;
constexpr std::uint32_t kMaxChunks = 4096;  // 16M atoms

struct AtomTable {
  std::shared_mutex mu;  // guards `ids` and `count`
  std::unordered_map<std::string_view, std::uint32_t> ids;
  std::uint32_t count = 0;
  std::array<std::atomic<std::string*>, kMaxChunks> chunks{};

  AtomTable() { add(std::string_view()); }  // id 0 is ''

  // Under the unique lock.
  std::uint32_t add(std::string_view text) {
    const std::uint32_t id = count;
    std::string* chunk = chunks[id >> kChunkBits].load(std::memory_order_relaxed);
    if (chunk == nullptr) {
      chunk = new std::string[kChunk];
      chunks[id >> kChunkBits].store(chunk, std::memory_order_release);
    }
    chunk[id & (kChunk - 1)] = std::string(text);
    ids.emplace(chunk[id & (kChunk - 1)], id);
    ++count;
    return id;
  }
};

AtomTable& table() {
  static AtomTable* t = new AtomTable;  // never destroyed: atoms outlive static destructors
  return *t;
}

// A small per-thread cache of recent interning results (decoders intern the same few atoms
// over and over).
struct CacheEntry {
  const std::string* name = nullptr;
  std::uint32_t id = 0;
};
thread_local std::array<CacheEntry, 256> t_cache{};

}  // namespace

Atom::Atom(std::string_view text) {
  if (text.size() > kMaxAtomBytes) {  // Erlang's system_limit: a wire field holds at most this
    throw std::length_error("atom longer than " + std::to_string(kMaxAtomBytes) + " bytes");
  }
  auto& slot = t_cache[std::hash<std::string_view>{}(text) & 255];
  if (slot.name != nullptr && *slot.name == text) {
    id_ = slot.id;
    return;
  }
  auto& t = table();
  bool found = false;
  {
    std::shared_lock lock(t.mu);
    if (auto it = t.ids.find(text); it != t.ids.end()) {
      id_ = it->second;
      found = true;
    }
  }
  if (!found) {
    std::unique_lock lock(t.mu);
    auto it = t.ids.find(text);
    id_ = it != t.ids.end() ? it->second : t.add(text);
  }
  const std::string* chunk = t.chunks[id_ >> kChunkBits].load(std::memory_order_acquire);
  slot = {&chunk[id_ & (kChunk - 1)], id_};
}

std::optional<Atom> Atom::find(std::string_view text) {
  if (text.size() > kMaxAtomBytes) return std::nullopt;
  auto& slot = t_cache[std::hash<std::string_view>{}(text) & 255];
  if (slot.name != nullptr && *slot.name == text) return from_id(slot.id);
  auto& t = table();
  std::uint32_t id = 0;
  {
    std::shared_lock lock(t.mu);
    auto it = t.ids.find(text);
    if (it == t.ids.end()) return std::nullopt;
    id = it->second;
  }
  // cached, as the constructor does: decoders look the same few atoms up over and over
  const std::string* chunk = t.chunks[id >> kChunkBits].load(std::memory_order_acquire);
  slot = {&chunk[id & (kChunk - 1)], id};
  return from_id(id);
}

namespace detail {
namespace {
std::atomic<std::size_t> g_network_budget{100000};
std::atomic<std::size_t> g_network_made{0};
thread_local bool t_budget_hit = false;
}  // namespace

std::optional<Atom> network_atom(std::string_view text) {
  if (text.size() > kMaxAtomBytes) return std::nullopt;
  if (auto a = Atom::find(text)) return a;
  auto& t = table();
  std::unique_lock lock(t.mu);
  if (auto it = t.ids.find(text); it != t.ids.end()) return Atom::from_id(it->second);
  if (g_network_made.load(std::memory_order_relaxed) >= g_network_budget.load(std::memory_order_relaxed) ||
      t.count >= kMaxChunks * kChunk - 1) {
    t_budget_hit = true;
    return std::nullopt;
  }
  g_network_made.fetch_add(1, std::memory_order_relaxed);
  return Atom::from_id(t.add(text));
}

void set_network_atom_budget(std::size_t n) { g_network_budget.store(n, std::memory_order_relaxed); }
std::size_t network_atom_budget() { return g_network_budget.load(std::memory_order_relaxed); }
std::size_t atom_count() {
  auto& t = table();
  std::shared_lock lock(t.mu);
  return t.count;
}
std::size_t network_atoms() { return g_network_made.load(std::memory_order_relaxed); }
bool take_atom_budget_hit() { return std::exchange(t_budget_hit, false); }
}  // namespace detail

std::string_view Atom::name() const {
  // an Atom with this id was made after its name was stored (and reached this thread through
  // some synchronisation), so the chunk is published and the string no longer changes
  const std::string* chunk = table().chunks[id_ >> kChunkBits].load(std::memory_order_acquire);
  return chunk[id_ & (kChunk - 1)];
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
