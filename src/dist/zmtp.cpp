// ZMTP 3.1, NULL mechanism, single-part messages (zmtp.hpp).
#include "zmtp.hpp"

#include <sodium.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <strings.h>
#include <utility>

namespace nodus::dist::zmtp {

namespace {

constexpr std::uint8_t kMore = 0x01, kLong = 0x02, kCommand = 0x04;
// inside a CURVE MESSAGE the flags byte is RFC 26's: bit 0 more, bit 1 command
constexpr std::uint8_t kBoxMore = 0x01, kBoxCommand = 0x02;
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
std::string greeting(const Curve* curve) {
  std::string g(kGreetingSize, '\0');
  g[0] = static_cast<char>(0xff);
  g[8] = 1;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  std::memcpy(g.data() + 12, curve ? "CURVE" : "NULL", curve ? 5 : 4);
  g[32] = curve && curve->server ? 1 : 0;  // as-server
  return g;
}

// ZMTP properties ("Socket-Type", "Identity"): str8 name, u32 (big-endian) length, value.
std::string properties(std::string_view socket_type) {
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
  return props;
}

bool well_formed_properties(std::string_view data) {
  std::size_t at = 0;
  while (at < data.size()) {
    const std::size_t nlen = static_cast<unsigned char>(data[at]);
    if (at + 1 + nlen + 4 > data.size()) return false;
    const std::uint64_t vlen = get_be(data.data() + at + 1 + nlen, 4);
    if (vlen > data.size() - (at + 1 + nlen + 4)) return false;
    at += 1 + nlen + 4 + vlen;
  }
  return true;
}

const unsigned char* u8p(const char* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* u8p(char* p) { return reinterpret_cast<unsigned char*>(p); }

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

// CurveZMQ state (RFC 26, with libzmq's layout of each command). Nonces are big-endian
// counters; each side's start at 1 with its first handshake command.
struct CurveState {
  enum class Expect { hello, welcome, initiate, ready, done } expect;
  Key cn_public{}, cn_secret{};  // our short-term key pair (C' c' or S' s')
  Key cn_peer{};                 // the peer's short-term public key
  Key peer_long{};               // the peer's long-term public key, once proven
  unsigned char precom[crypto_box_BEFORENMBYTES] = {};
  unsigned char cookie_key[crypto_secretbox_KEYBYTES] = {};  // server
  std::string cookie;                                        // client: from WELCOME (96 bytes)
  std::string props;                                         // our metadata
  std::uint64_t send_nonce = 1;  // the reader during the handshake, then the writer
  std::uint64_t peer_nonce = 0;  // the reader
  std::string scratch;           // the writer's encryption buffer
  ~CurveState() {
    sodium_memzero(cn_secret.data(), cn_secret.size());
    sodium_memzero(precom, sizeof(precom));
    sodium_memzero(cookie_key, sizeof(cookie_key));
  }
};

namespace {
// A 24-byte nonce: a 16-byte prefix and a big-endian counter, or an 8-byte prefix and 16 bytes.
void short_nonce(unsigned char* out, const char* prefix16, std::uint64_t n) {
  std::memcpy(out, prefix16, 16);
  for (int i = 0; i < 8; ++i) out[16 + i] = static_cast<unsigned char>(n >> (8 * (7 - i)));
}
void long_nonce(unsigned char* out, const char* prefix8, const unsigned char* rest16) {
  std::memcpy(out, prefix8, 8);
  std::memcpy(out + 8, rest16, 16);
}
void put_u64_be(std::string& out, std::uint64_t n) { put_be(out, n, 8); }
}  // namespace

Stream::Stream(int fd, std::string_view socket_type, std::uint64_t max_message, bool connected,
               std::shared_ptr<const Curve> curve)
    : fd_(fd), max_message_(max_message), connected_(connected), curve_(std::move(curve)) {
  out_ = greeting(curve_.get());
  if (!curve_) {
    append_command(out_, "READY", properties(socket_type));
  } else {
    if (sodium_init() < 0) fail("libsodium cannot start");
    cs_ = std::make_unique<CurveState>();
    cs_->props = properties(socket_type);
    crypto_box_keypair(cs_->cn_public.data(), cs_->cn_secret.data());
    if (curve_->server) {
      cs_->expect = CurveState::Expect::hello;
    } else {
      // HELLO: version 1.0, 72 bytes of padding, C', short nonce, Box[64 zeros](C'->S)
      cs_->expect = CurveState::Expect::welcome;
      std::string hello("\x01\x00", 2);
      hello.append(72, '\0');
      hello.append(reinterpret_cast<const char*>(cs_->cn_public.data()), 32);
      const std::uint64_t n = cs_->send_nonce++;
      put_u64_be(hello, n);
      unsigned char nonce[24], zeros[64] = {}, box[80];
      short_nonce(nonce, "CurveZMQHELLO---", n);
      if (crypto_box_easy(box, zeros, sizeof(zeros), nonce, curve_->server_key.data(), cs_->cn_secret.data()) != 0) {
        fail("CURVE: unusable server key");
      }
      hello.append(reinterpret_cast<const char*>(box), sizeof(box));
      append_command(out_, "HELLO", hello);
    }
  }
  if (connected_) write_out();
}

// A command's body: str8 name, then its data.
bool Stream::split_command(std::string_view body, std::string_view* name, std::string_view* data) {
  if (body.empty() || static_cast<unsigned char>(body[0]) + 1u > body.size()) {
    fail("malformed command");
    return false;
  }
  *name = body.substr(1, static_cast<unsigned char>(body[0]));
  *data = body.substr(1 + name->size());
  return true;
}

const Key& Stream::peer_key() const {
  static const Key none{};
  return cs_ ? cs_->peer_long : none;
}

// A CURVE handshake command from the peer (the reader); answers go to hs_out_.
bool Stream::curve_command(std::string_view body) {
  std::string_view name, data;
  if (!split_command(body, &name, &data)) return false;
  CurveState& c = *cs_;
  using E = CurveState::Expect;
  if (name == "ERROR") {
    const std::string_view reason = data.empty() ? data : data.substr(1, static_cast<unsigned char>(data[0]));
    refused_ = true;
    fail("the peer refused the CURVE handshake (ERROR " + std::string(reason.substr(0, 32)) + ")");
    return false;
  }
  if (c.expect == E::hello && name == "HELLO") {
    if (data.size() != 194 || data[0] != 1 || data[1] != 0) {
      fail("malformed CURVE HELLO");
      return false;
    }
    std::memcpy(c.cn_peer.data(), data.data() + 74, 32);
    const std::uint64_t n = get_be(data.data() + 106, 8);
    unsigned char nonce[24], zeros[64];
    short_nonce(nonce, "CurveZMQHELLO---", n);
    if (crypto_box_open_easy(zeros, u8p(data.data() + 114), 80, nonce, c.cn_peer.data(),
                             curve_->secret_key.data()) != 0) {
      fail("CURVE HELLO does not open: the client does not have this node's public key");
      return false;
    }
    c.peer_nonce = n;
    // WELCOME: 16-byte nonce, Box[S' + cookie](S->C'); cookie = nonce + SecretBox[C' + s'](K)
    randombytes_buf(c.cookie_key, sizeof(c.cookie_key));
    unsigned char cookie_nonce[24], plain[64], cookie_box[80];
    unsigned char rnd[16];
    randombytes_buf(rnd, 16);
    long_nonce(cookie_nonce, "COOKIE--", rnd);
    std::memcpy(plain, c.cn_peer.data(), 32);
    std::memcpy(plain + 32, c.cn_secret.data(), 32);
    crypto_secretbox_easy(cookie_box, plain, 64, cookie_nonce, c.cookie_key);
    sodium_memzero(plain, sizeof(plain));
    unsigned char welcome_plain[128], welcome_box[144], welcome_nonce[24], wrnd[16];
    std::memcpy(welcome_plain, c.cn_public.data(), 32);
    std::memcpy(welcome_plain + 32, rnd, 16);
    std::memcpy(welcome_plain + 48, cookie_box, 80);
    randombytes_buf(wrnd, 16);
    long_nonce(welcome_nonce, "WELCOME-", wrnd);
    if (crypto_box_easy(welcome_box, welcome_plain, sizeof(welcome_plain), welcome_nonce, c.cn_peer.data(),
                        curve_->secret_key.data()) != 0) {
      fail("CURVE HELLO: unusable client key");
      return false;
    }
    std::string w(reinterpret_cast<const char*>(wrnd), 16);
    w.append(reinterpret_cast<const char*>(welcome_box), sizeof(welcome_box));
    append_command(hs_out_, "WELCOME", w);
    c.expect = E::initiate;
    return true;
  }
  if (c.expect == E::welcome && name == "WELCOME") {
    if (data.size() != 160) {
      fail("malformed CURVE WELCOME");
      return false;
    }
    unsigned char nonce[24], plain[128];
    long_nonce(nonce, "WELCOME-", u8p(data.data()));
    if (crypto_box_open_easy(plain, u8p(data.data() + 16), 144, nonce, curve_->server_key.data(),
                             c.cn_secret.data()) != 0) {
      fail("CURVE WELCOME does not open: the server is not the node whose key we have");
      return false;
    }
    std::memcpy(c.cn_peer.data(), plain, 32);
    c.cookie.assign(reinterpret_cast<const char*>(plain + 32), 96);
    if (crypto_box_beforenm(c.precom, c.cn_peer.data(), c.cn_secret.data()) != 0) {
      fail("CURVE WELCOME: unusable server key");
      return false;
    }
    // INITIATE: cookie, short nonce, Box[C + vouch nonce + vouch + metadata](C'->S'), where
    // vouch = Box[C' + S](C->S')
    unsigned char vouch_plain[64], vouch_box[80], vouch_nonce[24], vrnd[16];
    std::memcpy(vouch_plain, c.cn_public.data(), 32);
    std::memcpy(vouch_plain + 32, curve_->server_key.data(), 32);
    randombytes_buf(vrnd, 16);
    long_nonce(vouch_nonce, "VOUCH---", vrnd);
    if (crypto_box_easy(vouch_box, vouch_plain, 64, vouch_nonce, c.cn_peer.data(), curve_->secret_key.data()) != 0) {
      fail("CURVE WELCOME: unusable server key");
      return false;
    }
    std::string plain_init(reinterpret_cast<const char*>(curve_->public_key.data()), 32);
    plain_init.append(reinterpret_cast<const char*>(vrnd), 16);
    plain_init.append(reinterpret_cast<const char*>(vouch_box), 80);
    plain_init.append(c.props);
    const std::uint64_t n = c.send_nonce++;
    unsigned char init_nonce[24];
    short_nonce(init_nonce, "CurveZMQINITIATE", n);
    std::string box(plain_init.size() + crypto_box_MACBYTES, '\0');
    crypto_box_easy_afternm(u8p(box.data()), u8p(plain_init.data()), plain_init.size(), init_nonce, c.precom);
    std::string init = c.cookie;
    put_u64_be(init, n);
    init += box;
    append_command(hs_out_, "INITIATE", init);
    c.expect = E::ready;
    return true;
  }
  if (c.expect == E::initiate && name == "INITIATE") {
    if (data.size() < 96 + 8 + crypto_box_MACBYTES + 128) {
      fail("malformed CURVE INITIATE");
      return false;
    }
    unsigned char cookie_nonce[24], cookie_plain[64];
    long_nonce(cookie_nonce, "COOKIE--", u8p(data.data()));
    if (crypto_secretbox_open_easy(cookie_plain, u8p(data.data() + 16), 80, cookie_nonce, c.cookie_key) != 0 ||
        sodium_memcmp(cookie_plain, c.cn_peer.data(), 32) != 0 ||
        sodium_memcmp(cookie_plain + 32, c.cn_secret.data(), 32) != 0) {
      fail("CURVE INITIATE carries a bad cookie");
      return false;
    }
    if (crypto_box_beforenm(c.precom, c.cn_peer.data(), c.cn_secret.data()) != 0) {
      fail("CURVE INITIATE: unusable client key");
      return false;
    }
    const std::uint64_t n = get_be(data.data() + 96, 8);
    if (n <= c.peer_nonce) {
      fail("CURVE INITIATE nonce out of sequence");
      return false;
    }
    unsigned char init_nonce[24];
    short_nonce(init_nonce, "CurveZMQINITIATE", n);
    const std::size_t clen = data.size() - 104;
    std::string plain(clen - crypto_box_MACBYTES, '\0');
    if (crypto_box_open_easy_afternm(u8p(plain.data()), u8p(data.data() + 104), clen, init_nonce, c.precom) != 0) {
      fail("CURVE INITIATE does not open");
      return false;
    }
    c.peer_nonce = n;
    Key client{};
    std::memcpy(client.data(), plain.data(), 32);
    unsigned char vouch_nonce[24], vouch[64];
    long_nonce(vouch_nonce, "VOUCH---", u8p(plain.data() + 32));
    if (crypto_box_open_easy(vouch, u8p(plain.data() + 48), 80, vouch_nonce, client.data(), c.cn_secret.data()) != 0 ||
        sodium_memcmp(vouch, c.cn_peer.data(), 32) != 0 ||
        sodium_memcmp(vouch + 32, curve_->public_key.data(), 32) != 0) {
      fail("CURVE INITIATE: the client's vouch does not hold");
      return false;
    }
    if (!well_formed_properties(std::string_view(plain).substr(128))) {
      fail("malformed CURVE INITIATE metadata");
      return false;
    }
    read_properties(std::string_view(plain).substr(128));
    c.peer_long = client;
    if (!curve_->allow || !curve_->allow(client)) {
      refused_ = true;
      append_command(hs_out_, "ERROR", std::string("\x03" "400", 4));
      fail("its CURVE key is not allowed");
      return false;
    }
    // READY: short nonce, Box[metadata](S'->C')
    const std::uint64_t rn = c.send_nonce++;
    unsigned char ready_nonce[24];
    short_nonce(ready_nonce, "CurveZMQREADY---", rn);
    std::string box(c.props.size() + crypto_box_MACBYTES, '\0');
    crypto_box_easy_afternm(u8p(box.data()), u8p(c.props.data()), c.props.size(), ready_nonce, c.precom);
    std::string ready;
    put_u64_be(ready, rn);
    ready += box;
    append_command(hs_out_, "READY", ready);
    c.expect = E::done;
    state_ = State::messages;
    return true;
  }
  if (c.expect == E::ready && name == "READY") {
    if (data.size() < 8 + crypto_box_MACBYTES) {
      fail("malformed CURVE READY");
      return false;
    }
    const std::uint64_t n = get_be(data.data(), 8);
    unsigned char nonce[24];
    short_nonce(nonce, "CurveZMQREADY---", n);
    std::string plain(data.size() - 8 - crypto_box_MACBYTES, '\0');
    if (crypto_box_open_easy_afternm(u8p(plain.data()), u8p(data.data() + 8), data.size() - 8, nonce, c.precom) != 0 ||
        !well_formed_properties(plain)) {
      fail("CURVE READY does not open");
      return false;
    }
    read_properties(plain);
    c.peer_nonce = n;
    c.peer_long = curve_->server_key;
    c.expect = E::done;
    state_ = State::messages;
    return true;
  }
  fail("unexpected CURVE command " + std::string(name.substr(0, 16)));
  return false;
}

// A MESSAGE (the reader): opens it in place. `message`: the plaintext after its flags byte.
bool Stream::curve_decrypt(char* body, std::size_t size, std::string_view* message, bool* is_command) {
  CurveState& c = *cs_;
  if (size < 16 + crypto_box_MACBYTES + 1 || std::memcmp(body, "\x07MESSAGE", 8) != 0) {
    fail("malformed CURVE MESSAGE");
    return false;
  }
  const std::uint64_t n = get_be(body + 8, 8);
  if (n <= c.peer_nonce) {
    fail("CURVE MESSAGE nonce out of sequence");
    return false;
  }
  unsigned char nonce[24];
  short_nonce(nonce, curve_->server ? "CurveZMQMESSAGEC" : "CurveZMQMESSAGES", n);
  unsigned char* box = u8p(body + 16);
  const std::size_t clen = size - 16;
  if (crypto_box_open_easy_afternm(box, box, clen, nonce, c.precom) != 0) {
    fail("CURVE MESSAGE does not open");
    return false;
  }
  c.peer_nonce = n;
  const auto flags = static_cast<std::uint8_t>(box[0]);
  *is_command = (flags & kBoxCommand) != 0;
  *message = std::string_view(body + 17, clen - crypto_box_MACBYTES - 1);
  return true;
}

// One MESSAGE onto out_ (the writer, after the handshake).
void Stream::curve_encrypt(std::string_view body, std::uint8_t flags) {
  CurveState& c = *cs_;
  std::string& plain = c.scratch;
  plain.assign(1, static_cast<char>(flags));
  plain.append(body);
  const std::uint64_t n = c.send_nonce++;
  unsigned char nonce[24];
  short_nonce(nonce, curve_->server ? "CurveZMQMESSAGES" : "CurveZMQMESSAGEC", n);
  const std::size_t size = 16 + plain.size() + crypto_box_MACBYTES;
  append_header(out_, size, 0);
  out_.append("\x07MESSAGE", 8);
  put_u64_be(out_, n);
  const std::size_t at = out_.size();
  out_.resize(at + plain.size() + crypto_box_MACBYTES);
  crypto_box_easy_afternm(u8p(out_.data() + at), u8p(plain.data()), plain.size(), nonce, c.precom);
}

void Stream::queue_command(std::string_view name, std::string_view data) {
  if (!cs_) {
    append_command(out_, name, data);
    return;
  }
  if (!curve_ready_) return;  // no heartbeats before the handshake is done
  std::string body;
  body.push_back(static_cast<char>(name.size()));
  body.append(name);
  body.append(data);
  curve_encrypt(body, kBoxCommand);
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
  if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT || errno == ECONNABORTED) return Status::closed;
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
      const char* ours = curve_ ? "CURVE" : "NULL";
      if (mechanism_ != ours) {
        fail("security mechanism mismatch: the peer uses " + mechanism_ + ", this side " + ours);
        return false;
      }
      // (the as-server byte is not checked: libzmq always sends 0 there)
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
    if (cs_) {
      if (state_ != State::messages) {
        if (!(flags & kCommand)) {
          fail("message before the handshake finished");
          return false;
        }
        if (!curve_command(body)) return false;
        continue;
      }
      if (flags & kCommand) {
        fail("unencrypted command after the CURVE handshake");
        return false;
      }
      std::string_view plain;
      bool is_command = false;
      if (!curve_decrypt(const_cast<char*>(body.data()), body.size(), &plain, &is_command)) return false;
      if (is_command) {
        if (!command(plain)) return false;
        continue;
      }
      if (static_cast<unsigned char>(body[16]) & kBoxMore) {  // not our protocol: keep only the last part
        if (!take_part(plain)) return false;
        continue;
      }
      part_done();
      *message = plain;
      return true;
    }
    if (flags & kCommand) {
      if (!command(body)) return false;
      continue;
    }
    if (state_ != State::messages) {
      fail("message before the handshake finished");
      return false;
    }
    if (flags & kMore) {  // not our protocol: keep only the last part
      if (!take_part(body)) return false;
      continue;
    }
    part_done();
    *message = body;
    return true;
  }
}

bool Stream::take_part(std::string_view part) {
  in_multipart_ = true;
  if (!keep_envelope_) return true;
  parts_bytes_ += part.size();
  if (parts_.size() >= kMaxEnvelope || parts_bytes_ > max_message_) {
    fail("a multi-part message over " + std::to_string(kMaxEnvelope) + " parts or " + std::to_string(max_message_) +
         " bytes");
    return false;
  }
  parts_.emplace_back(part);
  return true;
}

void Stream::part_done() {
  if (keep_envelope_) {
    envelope_.swap(parts_);
    parts_.clear();
    parts_bytes_ = 0;
    in_multipart_ = false;
    return;
  }
  if (std::exchange(in_multipart_, false)) multipart_ = true;
}

void Stream::read_properties(std::string_view data) {
  std::size_t at = 0;
  while (at < data.size()) {  // (well_formed_properties checked the lengths)
    const std::size_t nlen = static_cast<unsigned char>(data[at]);
    const std::string_view name = data.substr(at + 1, nlen);
    const std::uint64_t vlen = get_be(data.data() + at + 1 + nlen, 4);
    const std::string_view value = data.substr(at + 1 + nlen + 4, vlen);
    if (name.size() == 11 && strncasecmp(name.data(), "Socket-Type", 11) == 0) {
      peer_socket_type_.assign(value.substr(0, 32));
    }
    at += 1 + nlen + 4 + vlen;
  }
}

bool Stream::send_parts(const std::vector<std::string>& envelope, std::string_view body) {
  if (write_failed_) return true;
  if (cs_) {
    if (!curve_ready_) return false;
    for (const auto& e : envelope) curve_encrypt(e, kBoxMore);
    curve_encrypt(body, 0);
    return write_out();
  }
  if (state_ != State::messages) return false;
  for (const auto& e : envelope) {
    append_header(out_, e.size(), kMore);
    out_.append(e);
  }
  append_header(out_, body.size(), 0);
  out_.append(body);
  return write_out();
}

bool Stream::command(std::string_view body) {
  std::string_view name, data;
  if (!split_command(body, &name, &data)) return false;
  if (state_ == State::handshake) {
    if (name == "ERROR") {
      fail("the peer sent ERROR: " + std::string(data.substr(data.empty() ? 0 : 1)));
      return false;
    }
    if (name != "READY") {
      fail("expected READY, got " + std::string(name));
      return false;
    }
    if (!well_formed_properties(data)) {
      fail("malformed READY");
      return false;
    }
    read_properties(data);
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
      // only bytes that had waited for the kernel to take them are a backlog draining
      const std::size_t was_stuck = std::min(stuck_, static_cast<std::size_t>(n));
      drained_ += was_stuck;
      stuck_ -= was_stuck;
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
    stuck_ = 0;
    return true;
  }
  if (out_pos_ == end) return true;  // the rest waits for the peer's greeting
  stuck_ = end - out_pos_;  // the socket is full: what is left waits for the peer to read
  if (out_pos_ >= kReadChunk) {
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  return false;
}

bool Stream::send(std::string_view body) {
  if (write_failed_) return true;
  if (cs_) {
    if (!curve_ready_) {
      early_.emplace_back(body);
      return true;  // leaves when the handshake is done (service)
    }
    curve_encrypt(body, 0);
    return write_out();
  }
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
    stuck_ = out_.size();
    return false;
  }
  out_.append(head, hlen);
  out_.append(body);
  return write_out();
}

bool Stream::send_ping(std::uint16_t ttl_ds) {
  std::string data;
  put_be(data, ttl_ds, 2);
  queue_command("PING", data);
  return write_out();
}

bool Stream::service() {
  if (greeting_seen_) blocked_ = false;
  if (!hs_out_.empty()) {
    out_ += hs_out_;
    hs_out_.clear();
  }
  if (cs_ && !curve_ready_ && state_ == State::messages) {
    curve_ready_ = true;  // (the reader finished the handshake)
    for (const std::string& m : early_) curve_encrypt(m, 0);
    early_.clear();
  }
  if (pong_due_) {
    pong_due_ = false;
    queue_command("PONG", pong_context_);
  }
  return write_out();
}

bool Stream::flush() { return write_out(); }

}  // namespace nodus::dist::zmtp
