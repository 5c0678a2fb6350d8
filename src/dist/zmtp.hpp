// ZMTP 3.1 (rfc.zeromq.org/spec/37) with the NULL mechanism, over a non-blocking TCP socket:
// the native transport of cookie-mode nodes. It speaks what a libzmq DEALER or ROUTER speaks,
// so pyzmq and zeromq.js peers still connect, but a worker thread writes its records straight
// onto the socket and an idle worker reads them straight off it: no libzmq I/O thread (and no
// thread wake-up) between a process and the kernel. CURVE mode keeps libzmq (docs/ARCHITECTURE.md).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "transport.hpp"

namespace nodus::dist::zmtp {

inline constexpr std::size_t kGreetingSize = 64;

using Key = std::array<std::uint8_t, 32>;

/// CurveZMQ (RFC 26) as libzmq speaks it: the client knows the server's long-term public key;
/// the server accepts a client by its long-term public key (`allow`, asked once per
/// connection, after the client proved it holds that key's secret).
struct Curve {
  bool server = false;
  Key public_key{}, secret_key{};
  Key server_key{};  ///< client: the server's long-term public key
  std::function<bool(const Key& client_key)> allow;  ///< server
};
struct CurveState;  // zmtp.cpp

/// One ZMTP connection: the greeting, the NULL handshake (READY both ways), single-part
/// messages, PING/PONG. Reading (fill, next, and the flags they set) and writing (send,
/// flush...) touch separate state: one thread may read while another, holding the writer's
/// lock, writes. Owns the fd.
class Stream final : public Connection {
 public:
  /// fill: ok (bytes came; there may be more), drained (bytes came and the socket had no
  /// more: no need to try again until it is readable), again (nothing), closed, failed.
  enum class Status { ok, drained, again, closed, failed };

  /// `fd`: a connected (or connecting, see `connected`) non-blocking TCP socket.
  /// `socket_type`: what we announce ("DEALER" or "ROUTER"). `max_message`: a bigger message
  /// is a protocol error. Our greeting and READY are queued at once.
  /// `curve`: the CURVE mechanism (null: NULL).
  Stream(int fd, std::string_view socket_type, std::uint64_t max_message, bool connected,
         std::shared_ptr<const Curve> curve = nullptr);
  ~Stream() override;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int fd() const { return fd_; }

  // ---- reading (one thread at a time)

  /// Reads what the socket has (up to a bound): ok if bytes came, again if none, closed at
  /// EOF or reset, failed on a socket error.
  Status fill();
  /// The next complete message, if one is buffered (a view valid until the next fill). Handles
  /// commands on the way (READY, PING, ERROR). After a protocol error it returns false and
  /// failed() is true.
  bool next(std::string_view* message);
  /// What read found: the connection is still `open`, or `closed` (EOF, reset or a protocol
  /// error: failed() says which), or `stopped` by its caller.
  enum class Read { open, closed, stopped };
  /// Reads what the socket holds (at most `max_chunks` fills, so one connection cannot hold
  /// its reader for long) and hands each message to `on_message`, which returns false to stop
  /// (its owner is gone). The caller then serves writes_due().
  template <class F>
  Read read(int max_chunks, F&& on_message) {
    for (int i = 0; i < max_chunks; ++i) {
      const Status st = fill();
      if (st == Status::again) return Read::open;
      std::string_view m;
      while (next(&m)) {
        if (!on_message(m)) return Read::stopped;
      }
      if (failed() || st == Status::closed || st == Status::failed) return Read::closed;
      if (st == Status::drained) return Read::open;  // (level-triggered polls say if more comes)
    }
    return Read::open;
  }
  /// Bytes read so far (any sign of life from the peer).
  std::uint64_t received() const { return received_; }
  /// Handshake done: the peer's greeting and READY arrived.
  bool ready() const { return state_ == State::messages; }
  bool failed() const { return !error_.empty(); }
  /// Why the stream failed (protocol error, ERROR command).
  const std::string& error() const { return error_; }
  /// The peer's security mechanism from its greeting ("NULL", "CURVE"...), once known.
  const std::string& peer_mechanism() const { return mechanism_; }
  /// CURVE: the peer's long-term public key, once its handshake proved it (server: the
  /// client's; client: the server's).
  const Key& peer_key() const;
  /// CURVE: the handshake ended in a refusal of the client's key (a server that refused it
  /// sent ERROR; a client got ERROR).
  bool refused() const { return refused_; }
  /// A multi-part message arrived (only its last part is delivered): the caller logs it.
  bool take_multipart() { return std::exchange(multipart_, false); }
  /// Keep the parts before a message's last one (a REQ's empty delimiter, a client's routing
  /// frames): envelope() holds them for the message next() returned. At most kMaxEnvelope
  /// parts and max_message bytes in all, else a protocol error.
  void keep_envelope(bool on) { keep_envelope_ = on; }
  static constexpr std::size_t kMaxEnvelope = 16;
  const std::vector<std::string>& envelope() const { return envelope_; }
  /// The Socket-Type the peer announced in its READY ("REQ", "DEALER"...), once known.
  const std::string& peer_socket_type() const { return peer_socket_type_; }
  /// The reader saw something the writer must act on (the peer's greeting, which lets our
  /// READY and what follows leave; a PING that wants its PONG): call service().
  bool writes_due() const {
    return pong_due_ || (greeting_seen_ && blocked_) || !hs_out_.empty() ||
           (cs_ && !curve_ready_ && state_ == State::messages);
  }

  // ---- writing (under the owner's lock)

  /// The socket finished connecting (it was created connecting).
  bool connect_done();
  /// Queues one message; writes at once if nothing waits. True if nothing is left waiting;
  /// false if bytes wait for the socket to drain (flush when it is writable).
  bool send(std::string_view body);
  /// One multi-part message: the `envelope` parts, then `body` (after the handshake only:
  /// false, nothing queued, before it). Otherwise as send.
  bool send_parts(const std::vector<std::string>& envelope, std::string_view body);
  /// A PING (heartbeat), `ttl_ds` in tenths of a second.
  bool send_ping(std::uint16_t ttl_ds);
  /// Does what writes_due reported; by the reading thread, with the writer's lock.
  bool service();
  /// Writes what waits; true once nothing does (that may leave yet).
  bool flush() override;
  bool has_output() const override { return out_pos_ < out_end(); }
  std::size_t buffered() const override { return out_.size() - out_pos_; }
  /// Connection: send, as the channel sees it.
  Put put(std::string_view message) override { return send(message) ? Put::all : Put::part; }
  /// Bytes of a backlog written so far: bytes that waited because the socket was full, so
  /// the kernel took them only as the peer read (a sign of life from a busy peer). Bytes the
  /// kernel took when first offered do not count: it takes those from a frozen peer too.
  std::uint64_t drained() const { return drained_; }

 private:
  enum class State { greeting, handshake, messages };
  bool write_out();
  // libzmq (4.3) drops a connection whose READY arrives before it sent its own greeting, so
  // only our greeting leaves until the peer's has come
  std::size_t out_end() const { return blocked_ ? std::min(out_.size(), kGreetingSize) : out_.size(); }
  void fail(std::string why);
  bool command(std::string_view body);
  bool split_command(std::string_view body, std::string_view* name, std::string_view* data);
  // CURVE
  bool curve_command(std::string_view body);       // a handshake command (reader side)
  bool curve_decrypt(char* body, std::size_t size, std::string_view* message, bool* is_command);
  void curve_encrypt(std::string_view body, std::uint8_t flags);  // onto out_ (writer side)
  void queue_command(std::string_view name, std::string_view data);  // PING/PONG, either mechanism

  int fd_;
  std::uint64_t max_message_;
  bool connected_;
  // reading
  State state_ = State::greeting;
  std::unique_ptr<char[]> in_;  // [in_pos_, in_end_) unread, of in_cap_
  std::size_t in_cap_ = 0, in_pos_ = 0, in_end_ = 0;
  std::uint64_t received_ = 0;
  std::string error_;
  std::string mechanism_;
  bool multipart_ = false;
  bool in_multipart_ = false;
  bool keep_envelope_ = false;
  std::vector<std::string> parts_, envelope_;  // parts so far of the message being read; the last one's
  std::size_t parts_bytes_ = 0;
  std::string peer_socket_type_;
  bool take_part(std::string_view part);  // keep_envelope: false after a protocol error
  void part_done();
  void read_properties(std::string_view data);
  bool pong_due_ = false;
  bool refused_ = false;
  std::string hs_out_;  // CURVE handshake commands the reader produced, for service() to write
  bool greeting_seen_ = false;
  std::string pong_context_;
  // writing
  std::string out_;
  std::size_t out_pos_ = 0;
  bool write_failed_ = false;
  std::uint64_t drained_ = 0;
  std::size_t stuck_ = 0;  // bytes at the head of the output the socket did not take when offered
  bool blocked_ = true;  // until the peer's greeting came (out_end)
  // CURVE: shared keys and nonces (reader and writer parts kept apart inside)
  std::shared_ptr<const Curve> curve_;
  std::unique_ptr<CurveState> cs_;
  std::vector<std::string> early_;  // CURVE: messages sent before the handshake finished
  bool curve_ready_ = false;        // writer side: the handshake finished (early_ went out)
};

/// A ZMTP frame header for `size` bytes (`flags`: 1 more, 4 command; long size added here).
void append_header(std::string& out, std::uint64_t size, std::uint8_t flags);

}  // namespace nodus::dist::zmtp
