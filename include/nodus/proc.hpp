// Coroutine types: Proc is a process body; Async<T> is a helper coroutine a body can co_await.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// The return type of a process body: `nodus::Proc worker(int n) { co_await receive<T>(); }`.
/// A body starts suspended; the runtime runs it. An exception escaping it ends the process
/// with reason `{exception, Type, What}`. Take parameters by value: they live in the frame.
class Proc {
 public:
  struct promise_type {
    std::exception_ptr error;
    /// The body's function, as the compiler names it (shown by observe::processes, `i()`).
    const char* body = nullptr;
#if defined(__GNUC__) || defined(__clang__)
    // (the default argument is evaluated in the coroutine itself: its name. __builtin_FUNCTION
    // rather than std::source_location, which clang 14 with libstdc++ 12 does not have)
    promise_type(const char* where = __builtin_FUNCTION()) noexcept : body(where) {}
#else
    promise_type() noexcept = default;
#endif
    Proc get_return_object() { return Proc(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };
  using handle = std::coroutine_handle<promise_type>;

  explicit Proc(handle h) : h_(h) {}
  Proc(Proc&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Proc& operator=(Proc&&) = delete;
  ~Proc() {
    if (h_) h_.destroy();
  }
  /// Hands the frame over (to the runtime).
  handle release() { return std::exchange(h_, {}); }

 private:
  handle h_;
};

/// A lazily started child coroutine returning `T`, awaited from a Proc or another Async:
/// `Async<int> ask(Pid p) { ...; co_return n; }` then `int n = co_await ask(p);`.
/// Receives inside it suspend the whole process, as a nested function call would in Erlang.
template <class T = void>
class Async {
 public:
  struct promise_base {
    std::coroutine_handle<> continuation;
    std::exception_ptr error;
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct Final {
      bool await_ready() noexcept { return false; }
      template <class P>
      std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
        return h.promise().continuation;
      }
      void await_resume() noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };
  struct promise_value : promise_base {
    std::optional<T> value;
    template <class U>
    void return_value(U&& u) {
      value.emplace(std::forward<U>(u));
    }
  };
  struct promise_void : promise_base {
    void return_void() noexcept {}
  };
  struct promise_type : std::conditional_t<std::is_void_v<T>, promise_void, promise_value> {
    Async get_return_object() { return Async(handle::from_promise(*this)); }
  };
  using handle = std::coroutine_handle<promise_type>;

  explicit Async(handle h) : h_(h) {}
  Async(Async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Async& operator=(Async&&) = delete;
  ~Async() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
    h_.promise().continuation = caller;
    return h_;
  }
  T await_resume() {
    auto& p = h_.promise();
    if (p.error) std::rethrow_exception(p.error);
    if constexpr (!std::is_void_v<T>) return std::move(*p.value);
  }

 private:
  handle h_;
};

}  // namespace nodus

NODUS_API_END
