// Mailboxes for plain threads: blocking receive on a condition variable.
#include "nodus/mailbox.hpp"

#include <cstdio>
#include <stdexcept>

#include "context.hpp"
#include "nodus/process.hpp"
#include "process.hpp"

namespace nodus {
using runtime::Process;
using runtime::State;

Mailbox::Mailbox() {
  auto& cx = runtime::ctx();
  previous_ = runtime::current();
  p_ = cx.pool.get();
  p_->alive = true;
  p_->is_thread = true;
  p_->started = true;
  p_->trap_exit = false;
  p_->exit_reason = nullptr;
  p_->save_head = nullptr;
  p_->save_tail = &p_->save_head;
  p_->cursor = &p_->save_head;
  p_->pending = nullptr;
  p_->extras = nullptr;
  p_->root = {};
  p_->group_leader = cx.io_server;
  p_->thread_wait = new runtime::ThreadWait;
  p_->state.store(State::running, std::memory_order_relaxed);
  if (!cx.table.insert(p_)) {
    delete std::exchange(p_->thread_wait, nullptr);
    cx.pool.put(p_);
    throw std::runtime_error("system_limit: too many processes");
  }
  p_->retain();  // ours: the block stays valid after the process exits
  pid_ = p_->pid();
  runtime::set_current(p_);
}

Mailbox::~Mailbox() {
  if (p_->alive) runtime::terminate(p_, atoms::normal());
  p_->release();
  runtime::set_current(previous_);
}

void Mailbox::wait(detail::Receiver& r) {
  if (!p_->alive) throw ProcessExit{atoms::noproc()};
  p_->cursor = &p_->save_head;
  p_->pending = &r;
  for (;;) {
    const auto s = runtime::scan(p_, r);
    if (s == runtime::Scan::matched) break;
    if (s == runtime::Scan::must_exit) {
      Term reason = *p_->exit_reason;
      runtime::terminate(p_, reason);
      throw ProcessExit{std::move(reason)};
    }
    if (Clock::now() >= r.deadline) {
      r.timed_out = true;
      break;
    }
    p_->state.store(State::waiting, std::memory_order_seq_cst);
    if (p_->inbox.load(std::memory_order_seq_cst) == nullptr) {
      std::unique_lock lock(p_->thread_wait->mu);
      p_->thread_wait->cv.wait_until(lock, r.deadline, [&] {
        return p_->state.load(std::memory_order_acquire) != State::waiting;
      });
    }
    p_->state.store(State::running, std::memory_order_relaxed);
  }
  p_->pending = nullptr;
}

std::vector<Message> Mailbox::flush() { return runtime::take_all(p_); }

std::string Mailbox::flush_print() {
  std::string out;
  for (auto& m : flush()) out += m.to_string() + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return out;
}

bool Mailbox::trap_exit(bool on) { return std::exchange(p_->trap_exit, on); }

}  // namespace nodus
