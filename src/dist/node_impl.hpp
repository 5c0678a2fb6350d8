// The node's internals, shared by node_io.cpp (sockets, connections), node_frames.cpp (what
// each frame means) and node.cpp (the public API). Private to src/dist.
#pragma once

#include "nodus/node.hpp"


#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "runtime/observe_parts.hpp"
#include "runtime/context.hpp"
#include "runtime/process.hpp"
#include "channel.hpp"
#include "frames.hpp"
#include "peer_links.hpp"
#include "codec.hpp"
#include "handshake.hpp"
#include "nodus/io.hpp"
#include "nodus/log.hpp"
#include "nodus/process.hpp"
#include "portmapper.hpp"
#include "wire.hpp"
#include "zmtp.hpp"

namespace nodus::dist {

using Clock = std::chrono::steady_clock;

struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  std::string error;
  Pid pid;  // spawn requests: the new process
  void finish_spawn(const Pid& p) {
    {
      std::lock_guard lock(mu);
      if (done) return;
      done = true;
      ok = true;
      pid = p;
    }
    cv.notify_all();
  }
  void finish(bool success, std::string why = {}) {
    {
      std::lock_guard lock(mu);
      if (done) return;
      done = true;
      ok = success;
      error = std::move(why);
    }
    cv.notify_all();
  }
};

// net_kernel:monitor_nodes: the processes told of every nodeup and nodedown (they may
// subscribe before a Node exists).
extern std::mutex g_node_watchers_mu;
extern std::vector<Pid> g_node_watchers;

// Work handed to the I/O thread by other threads.
struct Command {
  enum Kind { open, connect, disconnect, spawn, resolved } kind;
  Atom node;
  std::string frame;          // spawn: the request; resolved: the endpoint ("" if it failed)
  std::shared_ptr<Waiter> waiter;
  std::uint64_t request = 0;  // spawn
  Pid link_from;              // spawn: the local caller
  std::uint8_t flags = 0;     // spawn: kSpawnLink | kSpawnMonitor | kSpawnAsync
  Ref ref;                    // spawn with monitor: the monitor's ref
  std::string key, error;     // resolved: the port mapper's CURVE key, or why the lookup failed
};
inline constexpr std::uint8_t kSpawnLink = frames::kLinkFlag, kSpawnMonitor = frames::kMonitorFlag;  // on the wire
inline constexpr std::uint8_t kSpawnAsync = 0x80;  // local only: answer with a SpawnReply message

inline std::string host_of(std::string_view n) { return std::string(n.substr(n.find('@') + 1)); }
inline std::string short_of(std::string_view n) { return std::string(n.substr(0, n.find('@'))); }
/// An endpoint whose host needs no lookup (an IPv4 address or localhost).
bool numeric_endpoint(std::string_view ep);
/// Rate-limited warnings about bad input ("dropped WHAT: DETAIL"), as nodus::log_limited.
void warn_bad(const char* what, const std::string& detail);
/// A decode on this thread was refused a new atom (the network atom budget): logs it and
/// disconnects `node`, the sender; true if so.
bool atom_budget_spent(Atom node);
/// A registered function, if any (node.cpp).
std::optional<RemoteFunction> find_function(std::string_view name);
/// The payload of a node that can travel (Term or io::Request); false for other types.
/// `json`: a Term goes as Payload::json (for a peer that asked for it in its HELLO).
bool encode_payload(Writer& w, detail::MsgNode* n, bool json = false);
bool can_travel(detail::MsgNode* n);

/// Who sent a frame: the peer node of the connection it came on.
struct PeerRef {
  Atom node;
  std::uint32_t creation = 0;
  std::string_view name() const { return node.name(); }
};

class NodeImpl {
 public:
  explicit NodeImpl(NodeOptions o) : opts_(std::move(o)) {}
  ~NodeImpl() {
    stop();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  void start();
  void stop();

  // Fuzzing (tests/fuzz): a node without I/O thread or port mapper whose inbound path is fed
  // synchronously. `authenticated`: as a peer that completed the handshake.
  void start_offline();
  void fuzz_feed(std::string_view message, bool authenticated);
  void fuzz_reset();
  void enqueue(Command c);
  /// A spawn request to a node whose connection is up, sent from the calling thread (in order
  /// with its other records) when nothing waits in the I/O thread's queue and io_mu_ is free:
  /// no wake-up of the I/O thread per remote spawn. Else enqueues it as before.
  void send_spawn(Command c);

  Atom name() const { return name_; }
  /// What the gateway checks a client with: the cookie (cookie mode) or the CURVE server side.
  const std::string& cookie() const { return cookie_; }
  std::shared_ptr<const zmtp::Curve> curve_server() const { return curve_server_; }
  std::uint32_t creation() const { return creation_; }
  std::uint16_t port() const { return port_; }
  std::vector<Atom> connected() {
    std::lock_guard lock(list_mu_);
    return {up_.begin(), up_.end()};
  }
  /// Sends message `n` (which can travel; the caller still owns it) to remote `to` / to
  /// `name` registered on `node`.
  void post_send(const Pid& to, detail::MsgNode* n);
  void post_send_name(Atom name, Atom node, detail::MsgNode* n);
  std::uint64_t next_request() { return next_request_.fetch_add(1) + 1; }

  // Links and monitors between local processes and processes of other nodes (peer_links.hpp).
  void track_link(const Pid& local, const Pid& remote) { links_.link(local, remote); }
  void untrack_link(const Pid& local, const Pid& remote) { links_.unlink(local, remote); }
  void track_monitor(const Pid& watcher, const Pid& target, const Ref& ref) { links_.monitor(watcher, target, ref); }
  void retrack_monitor(const Ref& ref, const Pid& target) { links_.retarget(ref, target); }
  void untrack_monitor(const Ref& ref) { links_.demonitor(ref); }
  /// True if `node` asked (in its HELLO or CHALLENGE) for Term payloads as JSON.
  bool wants_json(Atom node) {
    if (json_peer_count_.load(std::memory_order_relaxed) == 0) return false;  // the usual case
    std::lock_guard lock(json_mu_);
    return json_peers_.count(node.id()) != 0;
  }
  void set_json_peer(Atom node, bool on) {
    std::lock_guard lock(json_mu_);
    if (on) {
      json_peers_.insert(node.id());
    } else {
      json_peers_.erase(node.id());
    }
    json_peer_count_.store(static_cast<int>(json_peers_.size()), std::memory_order_relaxed);
  }
  void track_name_monitor(const Ref& ref, Atom name) { links_.monitor_name(ref, name); }
  std::optional<Atom> name_monitor(const Ref& ref) { return links_.name_of(ref); }
  /// `node` is unreachable: every link to it breaks and every monitor of it fires.
  void fire_noconnection(Atom node);
  /// Sends one control frame (a link/monitor/exit signal) to `node`, in order with this
  /// thread's other records to it.
  void send_control(Atom node, const std::string& frame) {
    if (frame.empty()) return;  // (control() refused it)
    emit(node, [&](Writer& w) { w.bytes(frame); });
  }
  /// Appends one record to `node` (its body written by `encode`): on a worker thread into the
  /// thread's outbox, sent when the running process's slice ends (or the outbox fills up); on
  /// any other thread sent at once. Either way, records from one thread to one node keep
  /// their order, and so do those of one process (a slice never moves between threads).
  /// `data`: the record is a message (it counts for the send budget; control frames never
  /// hold their sender).
  template <class Encode>
  void emit(Atom node, Encode&& encode, bool data = false);
  /// Sends the calling thread's outbox, if it holds anything.
  static void flush_outbox();
  /// Sends `batch` (whole records) to `node` from any thread; leaves `batch` empty. With
  /// `stage` (a worker's process left the thread), the records may wait on the channel for
  /// more to join them, until flush_staged.
  /// With `data` (the batch holds messages), a channel over its send budget holds the sender
  /// (a process at its next suspension point; a plain thread here, until it drains).
  void send_records(Atom node, std::string& batch, bool stage = false, bool data = false, std::size_t records = 1);
  /// send_nosuspend: would a message to `node` now wait on its send budget?
  bool busy(Atom node);
  /// A record over kFragmentBytes (without its length prefix): queued whole on the channel and
  /// written in fragments between other records; the sending process is held (a plain thread
  /// waits) until it is all written, and what it sends meanwhile follows it.
  void send_large(Atom node, std::string record);
  /// May a record to `node` from this thread go in fragments? (Not to a JSON peer, which
  /// reads whole records; not from the node's own threads, which must never wait.)
  bool may_fragment(Atom node) { return !wants_json(node) && !runtime::on_internal_thread(); }
  /// Sends what every channel has staged (a worker out of work, or every few slices).
  void flush_staged();
  /// An idle worker reads and handles what arrived, unless another thread is at it; true if
  /// anything came.
  bool poll_inbound();
  /// No idle worker polls the input any more: wakes the I/O thread if it left it to them.
  void pollers_gone();
  /// The channel to `node`, created (and its connection requested) if there is none.
  std::shared_ptr<Channel> channel(Atom node);
  /// monitor_node from any thread: `watcher` gets {nodedown, Node} when the connection goes
  /// (at once if it cannot be made).
  void monitor_node(Atom node, const Pid& watcher, bool on);
  /// observe::stats: the peers and connection events.
  void fill_stats(observe::Stats& s);

 private:
  // One connection to another node (docs/PROTOCOL.md section 2): ours (we connected, a ZMTP
  // DEALER) or theirs (accepted, we answer as a ROUTER). Once its handshake is done it is the
  // pair's one connection and carries both directions. All of it is under io_mu_, except the
  // stream's output, which is under its channel's mutex once `channel` is set.
  struct Conn {
    std::uint64_t id = 0;
    std::unique_ptr<zmtp::Stream> stream;
    Handshake hs;
    Atom peer;                         // ours: whom we call; theirs: once its HELLO came
    std::shared_ptr<Channel> channel;  // ours: at once; theirs: once up
    bool up = false;
    bool tcp_connecting = false;       // ours: connect() in progress
    bool closed = false;               // closed (in graveyard_): ignore events still seen for it
    std::string addr;                  // the peer's address, for logs
    std::string hint;                  // why a failed handshake most likely failed, if known
    std::uint32_t ip = 0;              // theirs: the peer's IPv4 address (network order)
    bool counted = false;              // theirs: counts among the handshakes in progress
    Clock::time_point since, next_ping, last_heard;
    std::uint64_t heard = 0, drained_at = 0;  // stream->received() / drained() when last looked
    // large messages arriving in fragments: id -> what came so far (bounded: kMaxPartials of
    // them, kMaxMessageBytes of declared totals in all)
    struct Partial {
      std::string bytes;
      std::uint64_t total;
    };
    std::unordered_map<std::uint64_t, Partial> partial;
    std::size_t partial_bytes = 0;
    Conn(Handshake h) : hs(std::move(h)) {}
    bool ours() const { return hs.role() == Handshake::Role::connector; }
  };
  // A peer node: its connection (in handshake or up) and who waits for it.
  struct Peer {
    Conn* conn = nullptr;  // null while its address is looked up or after it said it calls us
    bool up = false;
    std::vector<std::shared_ptr<Waiter>> waiters;
    Clock::time_point deadline;  // not up by then: no connection
  };

  void loop();
  void drain_commands();
  /// Reads every connection that has input (and accepts new ones); with io_mu_ held.
  std::size_t on_inbound();
  void accept_all();
  /// One ZMTP message on `c`; false once `c` is closed.
  bool on_message(Conn& c, std::string_view m);
  /// A handshake frame on `c`; false once `c` is closed.
  bool on_handshake_frame(Conn& c, std::string_view frame);
  /// Theirs: its HELLO came; which connection of the pair goes on. False if `c` was refused.
  bool on_hello(Conn& c);
  void became_up(Conn& c);
  /// `c` closed, failed or timed out: the pair's connection is lost (or could not be made).
  void conn_lost(Conn& c, const std::string& why);
  /// Why a connection closed before it was up, from its stream (mechanism mismatch, refused
  /// CURVE key...); logs it once.
  std::string handshake_failure(Conn& c);
  void close_conn(Conn& c);
  void listen(const std::string& host);
  /// Starts a connection to `node` at `endpoint` (tcp://HOST:PORT); false + error if it cannot.
  bool start_connect(Atom node, const std::string& endpoint, const std::string& mapper_key, std::string* error);
  void on_resolved(Command& c);
  void resolver_loop();
  void heartbeats(Clock::time_point now, Clock::time_point* wake);
  /// One handshake frame on `c` (under the channel's lock once it has one).
  void write_frame(Conn& c, std::string_view frame);
  /// I/O thread, the socket is writable: what waits in the stream, then the channel's queue.
  void flush_conn(Conn& c);
  /// The label of an allowed key (its .pub file's name), or empty if it is not allowed.
  std::string allowed_label(std::string_view z85) const;
  /// The CURVE server key to use for `name`: from a static peer label, else the port mapper's
  /// answer. Empty with `error` set if there is none or it is not allowed.
  std::string server_key_for(const std::string& name, const std::string& from_portmapper, std::string* error) const;
  /// Opens (or finds) the connection to `node`; nullptr + error if it cannot be tried at all.
  Peer* open_peer(Atom node, std::string* error);
  void deliver_frame(const PeerRef& from, std::string_view frame);
  /// A FRAGMENT record on `c`: kept until its message is whole, then delivered.
  void on_fragment(Conn& c, const PeerRef& from, std::string_view frame);
  void peer_down(Atom node, const std::string& why);
  /// Returns the failed channel, whose held senders the caller lets go (release) once the
  /// peer's links and monitors fired.
  std::shared_ptr<Channel> fail_channel(Atom node, const std::string& why);
  /// Lets the senders a failed channel held go (after the peer's links and monitors fired).
  void release_senders(const std::shared_ptr<Channel>& ch);
  void wake_io();
  /// The eventfd write that ends the I/O thread's wait.
  void nudge_io();
  void mark_up(Atom node, bool up);
  void on_spawn_request(const PeerRef& from, Reader& r);
  void on_control(const PeerRef& from, Op op, Reader& r);
  void on_spawn_reply(const PeerRef& from, Reader& r);

  NodeOptions opts_;
  Atom name_;
  std::string cookie_;
  std::uint32_t creation_ = 0;
  std::uint16_t port_ = 0;
  std::shared_ptr<zmtp::Curve> curve_server_;  // CURVE mode: how we accept
  std::string curve_public_;                   // CURVE mode: this node's public key (Z85)
  std::unique_ptr<PortmapperClient> pm_;
  std::thread io_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> io_sleeping_{false};
  // The I/O thread waits without the connections' input (idle workers poll it): set before it
  // looks at runtime::g_inbound_pollers, so a last poller that leaves meanwhile sees it.
  std::atomic<bool> io_skips_inbound_{false};
  // The I/O thread waits for io_mu_: poll_inbound lets it have it rather than try for it.
  std::atomic<bool> io_wants_{false};
  // The connections and the peer table: held by the I/O thread except while it waits in poll,
  // and by an idle worker that reads the connections itself (poll_inbound), so that a message
  // can reach its process without waking the I/O thread first.
  std::mutex io_mu_;
  int listen_fd_ = -1, epfd_ = -1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> graveyard_;  // closed; freed by the I/O thread between polls
  std::uint64_t next_conn_ = 0;
  std::map<std::uint32_t, Peer> peers_;  // by atom id
  // theirs, in handshake, whose HELLO named a node that is not an atom yet (on_hello)
  std::unordered_map<std::string, Conn*> unnamed_;
  // accepted connections in their handshake: in all, and by IPv4 address
  std::size_t handshaking_ = 0;
  std::unordered_map<std::uint32_t, std::size_t> handshaking_from_;
  int spare_fd_ = -1;  // closed to accept (and close) a connection when out of descriptors
  void uncount(Conn& c);
  std::mutex qmu_;
  std::vector<Command> queue_;
  std::mutex list_mu_;
  std::set<Atom, bool (*)(Atom, Atom)> up_{[](Atom a, Atom b) { return a.id() < b.id(); }};
  // port mapper lookups run on their own thread: no thread that serves connections waits on
  // the network
  std::thread resolver_;
  std::mutex rmu_;
  std::condition_variable rcv_;
  std::deque<Atom> lookups_;
  std::atomic<std::uint64_t> next_request_{0};
  struct PendingSpawn {
    Atom node;
    std::shared_ptr<Waiter> waiter;  // a blocked thread, unless kSpawnAsync
    Pid caller;
    std::uint8_t flags = 0;
    Ref ref;
  };
  /// Completes a spawn request: links/monitors first, then the caller learns the pid (or why
  /// not).
  void finish_spawn(std::uint64_t req, const PendingSpawn& ps, const Pid& pid, const std::string& error);
  std::unordered_map<std::uint64_t, PendingSpawn> spawns_;  // under io_mu_
  std::mutex chan_mu_;
  std::unordered_map<std::uint32_t, std::shared_ptr<Channel>> channels_;  // by atom id
  std::size_t dist_buffer_ = kDefaultDistBuffer;  // each channel's budget (NodeOptions)
  std::atomic<std::uint64_t> held_total_{0};      // senders the budget held (observability)
  // observability: per peer, kept across its channels (under chan_mu_); connection events
  std::unordered_map<std::uint32_t, std::shared_ptr<PeerCounters>> peer_counters_;
  std::atomic<std::uint64_t> conns_up_{0}, conns_down_{0}, refused_{0};
  std::mutex reasons_mu_;
  std::vector<std::pair<std::string, std::uint64_t>> down_reasons_;  // at most kMaxReasons
  void count_down(const std::string& why);
  void count_refused() { refused_.fetch_add(1, std::memory_order_relaxed); }
  std::mutex dirty_mu_;                                 // after a Channel::mu, never before
  std::vector<std::shared_ptr<Channel>> dirty_;         // channels with staged records
  PeerLinks links_;
  // peers that asked for JSON payloads (foreign tools); the count keeps the usual case lock-free
  std::atomic<int> json_peer_count_{0};
  std::mutex json_mu_;
  std::set<std::uint32_t> json_peers_;  // atom ids
  // fuzzing: a connection with no socket
  std::unique_ptr<Conn> fuzz_conn_;
};

/// Set while send_nosuspend sends: its message does not count for holding the sender.
extern thread_local bool tl_nosuspend;
/// The large message the process running on this thread just queued (send_large): what it
/// sends until it leaves the thread becomes that message's trailer.
struct BulkMark {
  std::shared_ptr<Channel> ch;
  std::uint64_t id = 0;
  Atom node;
  const void* process = nullptr;
};
extern thread_local BulkMark tl_bulk_mark;

/// The running node, or nullptr. Threads other than the node's own reach it through NodeUse.
extern std::atomic<NodeImpl*> g_node;

/// The running node (or nullptr), held for the length of a call into it from a worker or any
/// other thread (a runtime hook, the public API): ~Node frees the node only once every
/// NodeUse that found it has ended (wait_node_unused). Cheap (two stores to this thread's own
/// slot); nests. Never wait for the network inside one: ~Node would wait too.
class NodeUse {
 public:
  NodeUse();
  ~NodeUse();
  NodeUse(const NodeUse&) = delete;
  NodeUse& operator=(const NodeUse&) = delete;
  NodeImpl* get() const { return node_; }
  NodeImpl* operator->() const { return node_; }
  explicit operator bool() const { return node_ != nullptr; }

 private:
  std::atomic<int>* depth_;
  NodeImpl* node_;
};
/// Waits until no thread is inside a NodeUse (g_node is null by then, so none starts again
/// on the old node).
void wait_node_unused();

/// Records written by a worker thread during a process slice, for one destination node.
struct Outbox {
  NodeImpl* owner = nullptr;
  Atom dest;
  std::string buf;
  bool data = false;  // holds a message (not only control frames)
  std::size_t records = 0;  // in buf (observability)
};
Outbox& outbox() noexcept;
bool on_worker_thread() noexcept;

template <class Encode>
void NodeImpl::emit(Atom node, Encode&& encode, bool data) {
  Outbox& o = outbox();
  if (!o.buf.empty() && (o.dest != node || o.owner != this)) flush_outbox();
  o.owner = this;
  o.dest = node;
  std::size_t at = o.buf.size();
  o.buf.append(4, '\0');
  Writer w(o.buf);
  encode(w);
  if (!w.ok()) {  // a field longer than the wire allows: never sent cut
    o.buf.resize(at);
    warn_bad("message", "to " + std::string(node.name()) + ": a name longer than 255 bytes cannot travel");
    return;
  }
  const std::size_t record = o.buf.size() - at;
  if (record - 4 > kFragmentBytes && record - 4 <= kMaxMessageBytes && may_fragment(node)) {
    std::string rec = o.buf.substr(at + 4);
    o.buf.resize(at);
    flush_outbox();  // what this thread sent before goes first
    send_large(node, std::move(rec));
    return;
  }
  if (record > kMaxRecord) {  // the peer would refuse the ZMTP message and drop the connection
    o.buf.resize(at);
    warn_bad("message", "to " + std::string(node.name()) + ": " + std::to_string(record) +
                            " bytes is over the largest message a node takes (" + std::to_string(kMaxRecord) +
                            " bytes); not sent");
    return;
  }
  if (o.buf.size() > kMaxRecord) {  // with what was batched before it, too big for one message
    std::string rec = o.buf.substr(at);
    o.buf.resize(at);
    flush_outbox();
    o.owner = this;
    o.dest = node;
    o.buf = std::move(rec);
    at = 0;
  }
  o.data |= data;
  ++o.records;
  const auto len = static_cast<std::uint32_t>(o.buf.size() - at - 4);
  for (int i = 0; i < 4; ++i) o.buf[at + i] = static_cast<char>((len >> (8 * i)) & 0xff);  // little-endian
  // the record waits in the outbox: the slice's end must send it. (Set here, after the
  // flushes above: a flush for another destination clears the flag, and a record to a second
  // node in one slice then stayed in the outbox until the thread's next remote send.)
  runtime::tl_remote_pending = true;
  if (o.buf.size() >= kBatchBytes || !on_worker_thread()) flush_outbox();
}

}  // namespace nodus::dist
