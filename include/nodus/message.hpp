// Messages in a mailbox: typed C++ values moved (not copied, not serialized) into one node.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <cstring>
#include <new>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "nodus/term.hpp"
#include "nodus/type_name.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {
}  // namespace nodus
#include "nodus/detail/message.hpp"  // the hooks this header's templates use
namespace nodus {

/// A borrowed view of a message (for predicates).
class MessageRef {
 public:
  explicit MessageRef(const detail::MsgNode* n) : node_(n) {}
  /// True if the message holds a `T` (Term for atoms, numbers, strings, pids, tuples...).
  template <class T>
  bool is() const {
    return node_ != nullptr && node_->type == &detail::type_info_v<T>;
  }
  /// The value; throws std::bad_cast if the message is not a `T`.
  template <class T>
  const T& get() const {
    if (!is<T>()) throw std::bad_cast();
    return static_cast<const detail::TypedNode<T>*>(node_)->value;
  }
  std::string_view type_name() const { return node_ ? node_->type->name : std::string_view(); }
  /// Printed value: Erlang syntax for terms, operator<< when the type has one.
  std::string to_string() const { return node_ ? node_->type->print(node_) : std::string(); }
  /// At most `max_bytes` of it, then "..." (a Term is printed no further than that).
  std::string to_string(std::size_t max_bytes) const;

 protected:
  const detail::MsgNode* node_;
};

/// An owned message taken out of a mailbox (`receive_any`, `flush`). Move-only.
class Message : public MessageRef {
 public:
  Message() : MessageRef(nullptr) {}
  explicit Message(detail::MsgNode* n) : MessageRef(n) {}
  Message(Message&& o) noexcept : MessageRef(std::exchange(o.node_, nullptr)) {}
  Message& operator=(Message&& o) noexcept {
    if (this != &o) {
      reset();
      node_ = std::exchange(o.node_, nullptr);
    }
    return *this;
  }
  ~Message() { reset(); }

  explicit operator bool() const { return node_ != nullptr; }
  template <class T>
  T& get() {
    return const_cast<T&>(MessageRef::get<T>());
  }
  template <class T>
  const T& get() const {
    return MessageRef::get<T>();
  }
  /// Moves the value out.
  template <class T>
  T take() {
    return std::move(get<T>());
  }

 private:
  void reset() {
    if (node_) node_->type->destroy(const_cast<detail::MsgNode*>(node_));
    node_ = nullptr;
  }
};

}  // namespace nodus

NODUS_API_END
