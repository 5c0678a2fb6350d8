// Distribution: this OS process as a named node (`kate@localhost`) that exchanges messages
// with other nodes over ZeroMQ's wire (ZMTP), gated by a shared cookie.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nodus/atom.hpp"
#include "nodus/error.hpp"
#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// CURVE mode (docs/security.md): every connection is encrypted and authenticated with
/// ZeroMQ's CURVE; only peers whose public keys are listed are accepted (and connected to).
struct CurveOptions {
  /// This node's secret key, Z85 (40 characters).
  std::string secret_key;
  /// Accepted public keys (Z85), each with a node name it may use: `kate@hostB` (that node
  /// only) or `kate` (kate on any host). A key bound to several names has one entry per name.
  /// From a .pub file: the names listed on the lines after the key, else the file's name
  /// without `.pub`. A node refuses a peer whose key is not bound to the name it claims, and
  /// connects to `kate` only with a key bound to kate (a static peer's key is the one bound
  /// to its name).
  std::vector<std::pair<std::string, std::string>> allowed;
};

/// Reads `--curve-key FILE` (a secret key file only its owner can read) and `--curve-allow
/// DIR_OR_FILE` (a `.pub` file, or a directory of them: the key on the first line, then
/// optionally the node names it may use, one a line; `#` starts a comment line). Throws
/// std::invalid_argument naming the file and the problem.
CurveOptions load_curve(const std::string& key_file, const std::string& allow);
/// A Z85 public key from a `.pub` file, or the key itself; std::invalid_argument if neither.
std::string read_public_key(const std::string& file_or_key);
/// The public key of a Z85 secret key.
std::string curve_public_key(const std::string& secret_z85);
bool valid_z85_key(std::string_view z85);
/// May the CURVE key `z85` be used by node `name` (name@host)? True if an `allowed` entry binds
/// it to `name` or to its short name.
bool curve_key_bound(const CurveOptions& c, std::string_view z85, std::string_view name);
/// The names `allowed` binds `z85` to, comma-separated (empty if it is not allowed).
std::string curve_key_names(const CurveOptions& c, std::string_view z85);

/// The gateway (docs/gateway.md): a ZeroMQ endpoint (a ROUTER) where any ZeroMQ client sends
/// JSON requests to this node's processes without becoming a node.
struct GatewayOptions {
  /// `tcp://ADDR:PORT` to bind (port 0: any free one; the log and node::gateway_port say it).
  std::string bind;
  /// Cookie mode binds to loopback only unless this is set (then it warns): a cookie proof is
  /// only as good as the network that carries it.
  bool allow_remote = false;
  /// Connected clients at most; more are closed as they connect (logged).
  std::size_t max_clients = 256;
  /// Bytes of one request, at most: a larger one closes the client (logged).
  std::size_t max_request = std::size_t(1) << 20;
  /// Pushed messages waiting for one client, at most. Past it the client's registered names and
  /// served functions are dropped (logged) and further pushes are counted, not kept.
  std::size_t max_queue = 1000;
  /// Requests of one client in progress at once, at most (more get an error `busy`).
  std::size_t max_pending = 1000;
  /// The gateway PINGs each client this often; one silent for three of them is gone.
  std::chrono::milliseconds heartbeat{2000};
  /// A client that has not proved itself (cookie `hello`, or the CURVE handshake) by then is closed.
  std::chrono::milliseconds hello_timeout{10000};
};

struct NodeOptions {
  /// `name@host`; the node listens on `host`, port `listen_port`.
  std::string name;
  /// Empty: $NODUS_COOKIE, else ~/.nodus.cookie (created with random content, mode 0400).
  std::string cookie;
  /// A peer silent this long is declared down (Erlang's net_ticktime; tests use about 1 s).
  std::chrono::milliseconds ticktime{60000};
  /// The port to listen on; 0: any free port (found by others through the port mapper).
  std::uint16_t listen_port = 0;
  /// 0: $NODUS_PORTMAPPER_PORT, else 4370.
  std::uint16_t portmapper_port = 0;
  /// Static peers `name@host` -> `tcp://host:port`; names not listed go to the port mapper.
  std::vector<std::pair<std::string, std::string>> peers;
  /// Register with (and start, if needed) the port mapper.
  bool use_portmapper = true;
  /// Set: CURVE mode (the cookie is not used); unset: cookie mode.
  std::optional<CurveOptions> curve;
  /// The send budget: bytes queued for one peer (not yet taken by the kernel) past which a
  /// process sending a message to it is suspended until the queue drains to half of it, and a
  /// plain thread sending blocks (Erlang's dist_buf_busy_limit, 1 MB by default too). Only
  /// senders to that peer wait; send_nosuspend returns false instead. At least 4096.
  std::size_t dist_buffer = std::size_t(1) << 20;
  /// Limits on what the network can make a node hold (docs/security.md). A connection that has
  /// not completed its handshake (authenticated) this long after it was accepted is closed,
  /// whatever it sends meanwhile.
  std::chrono::milliseconds handshake_timeout{10000};
  /// At most this many accepted connections may be in their handshake at once, and at most
  /// `max_handshakes_per_address` from one IP address; more are closed when accepted (with a
  /// log line that rate-limits itself). Connections that completed theirs do not count.
  std::size_t max_handshakes = 128;
  std::size_t max_handshakes_per_address = 32;
  /// New atoms the node takes from the network (atoms in messages, pids and node names it
  /// never saw before), in all: the atom table never shrinks, so this bounds what peers can
  /// add to it (about 100 MB at most). A peer whose message would pass it is disconnected,
  /// with a log line. Erlang's whole table holds 1,048,576 atoms and the node dies when full.
  std::size_t max_network_atoms = 100000;
  /// Set: the node also opens a gateway for ZeroMQ clients.
  std::optional<GatewayOptions> gateway;
  /// HOST:PORT (port 0: any free one): serve the node's counters for Prometheus at
  /// http://HOST:PORT/metrics (docs/observability.md). Empty: no metrics endpoint.
  std::string metrics;
};

/// Makes this OS process a distributed node. Needs a running Runtime; one Node at a time.
/// Throws std::runtime_error with the reason when it cannot start (bad name, name taken...).
/// It is found by other nodes (port mapper) as soon as it starts: register the names and
/// functions they should find first. Destroying it while processes still send to other nodes
/// is safe: it stops, and their later messages to other nodes are dropped.
class Node {
 public:
  explicit Node(NodeOptions opts);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  Atom name() const;
  /// The TCP port this node listens on.
  std::uint16_t port() const;
};

/// Erlang's Node module. Blocking calls wait at most `timeout`; call them from a thread that
/// owns a Mailbox or from a plain thread (from a process body they hold a worker meanwhile).
namespace node {
Atom self();
bool alive();
/// The port this node's gateway listens on (0: it has none).
std::uint16_t gateway_port();
/// The port this node's metrics endpoint listens on (0: it has none).
std::uint16_t metrics_port();
/// Connected, authenticated nodes.
std::vector<Atom> list();
/// Connects (and authenticates) now: the node, or a Failure saying why (code badarg: a bad
/// name or this node itself; not_alive: no Node runs here; refused: the peer refused us
/// (cookie, key, name); timeout; noconnection: not registered, not reachable, closed).
/// `text` is the reason in words, e.g. "refused: wrong cookie".
Expected<Atom> connect(Atom node, std::chrono::milliseconds timeout = std::chrono::seconds(7));
void disconnect(Atom node);
/// `pong` (true) if `node` answers and accepts our cookie, `pang` (false) otherwise.
bool ping(Atom node, std::chrono::milliseconds timeout = std::chrono::seconds(7));
/// Erlang's monitor_node: the calling process gets `{nodedown, Node}` once the connection to
/// `node` is lost, or at once if it cannot be made. `false` removes the caller's monitors of it.
void monitor(Atom node, bool on = true);
/// Erlang's net_kernel:monitor_nodes: the calling process gets `{nodeup, Node}` when a
/// connection to any node comes up and `{nodedown, Node}` when one goes; `false` stops it.
/// (A process may subscribe before this node starts distribution.)
void monitor_nodes(bool on = true);
}  // namespace node

/// A process body other nodes may start by name (C++ cannot ship closures: the name plays the
/// role of Erlang's {Module, Function}). It receives the caller's arguments as a list term.
using RemoteFunction = std::function<Proc(Term args)>;
/// Registers `f` as `name` (e.g. "Kate.say_name") on this node; replaces an earlier one.
void register_function(std::string name, RemoteFunction f);

/// A remote spawn that could not happen: no connection, unknown function, or timeout.
/// `code`: noconnection, not_found (no such function there), timeout, badarg.
struct SpawnError : Error {
  explicit SpawnError(const std::string& text, Errc c = Errc::noconnection)
      : Error(c, Term(atom(to_string(c))), text) {}
};

/// Starts `function(args)` on `node` (this node too) and returns its pid. As in Erlang, a spawn
/// that cannot happen there still returns a pid (of that node, already gone): a link gives the
/// caller an exit signal and a monitor a Down, with `noconnection` if the node cannot be reached
/// and `undef` if it has no such function (an untrapped, linked caller exits). A timeout
/// (default 7 s; Erlang has none) throws SpawnError. The new process's
/// group leader is the caller's (or `opts.group_leader`): its nodus::io output appears where
/// the caller's does, as in Erlang. Blocks the calling thread until `node` answers (from a
/// process body prefer `co_await spawn_request(...)`); throws SpawnError.
/// `opts.link` links the caller to the new process before it runs (Node.spawn_link);
/// for `opts.monitor` use spawn_monitor(node, ...) or spawn_request, which return the ref.
Pid spawn(Atom node, const std::string& function, Term args = Term::list({}),
          const SpawnOptions& opts = {}, std::chrono::milliseconds timeout = std::chrono::seconds(7));
/// Node.spawn_monitor: starts `function(args)` on `node`, monitored by the caller from before
/// it runs; the pid and the monitor's ref. Blocks like spawn(node, ...); a spawn that cannot
/// happen gives a Down (noconnection, undef) as spawn's link does. `opts.monitor` is implied;
/// `opts.link` and `opts.group_leader` apply.
std::pair<Pid, Ref> spawn_monitor(Atom node, const std::string& function, Term args = Term::list({}),
                                  SpawnOptions opts = {},
                                  std::chrono::milliseconds timeout = std::chrono::seconds(7));
/// spawn and spawn_monitor that throw SpawnError (code noconnection, not_found, timeout,
/// badarg) instead of returning a pid that is already gone.
Pid spawn_or_throw(Atom node, const std::string& function, Term args = Term::list({}),
                   const SpawnOptions& opts = {}, std::chrono::milliseconds timeout = std::chrono::seconds(7));
std::pair<Pid, Ref> spawn_monitor_or_throw(Atom node, const std::string& function, Term args = Term::list({}),
                                           SpawnOptions opts = {},
                                           std::chrono::milliseconds timeout = std::chrono::seconds(7));

/// What spawn_request started: the pid, and the monitor's ref when `opts.monitor` was set.
struct Spawned {
  Pid pid;
  Ref monitor;
};
/// Erlang's spawn_request for process bodies: `Spawned s = co_await spawn_request(node, "F",
/// args, {.link = true})` sends the request and waits for the answer in the caller's mailbox,
/// so the worker thread keeps running other processes meanwhile. Link and monitor are set up
/// before the new process runs. Throws SpawnError (no connection, unknown function, timeout;
/// a reply that arrives after the timeout is dropped, the process it names keeps running).
Async<Spawned> spawn_request(Atom node, std::string function, Term args = Term::list({}),
                             SpawnOptions opts = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(7));

}  // namespace nodus
#include "nodus/detail/node.hpp"  // the hooks this header's templates use
namespace nodus {

/// Sends to the process registered as `name` on `node` (Erlang's `{Name, Node} ! Msg`).
/// Like any send, it never fails visibly: an unknown name or a down node drops the message.
template <class M>
void send(Atom name, Atom node, M&& msg);


template <class M>
void send(Atom name, Atom node, M&& msg) {
  detail::deliver_remote_name(name, node, detail::make_node(std::forward<M>(msg)));
}

}  // namespace nodus

NODUS_API_END
