// One struct per frame of docs/PROTOCOL.md section 3 (after the handshake, which is
// handshake.hpp's), each with its encoding and its checked decoding in one place. `encode`
// returns the whole frame (version, op, body), or an empty string if a field does not fit
// (never cut). `decode` reads the body after the two header bytes and returns nullopt unless it
// is well formed and ends exactly there. SEND_PID and SEND_NAME are written straight into a
// thread's outbox (their heads here, their payloads after them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "codec.hpp"
#include "nodus/pid.hpp"
#include "nodus/term.hpp"
#include "wire.hpp"

namespace nodus::dist::frames {

/// SEND_PID's head: the receiving process (its node's creation, id, serial); the payload follows.
struct SendPid {
  std::uint32_t creation = 0, id = 0, serial = 0;
  void write(Writer& w) const;
  static std::optional<SendPid> read(Reader& r);
};
/// SEND_NAME's head: a name registered on the receiving node; the payload follows.
struct SendName {
  std::string_view name;
  void write(Writer& w) const;
  static std::optional<SendName> read(Reader& r);
};

inline constexpr std::uint8_t kLinkFlag = 1, kMonitorFlag = 2;  // SPAWN_REQUEST flags

struct SpawnRequest {
  std::uint64_t request = 0;
  std::uint32_t from_id = 0, from_serial = 0;  // the caller, a process of the sending node
  std::uint8_t flags = 0;                      // kLinkFlag | kMonitorFlag
  Pid group_leader;
  std::string_view function;
  Term args;
  Ref ref;  // the monitor's, with kMonitorFlag
  std::string encode() const;
  static std::optional<SpawnRequest> decode(Reader& r);
};

struct SpawnReply {
  std::uint64_t request = 0;
  bool ok = false;
  std::uint32_t id = 0, serial = 0;  // ok: the new process
  std::string_view error;            // else why not
  std::string encode() const;
  static std::optional<SpawnReply> decode(Reader& r);
};

/// LINK and UNLINK: `from` (a process of the sender) and `to` (one of the receiver).
struct Link {
  bool unlink = false;
  Pid from, to;
  std::string encode(bool json = false) const;  ///< json: Term fields as JSON Terms (0x0B), for a JSON peer
  static std::optional<Link> decode(Op op, Reader& r);
};

struct Exit {
  Pid from, to;
  bool from_link = false;
  Term reason;
  std::string encode(bool json = false) const;  ///< json: Term fields as JSON Terms (0x0B), for a JSON peer
  static std::optional<Exit> decode(Reader& r);
};

/// MONITOR and DEMONITOR: the target is a pid or a registered name (an atom).
struct Monitor {
  bool demonitor = false;
  Pid watcher;
  Term target;
  Ref ref;
  std::string encode(bool json = false) const;  ///< json: Term fields as JSON Terms (0x0B), for a JSON peer
  static std::optional<Monitor> decode(Op op, Reader& r);
};

/// DOWN: the target is the pid, or the name nothing was registered under (reason noproc).
struct Down {
  Pid watcher;
  Term target;
  Ref ref;
  Term reason;
  std::string encode(bool json = false) const;  ///< json: Term fields as JSON Terms (0x0B), for a JSON peer
  static std::optional<Down> decode(Reader& r);
};

}  // namespace nodus::dist::frames
