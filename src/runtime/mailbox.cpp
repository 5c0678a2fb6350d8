// Mailboxes for plain threads: blocking receive on a condition variable.
#include "nodus/mailbox.hpp"

#include <cstdio>
#include <stdexcept>
#include <thread>

#include "context.hpp"
#include "nodus/process.hpp"
#include "process.hpp"
#include "spin_lock.hpp"

namespace nodus {
using runtime::Process;
using runtime::State;

namespace {
// A thread waiting in a receive looks at its mailbox this long before it sleeps: a reply that
// comes meanwhile costs no wake-up of a sleeping thread (on the 2-core VM a futex wake-up and
// the switch back cost more than a remote round trip's own work).
constexpr auto kThreadSpin = std::chrono::microseconds(100);

// true if input came before `until`
bool spin_for_input(const Process* p, Clock::time_point until) {
  for (int i = 1;; ++i) {
    runtime::cpu_relax();
    if (runtime::has_input(p)) return true;
    if ((i & 63) == 0) {
      if (Clock::now() >= until) return false;
      // with few cores, the thread that brings the reply may need this one
      if ((i & 1023) == 0) std::this_thread::yield();
    }
  }
}
}  // namespace

Mailbox::Mailbox() {
  auto& cx = runtime::ctx();
  previous_ = runtime::current();
  p_ = cx.pool.get();
  if (p_->thread_wait == nullptr) p_->thread_wait = new runtime::ThreadWait;
  runtime::prepare(p_, true, cx.io_server);
  p_->state.store(State::running, std::memory_order_relaxed);
  if (!cx.table.insert(p_)) {
    runtime::retire(p_);
    throw std::runtime_error("system_limit: too many processes");
  }
  pid_ = p_->pid();
  runtime::set_current(p_);
}

Mailbox::~Mailbox() {
  if (!dead_) runtime::terminate(p_, atoms::normal());
  runtime::set_current(previous_);
}

void Mailbox::wait(detail::Receiver& r) {
  if (dead_) throw ProcessExit{atoms::noproc()};
  p_->cursor = r.after_saved ? p_->save_tail : &p_->save_head;
  p_->pending = &r;
  for (;;) {
    const auto s = runtime::scan(p_, r);
    if (s == runtime::Scan::matched) break;
    if (s == runtime::Scan::must_exit) {
      Term reason = *p_->exit_reason;
      dead_ = true;
      runtime::terminate(p_, reason);  // the block goes back to the pool: no use of p_ after
      throw ProcessExit{std::move(reason)};
    }
    if (Clock::now() >= r.deadline) {
      r.timed_out = true;
      break;
    }
    if (runtime::push_in_flight(p_)) continue;  // a sender is mid-push: look again
    if (spin_for_input(p_, std::min(r.deadline, Clock::now() + kThreadSpin))) continue;
    p_->state.store(State::waiting, std::memory_order_seq_cst);
    if (!runtime::has_input(p_)) {
      std::unique_lock lock(p_->thread_wait->mu);
      p_->thread_wait->cv.wait_until(lock, r.deadline, [&] {
        return p_->state.load(std::memory_order_acquire) != State::waiting;
      });
    }
    p_->state.store(State::running, std::memory_order_relaxed);
  }
  p_->pending = nullptr;
}

std::vector<Message> Mailbox::flush() {
  if (dead_) return {};
  return runtime::take_all(p_);
}

std::string Mailbox::flush_print() {
  std::string out;
  for (auto& m : flush()) out += m.to_string() + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return out;
}

bool Mailbox::trap_exit(bool on) { return dead_ ? false : std::exchange(p_->trap_exit, on); }

}  // namespace nodus
