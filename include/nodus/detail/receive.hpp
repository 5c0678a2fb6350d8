// The implementation hooks of nodus/receive.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/receive.hpp at the point they are
// needed; not an interface of its own: include nodus/receive.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {

/// What is left until `deadline` (zero once it passed): the timeout of each wait of an
/// operation with one deadline for all its waits (multi_call, erpc's multicall, await_many).
inline std::chrono::milliseconds time_left(Clock::time_point deadline) {
  const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return d.count() > 0 ? d : std::chrono::milliseconds(0);
}

/// A pending receive, type-erased so the runtime can match messages against it while the
/// process sleeps. Lives in the waiting coroutine's frame.
struct Receiver {
  /// Null for a receive that takes nothing (sleep_for): the mailbox is not scanned for it.
  bool (*matches)(const Receiver*, const MsgNode*) = nullptr;
  MsgNode* matched = nullptr;
  bool has_deadline = false;
  bool timed_out = false;
  Clock::time_point deadline{};
  std::uint64_t timer = 0;  ///< runtime's timer id while suspended with a deadline
  std::uint64_t token = 0;  ///< identifies this receive to its timer (`timeout_fired`)
  /// What is looked for answers a request sent after the last receive returned, so none of
  /// the messages earlier receives skipped can be it: the scan starts after them (Erlang's
  /// receive marker for calls), and a call from a process with a long mailbox costs only
  /// the new arrivals.
  bool after_saved = false;
};

/// First attempt, from await_ready: true if a message matched or the timeout is already due.
bool receive_ready(Receiver& r);
/// Parks the current process until a match, a timeout or its death.
void receive_suspend(Receiver& r, std::coroutine_handle<> h);

struct Always {
  template <class V>
  bool operator()(const V&) const noexcept {
    return true;
  }
};

template <class T, class Pred, bool Timed>
class ReceiveAwaiter : public Receiver {
 public:
  explicit ReceiveAwaiter(Pred p) : pred_(std::move(p)) { matches = &match; }
  ReceiveAwaiter(Pred p, Clock::duration d, bool only_after_saved = false)
      : ReceiveAwaiter(std::move(p)) {
    has_deadline = true;
    deadline = Clock::now() + d;
    after_saved = only_after_saved;
  }
  ReceiveAwaiter(const ReceiveAwaiter&) = delete;

  bool await_ready() { return receive_ready(*this); }
  void await_suspend(std::coroutine_handle<> h) { receive_suspend(*this, h); }
  auto await_resume() -> std::conditional_t<Timed, std::optional<T>, T> {
    if constexpr (Timed) {
      if (matched == nullptr) return std::nullopt;
    }
    if constexpr (std::is_same_v<T, Message>) {
      return Message(std::exchange(matched, nullptr));
    } else {
      std::unique_ptr<TypedNode<T>> n(static_cast<TypedNode<T>*>(std::exchange(matched, nullptr)));
      return std::move(n->value);
    }
  }

 private:
  static bool match(const Receiver* r, const MsgNode* n) {
    auto* self = static_cast<const ReceiveAwaiter*>(r);
    if constexpr (std::is_same_v<T, Message>) {
      return self->pred_(MessageRef(n));
    } else {
      if (n->type != &type_info_v<T>) return false;
      return self->pred_(static_cast<const TypedNode<T>*>(n)->value);
    }
  }
  Pred pred_;
};

/// `receive after D -> ok end`: waits for its deadline only, taking no message (exit signals
/// are still acted on as they arrive).
class SleepAwaiter : public Receiver {
 public:
  explicit SleepAwaiter(Clock::duration d) {
    has_deadline = true;
    deadline = Clock::now() + d;
  }
  SleepAwaiter(const SleepAwaiter&) = delete;
  bool await_ready() { return receive_ready(*this); }
  void await_suspend(std::coroutine_handle<> h) { receive_suspend(*this, h); }
  void await_resume() const noexcept {}
};

struct YieldAwaiter {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  void await_resume() const noexcept {}
};

}  // namespace detail

namespace detail {
/// receive<T>(pred, timeout) for a reply to a request sent since the last receive returned
/// (see Receiver::after_saved): gen_server::call's wait for its reply.
template <class T, class Pred>
auto receive_reply(Pred pred, Clock::duration timeout) {
  return ReceiveAwaiter<T, Pred, true>(std::move(pred), timeout, true);
}
}  // namespace detail

}  // namespace nodus

NODUS_API_END
