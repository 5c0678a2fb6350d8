// The channel ownership protocol (channel.hpp).
#include "channel.hpp"

#include "runtime/process.hpp"
#include "runtime/trace.hpp"
#include <algorithm>
#include <chrono>

#include "codec.hpp"
#include "wire.hpp"

namespace nodus::dist {

void Channel::give_to_io() {
  io_owns = true;
  if (!staged.empty()) {
    pending_bytes += staged.size();
    enq_total += staged.size();
    pending.push_back(std::move(staged));
    staged = std::string();
  }
}

bool Channel::submit(std::string& batch, bool stage, bool* newly_staged) {
  *newly_staged = false;
  if (json) to_json_records(batch);
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
  const bool was_empty = pending.empty() && bulk.empty();
  pending_bytes += batch.size();
  enq_total += batch.size();
  if (!pending.empty() && pending.back().size() + batch.size() <= kBatchBytes) {
    pending.back() += batch;  // small batches coalesce while they wait
    batch.clear();
  } else {
    pending.push_back(std::move(batch));
    batch = std::string();
    batch.reserve(kBatchBytes + 1024);
  }
  return was_empty;
}

void Channel::use_json() {
  json = true;
  // pending batches lie end to end from out_total; a bulk message waits for the bytes queued
  // before it (`after`), which move by what the batches before that point grew or shrank
  std::vector<std::pair<std::uint64_t, std::int64_t>> moved;  // (old start, size change)
  std::uint64_t at = out_total;
  for (std::string& b : pending) {
    const std::size_t old = b.size();
    if (to_json_records(b)) moved.emplace_back(at, static_cast<std::int64_t>(b.size()) - static_cast<std::int64_t>(old));
    at += old;
  }
  std::int64_t total = 0;
  for (const auto& m : moved) total += m.second;
  pending_bytes = static_cast<std::size_t>(static_cast<std::int64_t>(pending_bytes) + total);
  enq_total = static_cast<std::uint64_t>(static_cast<std::int64_t>(enq_total) + total);
  for (Bulk& b : bulk) {
    std::int64_t shift = 0;
    for (const auto& m : moved) {
      if (m.first < b.after) shift += m.second;
    }
    b.after = static_cast<std::uint64_t>(static_cast<std::int64_t>(b.after) + shift);
    const std::size_t old = b.record.size() - b.offset + b.trailer.size();
    if (b.offset == 0) to_json_record(b.record);
    to_json_records(b.trailer);
    bulk_bytes = bulk_bytes - old + (b.record.size() - b.offset + b.trailer.size());
  }
}

std::string encode_fragment(std::uint64_t id, std::string_view record, std::size_t offset) {
  const std::size_t n = std::min(kFragmentBytes, record.size() - offset);
  std::string f;
  f.reserve(4 + 26 + n);
  const auto len = static_cast<std::uint32_t>(26 + n);
  for (int i = 0; i < 4; ++i) f.push_back(static_cast<char>((len >> (8 * i)) & 0xff));  // the record's length
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::fragment));
  w.u64(id);
  w.u64(offset);
  w.u64(record.size());
  w.bytes(record.substr(offset, n));
  return f;
}

std::uint64_t Channel::add_bulk(std::string record, bool* wake) {
  const bool was_idle = !io_owns || (pending.empty() && bulk.empty());
  give_to_io();
  if (json) to_json_record(record);
  const std::uint64_t id = next_bulk++;
  bulk_bytes += record.size();
  bulk.push_back(Bulk{id, std::move(record), 0, enq_total, {}, nullptr, 0});
  *wake = was_idle;
  return id;
}

Channel::Bulk* Channel::find_bulk(std::uint64_t id) {
  for (Bulk& b : bulk) {
    if (b.id == id) return &b;
  }
  return nullptr;
}

bool Channel::add_trailer(std::uint64_t id, std::string& batch) {
  Bulk* b = find_bulk(id);
  if (b == nullptr) return false;
  if (json) to_json_records(batch);
  b->trailer += batch;
  bulk_bytes += batch.size();
  batch.clear();
  return true;
}

Connection::Put Channel::put_fragment(bool* done_one) {
  Bulk& b = bulk.front();
  const std::string f = encode_fragment(b.id, b.record, b.offset);
  const Connection::Put put = conn->put(f);
  if (put == Connection::Put::none) return put;
  const std::size_t n = std::min(kFragmentBytes, b.record.size() - b.offset);
  b.offset += n;
  bulk_bytes -= n;
  if (b.offset < b.record.size()) return put;
  // the last fragment went: then what its sender sent after it, then its sender goes on
  Connection::Put tail = Connection::Put::all;
  if (!b.trailer.empty()) {
    bulk_bytes -= b.trailer.size();
    tail = conn->put(b.trailer);
    if (tail == Connection::Put::none) {  // a high-water mark: it leaves first, next time
      pending_bytes += b.trailer.size();
      enq_total += b.trailer.size();
      pending.push_front(std::move(b.trailer));
      tail = Connection::Put::part;  // (stop here: POLLOUT)
    }
  }
  if (b.holder) runtime::release_held(b.holder, b.holder_ident);
  bulk_done = b.id;
  bulk.pop_front();
  *done_one = true;
  return put == Connection::Put::part ? put : tail;
}

bool Channel::drain() {
  if (conn == nullptr) return false;
  if (!conn->flush()) {  // the socket is full: POLLOUT
    release_if_drained();
    return false;
  }
  if (state == down) return false;
  bool bulk_finished = false;
  while (!pending.empty() || !bulk.empty()) {
    // a pending batch and a fragment in turn; a bulk message's last fragment waits until what
    // was queued before it has gone
    Connection::Put put;
    if (!pending.empty()) {
      const std::string& b = pending.front();
      put = conn->put(b);
      if (put != Connection::Put::none) {
        pending_bytes -= b.size();
        out_total += b.size();
        pending.pop_front();
      }
      if (put == Connection::Put::all && !bulk.empty()) {
        const Bulk& f = bulk.front();
        const bool last = f.record.size() - f.offset <= kFragmentBytes;
        if (!last || out_total >= f.after) put = put_fragment(&bulk_finished);
      }
    } else {
      put = put_fragment(&bulk_finished);
    }
    if (put != Connection::Put::all) {  // the socket is full (or a high-water mark): POLLOUT
      if (bulk_finished) drained.notify_all();
      release_if_drained();
      return false;
    }
  }
  if (bulk_finished) drained.notify_all();
  state = up;
  io_owns = false;
  release_if_drained();
  return true;
}

std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Channel::over_budget() {
  if (!busy && queued() > high) {
    busy = true;
    add(counters->busy_episodes, 1);
    counters->busy_since.store(steady_now_ns(), std::memory_order_relaxed);
  }
  return busy;
}

void Channel::release_if_drained() {
  if (busy && (state == down || queued() <= low)) release();
}

void Channel::release() {
  if (busy) {
    const std::int64_t since = counters->busy_since.exchange(0, std::memory_order_relaxed);
    if (since != 0) {
      counters->busy_ns.store(counters->busy_ns.load(std::memory_order_relaxed) + (steady_now_ns() - since),
                              std::memory_order_relaxed);
    }
  }
  busy = false;
  for (const auto& h : held) {
    // a sender whose large message is still going stays held until it is all gone
    const bool in_bulk = std::any_of(bulk.begin(), bulk.end(), [&](const Bulk& b) {
      return b.holder == h.first && b.holder_ident == h.second;
    });
    if (!in_bulk) runtime::release_held(h.first, h.second);
  }
  held.clear();
  drained.notify_all();
}

std::size_t Channel::fail() {
  state = down;
  conn = nullptr;
  const std::size_t dropped = pending_bytes + staged.size() + bulk_bytes;
  pending.clear();
  pending_bytes = 0;
  staged.clear();
  for (Bulk& b : bulk) {
    if (b.holder) runtime::release_held(b.holder, b.holder_ident);
  }
  bulk.clear();
  bulk_bytes = 0;
  drained.notify_all();  // threads waiting for a bulk message to go
  return dropped;
}

}  // namespace nodus::dist
