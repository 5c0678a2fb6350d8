// A mailbox for a plain thread (main, a test, a shell): it gets a pid, can be sent to, linked
// and monitored, and blocks in receive with a timeout.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/receive.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace runtime {
struct Process;
}

/// While it lives, the owning thread is a process: `self()` is its pid and spawn_link, link,
/// monitor work from that thread. Not thread-safe: use it from the thread that created it.
/// If a linked process dies abnormally and this mailbox does not trap exits, the next receive
/// throws ProcessExit with that reason (the thread "dies" as a process would).
class Mailbox {
 public:
  Mailbox();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  Pid pid() const { return pid_; }

  /// The oldest `T` (matching `pred` if given), or nullopt after `timeout`.
  template <class T, class Rep, class Period>
  std::optional<T> receive(std::chrono::duration<Rep, Period> timeout) {
    return receive<T>(detail::Always{}, timeout);
  }
  template <class T, class Pred, class Rep, class Period>
  std::optional<T> receive(Pred pred, std::chrono::duration<Rep, Period> timeout) {
    return take<T>(std::move(pred), std::chrono::duration_cast<Clock::duration>(timeout), false);
  }
  /// receive(pred, timeout) for the reply to a request sent since the last receive returned:
  /// messages earlier receives left in the mailbox are not looked at (they cannot be it).
  template <class T, class Pred, class Rep, class Period>
  std::optional<T> receive_reply(Pred pred, std::chrono::duration<Rep, Period> timeout) {
    return take<T>(std::move(pred), std::chrono::duration_cast<Clock::duration>(timeout), true);
  }
  /// The oldest message of any type, or nullopt after `timeout`.
  template <class Rep, class Period>
  std::optional<Message> receive_any(std::chrono::duration<Rep, Period> timeout) {
    return receive<Message>(timeout);
  }

  /// Takes every message now in the mailbox, oldest first (Erlang's flush()).
  std::vector<Message> flush();
  /// flush(), printing each message on its own line to stdout like the Erlang shell, and
  /// returning the printed text.
  std::string flush_print();

  bool trap_exit(bool on);

 private:
  void wait(detail::Receiver& r);
  template <class T, class Pred>
  std::optional<T> take(Pred pred, Clock::duration timeout, bool after_saved) {
    detail::ReceiveAwaiter<T, Pred, true> r(std::move(pred), timeout, after_saved);
    wait(r);
    return r.await_resume();
  }
  runtime::Process* p_;
  Pid pid_;
  bool dead_ = false;
  runtime::Process* previous_;
};

}  // namespace nodus

NODUS_API_END
