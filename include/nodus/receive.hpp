// Selective receive: `co_await receive<T>(...)` takes the first matching message, in arrival
// order, leaving the others in the mailbox, as Erlang's receive does.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>

#include "nodus/message.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

using Clock = std::chrono::steady_clock;

}  // namespace nodus
#include "nodus/detail/receive.hpp"  // the hooks this header's templates use
namespace nodus {

/// Waits for the first message of type `T` (Term for atoms, numbers, strings, tuples...).
template <class T>
auto receive() {
  return detail::ReceiveAwaiter<T, detail::Always, false>(detail::Always{});
}
/// Waits for the first `T` for which `pred(const T&)` is true.
template <class T, class Pred>
  requires std::is_invocable_r_v<bool, Pred, const T&>
auto receive(Pred pred) {
  return detail::ReceiveAwaiter<T, Pred, false>(std::move(pred));
}
/// Like receive<T>(), giving up after `timeout` (Erlang's `after`): nullopt on timeout.
/// A zero timeout only looks at what is already in the mailbox.
template <class T, class Rep, class Period>
auto receive(std::chrono::duration<Rep, Period> timeout) {
  return detail::ReceiveAwaiter<T, detail::Always, true>(
      detail::Always{}, std::chrono::duration_cast<Clock::duration>(timeout));
}
template <class T, class Pred, class Rep, class Period>
  requires std::is_invocable_r_v<bool, Pred, const T&>
auto receive(Pred pred, std::chrono::duration<Rep, Period> timeout) {
  return detail::ReceiveAwaiter<T, Pred, true>(
      std::move(pred), std::chrono::duration_cast<Clock::duration>(timeout));
}


/// The oldest message of any type.
inline auto receive_any() { return receive<Message>(); }
/// The oldest message for which `pred(const MessageRef&)` is true.
template <class Pred>
auto receive_any(Pred pred) {
  return receive<Message>(std::move(pred));
}
template <class Rep, class Period>
auto receive_any(std::chrono::duration<Rep, Period> timeout) {
  return receive<Message>(timeout);
}

/// Suspends the process for `d` without taking any message (`receive after D -> ok end`).
/// The mailbox is not scanned (as Erlang compiles a receive with no clauses), so a sleep takes
/// its time however many messages are queued or keep arriving.
template <class Rep, class Period>
auto sleep_for(std::chrono::duration<Rep, Period> d) {
  return detail::SleepAwaiter(std::chrono::duration_cast<Clock::duration>(d));
}

/// Lets other runnable processes run (bodies are cooperative: a long loop should yield).
inline detail::YieldAwaiter yield() { return {}; }

}  // namespace nodus

NODUS_API_END
