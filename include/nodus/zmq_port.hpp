// ZeroMQ ports (docs/zmq-ports.md): a process owns a libzmq socket of any pattern; what the
// socket receives arrives in the owner's mailbox as a ZmqMessage, and the owner (or a process
// it hands the port to) sends through it. As Erlang's ports: the port is linked to its owner
// (it closes when the owner exits; its failure is the owner's exit signal), and its flow
// control is `active` (deliver as messages come, at most `budget` undelivered... unhandled at
// once), `active(N)` / `once` (deliver N, then wait to be asked), or passive (`recv`).
//
//   Port p = zmq_port::open(zmq_port::Type::pull, {.bind = {"tcp://127.0.0.1:5557"}}).value();
//   ZmqMessage m = co_await receive<ZmqMessage>();      // m.parts: the message's frames
//   co_await zmq_port::send(out, {"result", "42"});     // suspends while the socket is full
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nodus/error.hpp"
#include "nodus/node.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

class Mailbox;

namespace zmq_port {

enum class Type { pair, pub, sub, req, rep, dealer, router, pull, push };

/// How what the socket receives reaches the owner.
enum class Flow {
  active,   ///< as it comes, while fewer than `budget` delivered messages are unhandled
  counted,  ///< only as many as granted (`active(port, n)`; `once` grants one); then the socket
            ///< holds the rest and its high-water mark pushes back on the sender
  passive,  ///< only what `recv` asks for
};

struct Options {
  std::vector<std::string> bind;     ///< endpoints to bind (`tcp://127.0.0.1:5557`, `ipc://...`)
  std::vector<std::string> connect;  ///< endpoints to connect to
  std::vector<std::string> subscribe;  ///< SUB: prefixes (an empty string: everything)
  Flow flow = Flow::active;
  std::uint32_t budget = 1000;  ///< active: delivered messages not yet handled, at most
  std::uint32_t grant = 0;      ///< counted: messages granted from the start
  int sndhwm = 1000, rcvhwm = 1000;  ///< ZMQ_SNDHWM / ZMQ_RCVHWM (messages)
  int linger_ms = 0;                 ///< ZMQ_LINGER at close
  int reconnect_ivl_ms = 100;        ///< ZMQ_RECONNECT_IVL
  std::string identity;              ///< ZMQ_ROUTING_ID (DEALER, REQ, ROUTER peers see it)
  /// Messages waiting in the port for the socket to take them, at most; past it a sender
  /// suspends (a thread blocks; send_nosuspend says false).
  std::uint32_t send_queue = 1000;
  /// CURVE: this end's keys, as nodus's CURVE mode reads them (`load_curve(key_file,
  /// allow_dir)`, the files of `--curve-key` / `--curve-allow`). With `curve_server_key`
  /// empty the port is a CURVE server: a peer gets in only with a public key listed in
  /// `curve->allowed` (a ZAP handler on the port thread checks each one; a refusal is logged
  /// with the peer's address and the peer never reaches the owner). With it, the port is a
  /// client of that server; a server that refuses its key ends the port with
  /// `{curve_refused, Endpoint}`, the owner's exit signal.
  std::optional<CurveOptions> curve;
  std::string curve_server_key;  ///< client: the server's public key (Z85, or a .pub file)
};

/// The handle: copyable; the owner (or any process it is given to) sends with it.
struct Port {
  std::uint64_t id = 0;
  Pid owner;  ///< the process that opened it
  Pid proc;   ///< the port's own process, linked to the owner
  friend bool operator==(const Port&, const Port&) = default;
};

/// Opens a socket owned by the calling process (or Mailbox thread). Errors (a bad endpoint, an
/// address in use, an option libzmq refuses) come back with libzmq's text.
Expected<Port> open(Type type, Options opts);

/// The endpoints the port bound, as libzmq resolved them (a `tcp://127.0.0.1:*` bind gives
/// its port here).
std::vector<std::string> bound(const Port& p);

/// counted flow: `n` more messages may be delivered (`once`: one).
void active(const Port& p, std::uint32_t n);
inline void once(const Port& p) { active(p, 1); }

/// Queues `parts` (one message, multipart) for the socket; suspends the caller while the
/// port's send queue is full. Fails (nodus::Error) if the port is closed.
Async<void> send(Port p, std::vector<std::string> parts);
/// From a plain thread (a Mailbox owner): blocks while the send queue is full.
void send(Mailbox& mb, const Port& p, std::vector<std::string> parts);
/// Sends unless that would wait: false (nothing sent) while the send queue is full.
bool send_nosuspend(const Port& p, std::vector<std::string> parts);

/// Closes the socket (the owner only). What it still held for sending goes into the socket as
/// far as the socket takes it at once, then libzmq delivers for `linger_ms`. At the Runtime's
/// end a port waits for room up to `linger_ms` (docs/zmq-ports.md, Sending).
void close(const Port& p);

}  // namespace zmq_port

namespace zmq_port {
struct PortState;
}
}  // namespace nodus
#include "nodus/detail/zmq_port.hpp"  // the hooks this header's templates use
namespace nodus {

/// What a port delivers to its owner: the frames of one message (for a ROUTER, the peer's
/// routing id first). Handling it (destroying it) gives the active flow its credit back.
struct ZmqMessage {
  zmq_port::Port port;
  std::vector<std::string> parts;
  detail::PortToken token;

  ZmqMessage() = default;
  ZmqMessage(zmq_port::Port p, std::vector<std::string> frames, detail::PortToken t = {}) noexcept
      : port(p), parts(std::move(frames)), token(std::move(t)) {}
  ZmqMessage(ZmqMessage&&) noexcept = default;
  ZmqMessage(const ZmqMessage&) = default;
  ZmqMessage& operator=(ZmqMessage o) noexcept {  // what this held is given back as o goes
    std::swap(port, o.port);
    parts.swap(o.parts);
    std::swap(token, o.token);
    return *this;
  }
  ~ZmqMessage() { token.release(parts); }
};

namespace zmq_port {
/// passive flow: the next message within `timeout` (nullopt if none came).
Async<std::optional<ZmqMessage>> recv(Port p, std::chrono::milliseconds timeout);
}  // namespace zmq_port

}  // namespace nodus

NODUS_API_END
