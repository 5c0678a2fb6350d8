// ZMTP 3.1, NULL mechanism, single-part messages (zmtp.hpp).
#include "zmtp.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <utility>

namespace nodus::dist::zmtp {

namespace {

constexpr std::uint8_t kMore = 0x01, kLong = 0x02, kCommand = 0x04;
constexpr std::size_t kReadChunk = 64 << 10;

void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_be(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// The greeting (RFC 37 section "Greeting"): signature, version 3.1, mechanism, as-server.
// The padding is libzmq's (an empty identity + 1) so that ZMTP 1.0/2.0 peers see a 3.x peer.
std::string greeting() {
  std::string g(kGreetingSize, '\0');
  g[0] = static_cast<char>(0xff);
  g[8] = 1;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  std::memcpy(g.data() + 12, "NULL", 4);
  return g;
}

void append_command(std::string& out, std::string_view name, std::string_view data) {
  append_header(out, 1 + name.size() + data.size(), kCommand);
  out.push_back(static_cast<char>(name.size()));
  out.append(name);
  out.append(data);
}

}  // namespace

namespace {
// A frame header into `head` (room for 9 bytes); its length.
std::size_t make_header(char* head, std::uint64_t size, std::uint8_t flags) {
  if (size <= 255) {
    head[0] = static_cast<char>(flags);
    head[1] = static_cast<char>(size);
    return 2;
  }
  head[0] = static_cast<char>(flags | kLong);
  for (int i = 0; i < 8; ++i) head[1 + i] = static_cast<char>((size >> (8 * (7 - i))) & 0xff);
  return 9;
}
}  // namespace

void append_header(std::string& out, std::uint64_t size, std::uint8_t flags) {
  char head[9];
  out.append(head, make_header(head, size, flags));
}

Stream::Stream(int fd, std::string_view socket_type, std::uint64_t max_message, bool connected)
    : fd_(fd), max_message_(max_message), connected_(connected) {
  out_ = greeting();
  std::string props;
  props.push_back(11);
  props.append("Socket-Type");
  put_be(props, socket_type.size(), 4);
  props.append(socket_type);
  if (socket_type == "DEALER") {  // like libzmq: an empty identity (the ROUTER picks one)
    props.push_back(8);
    props.append("Identity");
    put_be(props, 0, 4);
  }
  append_command(out_, "READY", props);
  if (connected_) write_out();
}

Stream::~Stream() {
  if (fd_ >= 0) ::close(fd_);
}

void Stream::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
}

Stream::Status Stream::fill() {
  if (in_pos_ == in_end_) {
    in_pos_ = in_end_ = 0;
    if (in_cap_ > (4u << 20)) {  // after a big message: give the memory back
      in_.reset();
      in_cap_ = 0;
    }
  }
  if (in_cap_ - in_end_ < kReadChunk) {  // room for a chunk: move what is unread down, or grow
    const std::size_t unread = in_end_ - in_pos_;
    if (unread + kReadChunk > in_cap_) {  // a message bigger than the buffer: double it
      const std::size_t cap = std::max(2 * in_cap_, unread + kReadChunk);
      std::unique_ptr<char[]> bigger(new char[cap]);
      if (unread) std::memcpy(bigger.get(), in_.get() + in_pos_, unread);
      in_ = std::move(bigger);
      in_cap_ = cap;
    } else if (unread) {
      std::memmove(in_.get(), in_.get() + in_pos_, unread);
    }
    in_pos_ = 0;
    in_end_ = unread;
  }
  const std::size_t room = in_cap_ - in_end_;
  const ssize_t n = ::recv(fd_, in_.get() + in_end_, room, MSG_DONTWAIT);
  if (n > 0) {
    in_end_ += static_cast<std::size_t>(n);
    received_ += static_cast<std::uint64_t>(n);
    return static_cast<std::size_t>(n) < room ? Status::drained : Status::ok;
  }
  if (n == 0) return Status::closed;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Status::again;
  if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT) return Status::closed;
  fail(std::string("recv: ") + std::strerror(errno));
  return Status::failed;
}

bool Stream::next(std::string_view* message) {
  for (;;) {
    if (!error_.empty()) return false;
    const char* p = in_.get() + in_pos_;
    const std::size_t avail = in_end_ - in_pos_;
    if (state_ == State::greeting) {
      // the signature first (10 bytes), so a non-ZMTP peer is refused without waiting
      if (avail >= 1 && static_cast<unsigned char>(p[0]) != 0xff) {
        fail("not a ZMTP peer (bad signature)");
        return false;
      }
      if (avail >= 10 && (p[9] & 1) == 0) {
        fail("ZMTP 1.0 peer: not supported");
        return false;
      }
      if (avail >= 11 && static_cast<unsigned char>(p[10]) < 3) {
        fail("ZMTP " + std::to_string(static_cast<unsigned char>(p[10])) + ".x peer: ZMTP 3 needed");
        return false;
      }
      if (avail < kGreetingSize) return false;
      const std::string_view mech(p + 12, 20);
      mechanism_.assign(mech.substr(0, mech.find('\0')));
      in_pos_ += kGreetingSize;
      if (mechanism_ != "NULL") {
        fail("security mechanism mismatch: the peer uses " + mechanism_ + ", this side NULL");
        return false;
      }
      state_ = State::handshake;
      greeting_seen_ = true;
      continue;
    }
    if (avail < 2) return false;
    const auto flags = static_cast<std::uint8_t>(p[0]);
    std::size_t head = 2;
    std::uint64_t size = static_cast<unsigned char>(p[1]);
    if (flags & kLong) {
      if (avail < 9) return false;
      head = 9;
      size = get_be(p + 1, 8);
    }
    if ((flags & ~(kMore | kLong | kCommand)) != 0) {
      fail("bad frame flags");
      return false;
    }
    if (size > max_message_) {
      fail("message of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(max_message_));
      return false;
    }
    if (avail - head < size) return false;  // fill grows the buffer as the message comes
    const std::string_view body(p + head, size);
    in_pos_ += head + size;
    if (flags & kCommand) {
      if (!command(body)) return false;
      continue;
    }
    if (state_ != State::messages) {
      fail("message before the handshake finished");
      return false;
    }
    if (flags & kMore) {  // not our protocol: keep only the last part
      in_multipart_ = true;
      continue;
    }
    if (std::exchange(in_multipart_, false)) multipart_ = true;
    *message = body;
    return true;
  }
}

bool Stream::command(std::string_view body) {
  if (body.empty() || static_cast<unsigned char>(body[0]) + 1u > body.size()) {
    fail("malformed command");
    return false;
  }
  const std::string_view name = body.substr(1, static_cast<unsigned char>(body[0]));
  const std::string_view data = body.substr(1 + name.size());
  if (state_ == State::handshake) {
    if (name == "ERROR") {
      fail("the peer sent ERROR: " + std::string(data.substr(data.empty() ? 0 : 1)));
      return false;
    }
    if (name != "READY") {
      fail("expected READY, got " + std::string(name));
      return false;
    }
    // properties: str8 name, u32 (big-endian) length, value; check they are well formed
    std::size_t at = 0;
    while (at < data.size()) {
      const std::size_t nlen = static_cast<unsigned char>(data[at]);
      if (at + 1 + nlen + 4 > data.size()) {
        fail("malformed READY");
        return false;
      }
      const std::uint64_t vlen = get_be(data.data() + at + 1 + nlen, 4);
      if (vlen > data.size() - (at + 1 + nlen + 4)) {
        fail("malformed READY");
        return false;
      }
      at += 1 + nlen + 4 + vlen;
    }
    state_ = State::messages;
    return true;
  }
  if (name == "PING") {
    if (data.size() < 2) {
      fail("malformed PING");
      return false;
    }
    pong_context_.assign(data.substr(2, 16));
    pong_due_ = true;
  } else if (name == "ERROR") {
    fail("the peer sent ERROR: " + std::string(data.substr(data.empty() ? 0 : 1)));
    return false;
  }
  return true;  // PONG and anything unknown: ignored
}

bool Stream::connect_done() {
  connected_ = true;
  return write_out();
}

bool Stream::write_out() {
  if (!connected_) return false;
  if (write_failed_) {  // the reader sees the connection close
    out_.clear();
    out_pos_ = 0;
    return true;
  }
  const std::size_t end = out_end();
  while (out_pos_ < end) {
    const ssize_t n = ::send(fd_, out_.data() + out_pos_, end - out_pos_, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      out_pos_ += static_cast<std::size_t>(n);
      drained_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    write_failed_ = true;
    out_.clear();
    out_pos_ = 0;
    return true;
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    return true;
  }
  if (out_pos_ == end) return true;  // the rest waits for the peer's greeting
  if (out_pos_ >= kReadChunk) {
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  return false;
}

bool Stream::send(std::string_view body) {
  if (write_failed_) return true;
  char head[9];
  const std::size_t hlen = make_header(head, body.size(), 0);
  if (connected_ && !blocked_ && out_pos_ == out_.size()) {
    // the usual case: header and body in one syscall, nothing copied
    iovec iov[2] = {{head, hlen}, {const_cast<char*>(body.data()), body.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    ssize_t n;
    do {
      n = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      write_failed_ = true;
      return true;
    }
    const std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    if (sent == hlen + body.size()) return true;
    // the rest waits
    out_.clear();
    out_pos_ = 0;
    if (sent < hlen) out_.append(head + sent, hlen - sent);
    out_.append(body.substr(sent > hlen ? sent - hlen : 0));
    return false;
  }
  out_.append(head, hlen);
  out_.append(body);
  return write_out();
}

bool Stream::send_ping(std::uint16_t ttl_ds) {
  std::string data;
  put_be(data, ttl_ds, 2);
  append_command(out_, "PING", data);
  return write_out();
}

bool Stream::service() {
  if (greeting_seen_) blocked_ = false;
  if (pong_due_) {
    pong_due_ = false;
    append_command(out_, "PONG", pong_context_);
  }
  return write_out();
}

bool Stream::flush() { return write_out(); }

}  // namespace nodus::dist::zmtp
