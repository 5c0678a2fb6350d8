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
#include <zmq.hpp>

#include "../runtime/context.hpp"
#include "../runtime/process.hpp"
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

// Work handed to the I/O thread by other threads.
struct Command {
  enum Kind { open, connect, disconnect, spawn } kind;
  Atom node;
  std::string frame;
  std::shared_ptr<Waiter> waiter;
  std::uint64_t request = 0;  // spawn
  Pid link_from;              // spawn: the local caller
  std::uint8_t flags = 0;     // spawn: kSpawnLink | kSpawnMonitor | kSpawnAsync
  Ref ref;                    // spawn with monitor: the monitor's ref
};
inline constexpr std::uint8_t kSpawnLink = 1, kSpawnMonitor = 2;  // on the wire
inline constexpr std::uint8_t kSpawnAsync = 0x80;  // local only: answer with a SpawnReply message
/// The socket monitor events of an outbound libzmq connection that mean it is lost.
inline constexpr int kLostEvents = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;


bool valid_node_name(std::string_view n);
inline std::string host_of(std::string_view n) { return std::string(n.substr(n.find('@') + 1)); }
inline std::string short_of(std::string_view n) { return std::string(n.substr(0, n.find('@'))); }
/// Rate-limited warnings about bad input: at most one line per second per kind.
void warn_bad(const char* what, const std::string& detail);
/// A registered function, if any (node.cpp).
std::optional<RemoteFunction> find_function(std::string_view name);
/// A link/monitor control frame: two terms, an optional flag byte, more terms.
std::string control(Op op, std::initializer_list<Term> terms, int flag = -1);
/// The payload of a node that can travel (Term or io::Request); false for other types.
/// `json`: a Term goes as Payload::json (for a peer that asked for it in its HELLO).
bool encode_payload(Writer& w, detail::MsgNode* n, bool json = false);
bool can_travel(detail::MsgNode* n);
/// The next event of a socket monitor: its kind, its value and (if wanted) the endpoint; false
/// if none is waiting.
bool read_event(zmq::socket_t& mon, std::uint16_t* event, std::uint32_t* value, std::string* endpoint);
/// Why a handshake with `peer` (a node we connect to) failed, from our DEALER's monitor event.
std::string handshake_failure(std::uint16_t event, std::uint32_t value, const std::string& peer, bool curve);

// The sending half of a connection to one peer, shared by every thread that sends to it.
// Records go straight onto the peer's DEALER from the sending thread when the connection is up
// and nothing is queued; otherwise they queue in `pending`, in order, and the I/O thread owns
// the socket (polls and flushes it) until the queue is empty again. `io_owns` says who may
// touch the socket: while it is set only the I/O thread does; while it is clear only a thread
// holding `mu` does, and the I/O thread does not poll it.
struct Channel {
  std::mutex mu;
  enum State { connecting, up, down } state = connecting;
  zmq::socket_t* dealer = nullptr;  // CURVE mode: set by the I/O thread; null once down
  zmtp::Stream* stream = nullptr;   // cookie mode (native ZMTP): the same
  bool io_owns = true;              // invariant: true while state != up or pending is not empty
  std::deque<std::string> pending;  // batches of records, oldest first
  std::size_t pending_bytes = 0;
  // Records workers staged (only while !io_owns): the slices of several processes, sent as one
  // message when a worker runs out of work or after a few more slices (flush_staged). Anything
  // sent on the channel goes after them.
  std::string staged;
  bool dirty = false;               // on NodeImpl::dirty_
  std::vector<Pid> node_watchers;   // monitor_node: told {nodedown, Node} when this goes down

  enum class Put { sent, waiting, refused };
  /// With `mu` held and !io_owns: hands one message to the connection. `sent`: gone to the
  /// kernel (or to libzmq); `waiting`: taken, but part of it waits in the stream for the
  /// socket to drain (the I/O thread must own it until then); `refused` (libzmq's high-water
  /// mark): not taken.
  Put put(std::string_view batch) {
    if (stream != nullptr) return stream->send(batch) ? Put::sent : Put::waiting;
    return zmq_send(dealer->handle(), batch.data(), batch.size(), ZMQ_DONTWAIT) >= 0 ? Put::sent : Put::refused;
  }
};

class NodeImpl {
 public:
  explicit NodeImpl(NodeOptions o) : opts_(std::move(o)) {}
  ~NodeImpl() { stop(); }

  void start();
  void stop();

  // Fuzzing (tests/fuzz): a node without I/O thread or port mapper whose inbound path is fed
  // synchronously. `authenticated`: as a peer that completed the handshake.
  void start_offline();
  void fuzz_feed(std::string_view message, bool authenticated);
  void fuzz_reset();
  void enqueue(Command c);

  Atom name() const { return name_; }
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

  // Links and monitors between local processes and processes of other nodes, so that losing
  // a node can fire them with `noconnection`. Touched by process threads and the I/O thread.
  void track_link(const Pid& local, const Pid& remote) {
    std::lock_guard lock(track_mu_);
    links_.emplace(remote.node.id(), std::make_pair(local, remote));
  }
  void untrack_link(const Pid& local, const Pid& remote) {
    std::lock_guard lock(track_mu_);
    auto [b, e] = links_.equal_range(remote.node.id());
    for (auto it = b; it != e; ++it) {
      if (it->second.first == local && it->second.second == remote) {
        links_.erase(it);
        return;
      }
    }
  }
  void track_monitor(const Pid& watcher, const Pid& target, const Ref& ref) {
    std::lock_guard lock(track_mu_);
    monitors_[ref] = {watcher, target};
  }
  /// The tracked monitor `ref`, if still there, now names `target` (no longer a name).
  void retrack_monitor(const Ref& ref, const Pid& target) {
    std::lock_guard lock(track_mu_);
    if (auto it = monitors_.find(ref); it != monitors_.end()) it->second.second = target;
    name_monitors_.erase(ref);
  }
  void untrack_monitor(const Ref& ref) {
    std::lock_guard lock(track_mu_);
    monitors_.erase(ref);
    name_monitors_.erase(ref);
  }
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
  /// A monitor of `name` on another node: its DEMONITOR must name it too.
  void track_name_monitor(const Ref& ref, Atom name) {
    std::lock_guard lock(track_mu_);
    name_monitors_[ref] = name;
  }
  std::optional<Atom> name_monitor(const Ref& ref) {
    std::lock_guard lock(track_mu_);
    auto it = name_monitors_.find(ref);
    if (it == name_monitors_.end()) return std::nullopt;
    return it->second;
  }
  /// `node` is unreachable: every link to it breaks and every monitor of it fires.
  void fire_noconnection(Atom node);
  /// Sends one control frame (a link/monitor/exit signal) to `node`, in order with this
  /// thread's other records to it.
  void send_control(Atom node, const std::string& frame) {
    emit(node, [&](Writer& w) { w.bytes(frame); });
  }
  /// Appends one record to `node` (its body written by `encode`): on a worker thread into the
  /// thread's outbox, sent when the running process's slice ends (or the outbox fills up); on
  /// any other thread sent at once. Either way, records from one thread to one node keep
  /// their order, and so do those of one process (a slice never moves between threads).
  template <class Encode>
  void emit(Atom node, Encode&& encode);
  /// Sends the calling thread's outbox, if it holds anything.
  static void flush_outbox();
  /// Sends `batch` (whole records) to `node` from any thread; leaves `batch` empty. With
  /// `stage` (a worker's process left the thread), the records may wait on the channel for
  /// more to join them, until flush_staged.
  void send_records(Atom node, std::string& batch, bool stage = false);
  /// Sends what every channel has staged (a worker out of work, or every few slices).
  void flush_staged();
  /// With `ch.mu` held: `batch` goes onto the socket if the channel is ours to use, else (or
  /// if the socket refuses it) waits for the I/O thread (queue_for_io); leaves `batch` empty.
  /// True if the I/O thread must be woken.
  static bool hand_over(Channel& ch, std::string& batch);
  /// With `ch.mu` held: `batch` waits in the channel for the I/O thread, which owns the socket
  /// until the queue is empty; leaves `batch` empty. True if the I/O thread must be woken.
  static bool queue_for_io(Channel& ch, std::string& batch);
  /// An idle worker reads and handles what arrived on the ROUTER, unless the I/O thread is at
  /// it; true if anything came.
  bool poll_inbound();
  /// The channel to `node`, created (and its connection requested) if there is none.
  std::shared_ptr<Channel> channel(Atom node);
  /// monitor_node from any thread: `watcher` gets {nodedown, Node} when the connection goes
  /// (at once if it cannot be made).
  void monitor_node(Atom node, const Pid& watcher, bool on);

 private:
  // An outbound connection: our DEALER to the peer's ROUTER (a native ZMTP stream in cookie
  // mode, libzmq sockets in CURVE mode).
  struct Peer {
    std::string name;
    enum State { connecting, challenged, up } state = connecting;
    std::unique_ptr<zmq::socket_t> dealer;
    std::unique_ptr<zmq::socket_t> monitor;
    std::unique_ptr<zmtp::Stream> stream;
    bool tcp_connecting = false;  // native: connect() in progress
    Clock::time_point next_ping, pong_deadline = Clock::time_point::max();  // native heartbeats
    std::uint64_t drained_at_check = 0;  // native: stream->drained() when heartbeats last looked
    std::shared_ptr<Channel> channel;
    Nonce nonce{};
    std::uint32_t creation = 0;
    std::vector<std::shared_ptr<Waiter>> waiters;
    Clock::time_point deadline;
    std::string hint;  // why a failed handshake most likely failed (mode mismatch), if known
  };
  // An inbound connection: a peer's DEALER on our ROUTER, by routing id.
  struct Inbound {
    std::string name;
    std::uint32_t creation = 0;
    Nonce their_nonce{}, our_nonce{};
    bool authenticated = false;
    std::uint8_t flags = 0;  // HELLO's flags (kHelloJson)
    Clock::time_point since;
  };

  void loop();
  void drain_commands();
  std::size_t on_router();  // reads the ROUTER until it is empty; with io_mu_ held
  void on_router_message(const std::string& rid, std::string_view body);
  void on_dealer(Peer& p);
  /// One message on our connection to `p` (handshake answers); false once `p` is gone.
  bool on_dealer_message(Peer& p, std::string_view m);
  void on_monitor(Peer& p);
  /// The connection to `p` closed or failed its handshake (`event`/`value` as a libzmq
  /// socket monitor reports them); `p` is gone afterwards.
  void connection_lost(Peer& p, std::uint16_t event, std::uint32_t value);
  // native transport (cookie mode)
  void native_listen(const std::string& host);
  Peer* native_connect(Peer& p, const std::string& endpoint, std::string* error);
  void on_native_peer(Peer& p, short revents);  // the I/O thread: its socket is ready
  std::size_t on_native_inbound();              // with io_mu_ held
  void heartbeats(Clock::time_point now, Clock::time_point* wake);
  // CURVE mode: the ZAP handler (which client keys are accepted) and refused handshakes
  void on_zap();
  void on_router_monitor();
  /// The label of an allowed key (its .pub file's name), or empty if it is not allowed.
  std::string allowed_label(std::string_view z85) const;
  /// The CURVE server key to use for `name`: from a static peer label, else the port mapper's
  /// answer. Empty with `error` set if there is none or it is not allowed.
  std::string server_key_for(const std::string& name, const std::string& from_portmapper, std::string* error) const;
  bool handle_inbound_frame(const std::string& rid, std::string_view frame, Inbound** accepted);
  void deliver_frame(Inbound& in, std::string_view frame);
  Peer* connect_peer(Atom node, std::string* error);
  void peer_down(Atom node, const std::string& why);
  void flush(Peer& p);
  void fail_channel(Atom node, const std::string& why);
  void wake_io();
  void send_raw(zmq::socket_t& s, std::string_view frame);
  /// One handshake frame on our connection to `p`.
  void send_peer(Peer& p, std::string_view frame);
  void send_router(const std::string& rid, const std::string& frame);
  void mark_up(Atom node, bool up);
  void on_spawn_request(Inbound& in, Reader& r);
  void on_control(Inbound& in, Op op, Reader& r);
  void on_spawn_reply(Reader& r);

  NodeOptions opts_;
  Atom name_;
  std::string cookie_;
  std::uint32_t creation_ = 0;
  std::uint16_t port_ = 0;
  zmq::context_t ctx_{1};
  bool native_ = false;  // cookie mode: native ZMTP (zmtp.hpp), unless $NODUS_TRANSPORT=zmq
  std::unique_ptr<zmq::socket_t> router_;
  // native: the listening socket and the accepted connections (by routing id), all under
  // io_mu_; one epoll set holds them all, so an idle worker sees any of them in one syscall
  struct InConn {
    std::unique_ptr<zmtp::Stream> stream;
    std::string rid;
    Clock::time_point since;
  };
  int listen_fd_ = -1, epfd_ = -1;
  std::unordered_map<std::string, std::unique_ptr<InConn>> in_conns_;
  std::uint32_t next_rid_ = 0;
  void close_inbound(InConn* c);
  std::unique_ptr<zmq::socket_t> router_monitor_;  // refused handshakes (both modes)
  std::unique_ptr<zmq::socket_t> zap_;             // CURVE mode: the ZAP handler
  std::string curve_public_;                       // CURVE mode: this node's public key
  std::unique_ptr<PortmapperClient> pm_;
  std::thread io_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> io_sleeping_{false};
  // The I/O thread's state and the ROUTER socket: held by the I/O thread except while it waits
  // in poll (on the ROUTER's ZMQ_FD, not the socket), and by an idle worker that reads the
  // ROUTER itself (poll_inbound), so that a message can reach its process without waking the
  // I/O thread first.
  std::mutex io_mu_;
  int router_fd_ = -1;
  std::mutex qmu_;
  std::vector<Command> queue_;
  std::mutex list_mu_;
  std::set<Atom, bool (*)(Atom, Atom)> up_{[](Atom a, Atom b) { return a.id() < b.id(); }};
  // I/O thread only
  std::map<std::uint32_t, Peer> peers_;  // by atom id
  std::unordered_map<std::string, Inbound> inbound_;
  int monitor_seq_ = 0;
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
  std::unordered_map<std::uint64_t, PendingSpawn> spawns_;  // I/O thread only
  std::mutex chan_mu_;
  std::unordered_map<std::uint32_t, std::shared_ptr<Channel>> channels_;  // by atom id
  std::mutex dirty_mu_;                                 // after a Channel::mu, never before
  std::vector<std::shared_ptr<Channel>> dirty_;         // channels with staged records
  std::mutex track_mu_;
  std::multimap<std::uint32_t, std::pair<Pid, Pid>> links_;  // remote node -> (local, remote)
  std::unordered_map<Ref, std::pair<Pid, Pid>> monitors_;    // ref -> (local watcher, remote target)
  std::unordered_map<Ref, Atom> name_monitors_;              // ref -> name, for monitors by name
  // peers that asked for JSON payloads (foreign tools); the count keeps the usual case lock-free
  std::atomic<int> json_peer_count_{0};
  std::mutex json_mu_;
  std::set<std::uint32_t> json_peers_;  // atom ids
};

/// The running node, or nullptr.
extern std::atomic<NodeImpl*> g_node;

/// Records written by a worker thread during a process slice, for one destination node.
struct Outbox {
  NodeImpl* owner = nullptr;
  Atom dest;
  std::string buf;
};
Outbox& outbox() noexcept;
bool on_worker_thread() noexcept;

template <class Encode>
void NodeImpl::emit(Atom node, Encode&& encode) {
  Outbox& o = outbox();
  if (!o.buf.empty() && (o.dest != node || o.owner != this)) flush_outbox();
  o.owner = this;
  o.dest = node;
  const std::size_t at = o.buf.size();
  o.buf.append(4, '\0');
  Writer w(o.buf);
  encode(w);
  const auto len = static_cast<std::uint32_t>(o.buf.size() - at - 4);
  std::memcpy(o.buf.data() + at, &len, 4);
  if (o.buf.size() >= kBatchBytes || !on_worker_thread()) flush_outbox();
}

}  // namespace nodus::dist
