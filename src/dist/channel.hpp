// The sending half of the connection to one peer, shared by every thread that sends to it
// (docs/ARCHITECTURE.md, "Sending"). A sender writes straight onto the pair's connection when
// it is up and nothing waits; otherwise records queue here, in order, and the I/O thread owns
// the output (it polls the socket and drains the queue) until the queue is empty again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <string>
#include <vector>

#include "nodus/pid.hpp"
#include "transport.hpp"

namespace nodus::runtime {
struct Process;
}

namespace nodus::dist {

/// The send budget's default: bytes queued for one peer before its senders are suspended
/// (Erlang's dist_buf_busy_limit is 1 MB too).
inline constexpr std::size_t kDefaultDistBuffer = 1 << 20;

/// Observability: what went to and came from one peer, kept across its connections (a
/// reconnect keeps counting). Each field has one writer at a time (the outbound ones under a
/// Channel's `mu`, the inbound ones under the node's io_mu_), so a relaxed load and store
/// counts exactly; anyone may read.
struct PeerCounters {
  std::atomic<std::uint64_t> msgs_out{0}, bytes_out{0};
  std::atomic<std::uint64_t> msgs_in{0}, bytes_in{0};
  std::atomic<std::int64_t> busy_ns{0};      ///< time over the send budget, closed episodes
  std::atomic<std::int64_t> busy_since{0};   ///< steady ns when the open episode began (0: none)
  std::atomic<std::uint64_t> busy_episodes{0};
  std::atomic<std::uint64_t> ups{0}, downs{0};
};
inline void add(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
std::int64_t steady_now_ns() noexcept;

// Invariants, all under `mu`:
//  - `io_owns` is true while state != up, or pending is not empty, or the connection holds
//    bytes the socket did not take; while it is true only the I/O thread writes (drain), and a
//    sender appends to `pending`;
//  - `staged` is not empty only while !io_owns (give_to_io moves it to the end of `pending`),
//    so records leave in the order they were handed over, whoever writes them;
//  - `conn` is null unless a connection carries this channel; once the channel is down it
//    stays null (nobody writes to a closed connection) and nothing is queued any more;
//  - `bulk` (large messages, sent as fragments) is not empty only while io_owns; the I/O
//    thread writes a pending batch and a fragment in turn, so a large message delays others
//    by one fragment at most; a bulk message's last fragment leaves only once every pending
//    byte queued before it has (`after`), and its `trailer` (what its sender sent after it
//    before it could be held) right after its last fragment: one sender's records keep
//    their order;
//  - `busy` is set when queued() passes `high` after a submit and cleared when it falls to
//    `low` or the channel goes down; while it is set, every process in `held` is suspended
//    and every thread blocked on `drained` waits; clearing it lets all of them go.
struct Channel {
  std::mutex mu;
  enum State { connecting, up, down } state = connecting;
  Connection* conn = nullptr;
  bool io_owns = true;
  std::deque<std::string> pending;  // batches of records, oldest first
  std::size_t pending_bytes = 0;
  // Records workers staged (only while !io_owns): the slices of several processes, sent as one
  // message when a worker runs out of work or after a few more slices (flush_staged).
  std::string staged;
  bool dirty = false;               // on the node's list of channels with staged records
  std::vector<Pid> node_watchers;   // monitor_node: told {nodedown, Node} when this goes down
  // The send budget (docs/ARCHITECTURE.md, "Send budget").
  std::size_t high = kDefaultDistBuffer;
  std::size_t low = kDefaultDistBuffer / 2;
  bool busy = false;
  std::vector<std::pair<runtime::Process*, std::uint64_t>> held;  // suspended senders
  std::condition_variable drained;  // threads (Mailbox owners) blocked on the budget
  std::shared_ptr<PeerCounters> counters = std::make_shared<PeerCounters>();  // (the node's, per peer)
  // Large messages (over kFragmentBytes), oldest first.
  struct Bulk {
    std::uint64_t id;
    std::string record;  // the whole record (its frame), without the length prefix
    std::size_t offset = 0;
    std::uint64_t after;  // enq_total when it was queued
    std::string trailer;  // records (a batch) its sender sent after it, before it was held
    runtime::Process* holder = nullptr;  // the sending process, held until it is all written
    std::uint64_t holder_ident = 0;
  };
  std::deque<Bulk> bulk;
  std::size_t bulk_bytes = 0;        // what is left of them
  std::uint64_t bulk_done = 0;       // the id of the last one written out (ids grow)
  std::uint64_t next_bulk = 1;
  std::uint64_t enq_total = 0, out_total = 0;  // pending bytes ever queued / written
  // The peer asked for JSON payloads (a foreign tool): every batch is rewritten for it as it is
  // handed over (to_json_records), and so was what waited for its handshake (use_json).
  bool json = false;

  /// Bytes queued for the peer: staged, pending, large messages, inside the connection.
  std::size_t queued() const {
    return pending_bytes + staged.size() + bulk_bytes + (conn ? conn->buffered() : 0);
  }
  /// Queues a large message (sent in fragments, interleaved with the rest); the I/O thread owns
  /// the output from now on. Returns its id; true in `*wake`: wake the I/O thread.
  std::uint64_t add_bulk(std::string record, bool* wake);
  /// The bulk message `id` if it is still queued.
  Bulk* find_bulk(std::uint64_t id);
  /// Appends `batch` (whole records) to the trailer of bulk message `id` and empties it; false
  /// (and `batch` untouched) if that message is gone.
  bool add_trailer(std::uint64_t id, std::string& batch);
  /// After a submit: true if the channel is over its budget (sets `busy`).
  bool over_budget();
  /// Lets every held process and blocked thread go if the channel drained to `low` (or is
  /// down).
  void release_if_drained();

  /// A sender's batch (whole records; left empty). `stage`: a worker's slice that may wait in
  /// `staged` for more to join it. Returns whether the I/O thread must be woken (it now owns
  /// the output, or more came for it); `*newly_staged` says the channel must go on the dirty list.
  bool submit(std::string& batch, bool stage, bool* newly_staged);
  /// Sends what is staged (a worker out of work); true if the I/O thread must be woken.
  bool flush_staged();
  /// The I/O thread, the socket is writable or the connection just came up: writes what waits
  /// in the connection, then the queue, in order. True once all of it is gone: the output is
  /// the senders' again.
  bool drain();
  /// From now on the I/O thread writes; what is staged goes to the end of the queue first.
  void give_to_io();
  /// The connection that carries this channel from now on (null: none for now).
  void attach(Connection* c) { conn = c; }
  /// The peer's handshake asked for JSON: what is queued for it (written before anyone knew)
  /// is rewritten now, and every batch from now on.
  void use_json();
  /// The channel is down: nothing more is sent. Returns the bytes that were still queued.
  /// The senders it held go with release() (after the peer's links and monitors fired, so a
  /// released sender finds its DOWN).
  std::size_t fail();
  void release();

 private:
  /// `batch` onto the connection if the output is ours, else into the queue; true: wake the
  /// I/O thread.
  bool hand_over(std::string& batch);
  bool queue(std::string& batch);
  /// One fragment of the oldest bulk message (or its last, and its trailer, when its turn
  /// came); Put::all if it went whole.
  Connection::Put put_fragment(bool* done_one);
};

/// For a JSON peer: Term payloads of SEND_PID / SEND_NAME become JSON payloads, and the Term
/// fields of LINK, UNLINK, EXIT, MONITOR, DEMONITOR and DOWN JSON Terms (docs/PROTOCOL.md 5b).
/// `batch`: whole records with their length prefixes; `record`: one, without. False (and
/// untouched) when nothing needed it.
bool to_json_records(std::string& batch);
bool to_json_record(std::string& record);

/// A record over this size goes as fragments of it (as Erlang fragments since OTP 22).
inline constexpr std::size_t kFragmentBytes = 64 << 10;
/// A FRAGMENT record: u8 version, u8 op, u64 id, u64 offset, u64 total, then up to kFragmentBytes of the
/// message's record. Encodes the fragment of `b` at its offset.
std::string encode_fragment(std::uint64_t id, std::string_view record, std::size_t offset);

}  // namespace nodus::dist
