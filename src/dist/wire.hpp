// Frame layouts of the node-to-node protocol (docs/PROTOCOL.md). A ZeroMQ message carries one
// or more records, each [u32 length, little-endian][frame]; a frame is [version u8][op u8][body].
// The ROUTER side sees [routing id][records].
#pragma once

#include <cstddef>
#include <cstdint>

namespace nodus::dist {

inline constexpr std::uint8_t kWireVersion = 2;
/// Frames larger than this are refused by ZeroMQ itself (ZMQ_MAXMSGSIZE): the connection drops.
inline constexpr std::int64_t kMaxFrame = 64 << 20;
/// The largest record (and batch of records) a node sends: a ZMTP message with room for the
/// CURVE box around it stays within kMaxFrame.
inline constexpr std::size_t kMaxRecord = static_cast<std::size_t>(kMaxFrame) - 256;
/// The largest message (its record) that may travel in fragments, and what one connection may
/// hold of unfinished ones.
inline constexpr std::size_t kMaxMessageBytes = std::size_t(1) << 30;
/// How many fragmented messages one connection may have unfinished at once.
inline constexpr std::size_t kMaxPartials = 4096;
/// A sending thread's outbox is sent once it holds this many bytes (or its slice ends).
inline constexpr std::size_t kBatchBytes = 64 << 10;
/// In CURVE mode the handshake MACs are keyed with this instead of a cookie: the CURVE keys
/// authenticate the connection; the MACs still bind both names and nonces.
inline constexpr const char* kCurveHandshakeKey = "nodus-curve";

enum class Op : std::uint8_t {
  hello = 0x01,      ///< connector -> acceptor: str8 name, u32 creation, 16 B nonce[, u8 flags]
  challenge = 0x02,  ///< acceptor -> connector: str8 name, u32 creation, 16 B nonce, 32 B mac
  reply = 0x03,      ///< connector -> acceptor: 32 B mac
  accept = 0x04,     ///< acceptor -> connector: (empty) the connection is up
  refuse = 0x05,     ///< acceptor -> connector: str8 reason
  send_pid = 0x10,   ///< u32 creation, u32 id, u32 serial, payload
  send_name = 0x11,  ///< str8 registered name, payload
  spawn_request = 0x20,  ///< u64 request, u32 from id, u32 from serial, u8 flags (1: link),
                         ///< term group leader, str8 function, term args
  spawn_reply = 0x21,    ///< u64 request, u8 status, then u32 id, u32 serial | str8 error
  link = 0x30,       ///< term from (sender's), term to (receiver's)
  unlink = 0x31,     ///< term from, term to
  exit = 0x32,       ///< term from, term to, u8 from_link, term reason
  monitor = 0x33,    ///< term watcher (sender's), term target (receiver's), term ref
  demonitor = 0x34,  ///< term watcher, term target, term ref
  down = 0x35,       ///< term watcher (receiver's), term target (sender's), term ref, term reason
  fragment = 0x40,   ///< u64 id, u64 offset, u64 total, bytes: part of a record over 64 KiB
};

/// Payload encodings (first payload byte).
enum class Payload : std::uint8_t {
  term = 0x01,        ///< a Term (codec.hpp)
  io_request = 0x02,  ///< nodus::io::Request: str32 text (output for a group leader)
  typed = 0x03,       ///< a registered C++ type: str8 wire name, then its cereal bytes
                      ///< (nodus/wire_type.hpp) up to the end of the frame
  json = 0x04,        ///< a Term as JSON text up to the end of the frame (json.hpp)
};

/// HELLO's optional flags byte (after the nonce).
inline constexpr std::uint8_t kHelloJson = 0x01;  ///< send me Term payloads as JSON

}  // namespace nodus::dist
