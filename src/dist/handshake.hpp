// Cookie resolution and the challenge/response MACs. The cookie never goes on the wire: each
// side proves it knows it with an HMAC-SHA256 over both nonces and both names.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wire.hpp"

namespace nodus::dist {

using Nonce = std::array<std::uint8_t, 16>;
using Mac = std::array<std::uint8_t, 32>;

/// `explicit_cookie` if not empty, else $NODUS_COOKIE, else ~/.nodus.cookie (created with 20
/// random letters and mode 0400 on first use, as Erlang does). nullopt + `error` on failure.
std::optional<std::string> resolve_cookie(const std::string& explicit_cookie, std::string* error);

Nonce make_nonce();

/// The accepting side's proof (sent in CHALLENGE) and the connecting side's (sent in REPLY).
/// Distinct labels, so one can never be replayed as the other.
Mac acceptor_mac(std::string_view cookie, const Nonce& connector_nonce, const Nonce& acceptor_nonce,
                 std::string_view connector, std::string_view acceptor);
Mac connector_mac(std::string_view cookie, const Nonce& connector_nonce, const Nonce& acceptor_nonce,
                  std::string_view connector, std::string_view acceptor);
/// Constant-time comparison.
bool mac_equal(const Mac& a, std::string_view b);

}  // namespace nodus::dist

namespace nodus::dist {

/// name@host, at most 255 bytes, one '@' with something on both sides.
bool valid_node_name(std::string_view n);

/// The nodus handshake of wire protocol 2 on one connection (docs/PROTOCOL.md section 4), as a
/// state machine with no socket: frames in, frames out. The connector sends HELLO; the
/// acceptor answers CHALLENGE (its proof and its nonce); the connector checks it and answers
/// REPLY (its proof); the acceptor checks that and answers ACCEPT. Either side may REFUSE.
/// Which connection of a pair survives (two nodes connecting at once, a peer that reconnects)
/// is not its business: on HELLO the acceptor's owner decides (challenge() or refuse()).
class Handshake {
 public:
  enum class Role { connector, acceptor };
  /// What a frame did. `frames` are to be sent, in order, before anything else on the
  /// connection (even when the handshake failed: the other side then logs the refusal too).
  struct Step {
    enum Kind {
      wait,          ///< nothing decided yet
      hello,         ///< acceptor: HELLO came (peer(), peer_creation(), peer_flags()); call
                     ///< challenge() or refuse()
      up,            ///< the connection is authenticated both ways
      refused,       ///< the peer refused us (`why`), or we refused it (`why`, and `frames`)
      simultaneous,  ///< connector: the peer keeps its own connection to us, in progress
      bad,           ///< malformed or unexpected input (`why`); the connection is to be closed
    } kind = wait;
    std::vector<std::string> frames;
    std::string why;
  };
  /// REFUSE codes (u8, before the reason text).
  enum Code : std::uint8_t { kRefused = 0, kSimultaneous = 1, kVersion = 2 };

  /// `cookie`: the shared secret that keys both MACs; `flags`: our HELLO/CHALLENGE flags
  /// (kHelloJson). A connector knows whom it calls (`peer`).
  Handshake(Role role, std::string self, std::uint32_t creation, std::string cookie, std::uint8_t flags,
            std::string peer = {});

  Role role() const { return role_; }
  /// Connector: the HELLO that opens the connection.
  std::string hello();
  /// Feeds one frame (a record's bytes).
  Step on_frame(std::string_view frame);
  /// Acceptor, after Step::hello: go on (the CHALLENGE frame to send) ...
  std::string challenge();
  /// ... or refuse the connection (the REFUSE frame to send).
  static std::string refuse(Code code, std::string_view why);
  bool done() const { return state_ == State::up; }
  const std::string& peer() const { return peer_; }
  std::uint32_t peer_creation() const { return peer_creation_; }
  std::uint8_t peer_flags() const { return peer_flags_; }

 private:
  enum class State { start, hello_sent, hello_seen, challenged, up, over };
  Step bad(std::string why);
  std::string introduce(Op op);
  Role role_;
  std::string self_, cookie_;
  std::uint32_t creation_;
  std::uint8_t flags_;
  std::string peer_;
  std::uint32_t peer_creation_ = 0;
  std::uint8_t peer_flags_ = 0;
  Nonce ours_{}, theirs_{};
  State state_ = State::start;
};

}  // namespace nodus::dist
