// The boundary between a node and one connection to one peer, in the spirit of libzmq's
// i_engine: what the node's Channel (who may write, in which order) needs from a connection.
// zmtp::Stream (ZMTP 3.1 over TCP, NULL or CURVE) implements it; the channel's tests use a fake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace nodus::dist {

class Connection {
 public:
  /// What became of a message handed to put: the kernel took all of it; the connection took it
  /// but part waits inside it for the socket to drain (flush when writable); or it took none
  /// of it (a high-water mark: the caller keeps it, in order).
  enum class Put { all, part, none };
  virtual ~Connection() = default;
  /// One whole message (under the owner's lock).
  virtual Put put(std::string_view message) = 0;
  /// Writes what waits inside; true once nothing does (under the owner's lock).
  virtual bool flush() = 0;
  virtual bool has_output() const = 0;
  /// Bytes handed to put that wait inside for the socket (they count toward the send budget).
  virtual std::size_t buffered() const { return 0; }
};

}  // namespace nodus::dist
