// The implementation hooks of nodus/message.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/message.hpp at the point they are
// needed; not an interface of its own: include nodus/message.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {

struct MsgNode;

/// What a mailbox node is: an ordinary message, a signal the runtime acts on, or a message
/// still in its wire encoding (EncodedNode), decoded by the receiving process itself.
enum class NodeKind : std::uint8_t { message, exit_signal, encoded };

/// Per-type table: one static instance per message type; its address is the type's identity.
struct TypeInfo {
  std::string_view name;
  NodeKind kind;
  void (*destroy)(MsgNode*) noexcept;
  std::string (*print)(const MsgNode*);
};

/// Node memory: per-thread caches handed between threads in batches (node_alloc.cpp).
void* node_alloc(std::size_t size);
void node_free(void* p, std::size_t size) noexcept;

/// A mailbox node: intrusive link, type, and the identity of the process it was delivered to
/// (a node that reaches a recycled control block is recognised and dropped). The value follows
/// in TypedNode<T>.
struct MsgNode {
  explicit MsgNode(const TypeInfo* ti = nullptr) : type(ti) {}
  std::atomic<MsgNode*> next{nullptr};
  const TypeInfo* type;
  std::uint64_t stamp = 0;
};

template <class T>
struct TypedNode final : MsgNode {
  template <class... A>
  explicit TypedNode(const TypeInfo* ti, A&&... a) : MsgNode(ti), value(std::forward<A>(a)...) {}
  static void* operator new(std::size_t n) { return node_alloc(n); }
  static void operator delete(void* p, std::size_t n) noexcept { node_free(p, n); }
  T value;
};

/// A message from another node, still encoded: the bytes follow the header in the same
/// allocation. The receiving process's thread calls `decode` when the node reaches its
/// mailbox scan, so decoding (and the allocations of the decoded value) happen on the thread
/// that will also free them, and in parallel across workers. `decode` returns the decoded
/// node, or nullptr for malformed bytes (the message is dropped; the decoder logs it).
struct EncodedNode final : MsgNode {
  using Decode = MsgNode* (*)(const EncodedNode*);
  Decode decode;
  std::uint32_t size;
  std::uint32_t from = 0;  ///< the sending node (an atom id), for what its bytes may cost it
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }

  static EncodedNode* make(const TypeInfo* ti, Decode d, const char* data, std::uint32_t size, std::uint32_t from = 0) {
    void* mem = node_alloc(sizeof(EncodedNode) + size);
    auto* n = new (mem) EncodedNode(ti, d, size);
    n->from = from;
    std::memcpy(reinterpret_cast<char*>(n + 1), data, size);
    return n;
  }
  static void destroy(MsgNode* n) noexcept {
    auto* e = static_cast<EncodedNode*>(n);
    const std::size_t total = sizeof(EncodedNode) + e->size;
    e->~EncodedNode();
    node_free(e, total);
  }

 private:
  EncodedNode(const TypeInfo* ti, Decode d, std::uint32_t n) : MsgNode(ti), decode(d), size(n) {}
};

template <class T>
void destroy_node(MsgNode* n) noexcept {
  delete static_cast<TypedNode<T>*>(n);
}

template <class T>
std::string print_value(const T& v) {
  if constexpr (std::is_same_v<T, Term>) {
    return v.to_string();
  } else if constexpr (requires(std::ostream& os) { os << v; }) {
    std::ostringstream os;
    os << v;
    return os.str();
  } else {
    return "#" + std::string(type_name<T>()) + "<>";
  }
}

template <class T>
std::string print_node(const MsgNode* n) {
  return print_value(static_cast<const TypedNode<T>*>(n)->value);
}

template <class T, NodeKind K = NodeKind::message>
inline constexpr TypeInfo type_info_v{type_name<T>(), K, &destroy_node<T>, &print_node<T>};

/// Values that travel as a dynamic Term rather than as their own C++ type.
template <class T>
concept TermLike = std::is_same_v<T, Term> || std::is_same_v<T, Atom> || std::is_same_v<T, Pid> ||
                   std::is_same_v<T, Ref> || std::is_arithmetic_v<T> ||
                   std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view> ||
                   std::is_same_v<T, const char*> || std::is_same_v<T, char*> ||
                   (std::is_array_v<T> && std::is_same_v<std::remove_extent_t<T>, const char>);

/// Builds the node for `send(pid, v)`: term-like values become a Term, anything else is moved
/// into a node of its own type.
template <class V>
MsgNode* make_node(V&& v) {
  using T = std::remove_cvref_t<V>;
  if constexpr (TermLike<std::decay_t<V>> || TermLike<T>) {
    return new TypedNode<Term>(&type_info_v<Term>, Term(std::forward<V>(v)));
  } else {
    return new TypedNode<T>(&type_info_v<T>, std::forward<V>(v));
  }
}

}  // namespace detail

}  // namespace nodus

NODUS_API_END
