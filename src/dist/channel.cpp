// The channel ownership protocol (channel.hpp).
#include "channel.hpp"

#include "../runtime/process.hpp"
#include "../runtime/trace.hpp"
#include "wire.hpp"

namespace nodus::dist {

void Channel::give_to_io() {
  io_owns = true;
  if (!staged.empty()) {
    pending_bytes += staged.size();
    pending.push_back(std::move(staged));
    staged = std::string();
  }
}

bool Channel::submit(std::string& batch, bool stage, bool* newly_staged) {
  *newly_staged = false;
  if (!io_owns) {
    if (stage && staged.size() + batch.size() < kBatchBytes) {
      staged += batch;
      batch.clear();
      *newly_staged = !dirty;
      dirty = true;
      return false;
    }
    // ours to use: straight onto the connection, after what is staged (as one message, unless
    // together they would be too big for one)
    if (!staged.empty() && staged.size() + batch.size() > kMaxRecord) {
      bool wake = hand_over(staged);
      staged.clear();
      return hand_over(batch) || wake;
    }
    if (!staged.empty()) {
      staged += batch;
      batch.swap(staged);
      staged.clear();
    }
  }
  return hand_over(batch);
}

bool Channel::flush_staged() {
  dirty = false;
  if (staged.empty() || state == down) {
    staged.clear();
    return false;
  }
  return hand_over(staged);
}

bool Channel::hand_over(std::string& batch) {
  if (io_owns || conn == nullptr) return queue(batch);  // not ours: the I/O thread sends it later
  switch (conn->put(batch)) {
    case Connection::Put::all:
      batch.clear();
      NODUS_MARK(zmq_sent);
      return false;
    case Connection::Put::part:  // taken; the rest waits in the connection for the socket
      batch.clear();
      give_to_io();
      return true;
    case Connection::Put::none: break;  // a high-water mark: it waits here, in order
  }
  return queue(batch);
}

bool Channel::queue(std::string& batch) {
  give_to_io();  // (already so, unless a sender found the socket full)
  const bool was_empty = pending.empty();
  pending_bytes += batch.size();
  if (!was_empty && pending.back().size() + batch.size() <= kBatchBytes) {
    pending.back() += batch;  // small batches coalesce while they wait
    batch.clear();
  } else {
    pending.push_back(std::move(batch));
    batch = std::string();
    batch.reserve(kBatchBytes + 1024);
  }
  return was_empty;
}

bool Channel::drain() {
  if (conn == nullptr) return false;
  if (!conn->flush()) {  // the socket is full: POLLOUT
    release_if_drained();
    return false;
  }
  if (state == down) return false;
  while (!pending.empty()) {
    const std::string& b = pending.front();
    const Connection::Put put = conn->put(b);
    if (put == Connection::Put::none) {  // a high-water mark: POLLOUT
      release_if_drained();
      return false;
    }
    pending_bytes -= b.size();
    pending.pop_front();
    if (put == Connection::Put::part) {  // in the connection; POLLOUT
      release_if_drained();
      return false;
    }
  }
  state = up;
  io_owns = false;
  release_if_drained();
  return true;
}

bool Channel::over_budget() {
  if (!busy && queued() > high) {
    busy = true;
    ++busy_episodes;
  }
  return busy;
}

void Channel::release_if_drained() {
  if (busy && (state == down || queued() <= low)) release();
}

void Channel::release() {
  busy = false;
  for (auto& [p, ident] : held) runtime::release_held(p, ident);
  held.clear();
  drained.notify_all();
}

std::size_t Channel::fail() {
  state = down;
  conn = nullptr;
  const std::size_t dropped = pending_bytes + staged.size();
  pending.clear();
  pending_bytes = 0;
  staged.clear();
  return dropped;
}

}  // namespace nodus::dist
