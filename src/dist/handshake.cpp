// Cookie file handling and HMACs (libsodium).
#include "handshake.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace nodus::dist {
namespace {

void init_sodium() {
  static const int ok = sodium_init();
  (void)ok;
}

Mac mac(std::string_view label, std::string_view cookie, const Nonce& n1, const Nonce& n2,
        std::string_view a, std::string_view b) {
  init_sodium();
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(cookie.data()), cookie.size());
  auto add = [&](std::string_view s) {
    const auto len = static_cast<std::uint8_t>(s.size());
    crypto_auth_hmacsha256_update(&st, &len, 1);
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  add(label);
  crypto_auth_hmacsha256_update(&st, n1.data(), n1.size());
  crypto_auth_hmacsha256_update(&st, n2.data(), n2.size());
  add(a);
  add(b);
  Mac out;
  crypto_auth_hmacsha256_final(&st, out.data());
  return out;
}

}  // namespace

std::optional<std::string> resolve_cookie(const std::string& explicit_cookie, std::string* error) {
  if (!explicit_cookie.empty()) return explicit_cookie;
  if (const char* env = std::getenv("NODUS_COOKIE"); env && *env) return std::string(env);
  const char* home = std::getenv("HOME");
  if (!home || !*home) {
    if (error) *error = "no cookie: pass --cookie, set NODUS_COOKIE, or set HOME for ~/.nodus.cookie";
    return std::nullopt;
  }
  const std::string path = std::string(home) + "/.nodus.cookie";
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0) {
    // as Erlang refuses an ~/.erlang.cookie others can read: the cookie is the cluster's password
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
      if (error) {
        *error = "cookie file " + path + " has mode " + mode +
                 ": it must be readable by its owner only (chmod 400 " + path + ")";
      }
      return std::nullopt;
    }
  }
  std::ifstream in(path);
  if (in) {
    std::string c;
    std::getline(in, c);
    if (!c.empty()) return c;
  }
  // create it: 20 random uppercase letters, readable only by the owner
  init_sodium();
  std::string c(20, 'A');
  for (char& ch : c) ch = static_cast<char>('A' + randombytes_uniform(26));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0400);
  if (fd < 0) {
    if (error) *error = "cannot create " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  const std::string line = c + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) {
    if (error) *error = "cannot write " + path;
    return std::nullopt;
  }
  return c;
}

Nonce make_nonce() {
  init_sodium();
  Nonce n;
  randombytes_buf(n.data(), n.size());
  return n;
}

Mac acceptor_mac(std::string_view cookie, const Nonce& cn, const Nonce& an, std::string_view connector,
                 std::string_view acceptor) {
  return mac("nodus-accept", cookie, cn, an, connector, acceptor);
}

Mac connector_mac(std::string_view cookie, const Nonce& cn, const Nonce& an, std::string_view connector,
                  std::string_view acceptor) {
  return mac("nodus-connect", cookie, cn, an, connector, acceptor);
}

bool mac_equal(const Mac& a, std::string_view b) {
  return b.size() == a.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace nodus::dist

// ------------------------------------------------------------------------------ Handshake

#include "codec.hpp"
#include "wire.hpp"

namespace nodus::dist {

namespace {
std::string frame_head(Op op) {
  std::string f;
  f.push_back(static_cast<char>(kWireVersion));
  f.push_back(static_cast<char>(op));
  return f;
}
std::string_view as_bytes(const Nonce& n) { return {reinterpret_cast<const char*>(n.data()), n.size()}; }
std::string_view as_bytes(const Mac& m) { return {reinterpret_cast<const char*>(m.data()), m.size()}; }
}  // namespace

bool valid_node_name(std::string_view n) {
  const auto at = n.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < n.size() && n.size() <= 255 &&
         n.find('@', at + 1) == std::string_view::npos;
}

Handshake::Handshake(Role role, std::string self, std::uint32_t creation, std::string cookie, std::uint8_t flags,
                     std::string peer)
    : role_(role), self_(std::move(self)), cookie_(std::move(cookie)), creation_(creation), flags_(flags),
      peer_(std::move(peer)) {}

Handshake::Step Handshake::bad(std::string why) {
  state_ = State::over;
  Step s;
  s.kind = Step::bad;
  s.why = std::move(why);
  return s;
}

// HELLO and CHALLENGE: who we are and a fresh nonce of ours (and, acceptor, our proof).
std::string Handshake::introduce(Op op) {
  ours_ = make_nonce();
  std::string f = frame_head(op);
  Writer w(f);
  w.str8(self_);
  w.u32(creation_);
  w.bytes(as_bytes(ours_));
  if (op == Op::challenge) w.bytes(as_bytes(acceptor_mac(cookie_, theirs_, ours_, peer_, self_)));
  w.u8(flags_);
  return f;
}

std::string Handshake::hello() {
  state_ = State::hello_sent;
  return introduce(Op::hello);
}

std::string Handshake::challenge() {
  state_ = State::challenged;
  return introduce(Op::challenge);
}

std::string Handshake::refuse(Code code, std::string_view why) {
  std::string f = frame_head(Op::refuse);
  Writer w(f);
  w.u8(code);
  w.str8(why.substr(0, 255));
  return f;
}

Handshake::Step Handshake::on_frame(std::string_view frame) {
  Reader r(frame);
  const std::uint8_t ver = r.u8();
  const auto op = static_cast<Op>(r.u8());
  if (!r.ok()) return bad("truncated handshake frame");
  if (ver != kWireVersion) {
    Step s = bad("it speaks nodus wire protocol " + std::to_string(ver) + ", this node " +
                 std::to_string(kWireVersion));
    if (ver == 1 && role_ == Role::acceptor && op == Op::hello) {
      // a version-1 peer reads a version-1 REFUSE (str8 reason) and logs it
      std::string f;
      f.push_back(1);
      f.push_back(static_cast<char>(Op::refuse));
      Writer w(f);
      w.str8("this node speaks nodus wire protocol " + std::to_string(kWireVersion) + " (version 1 is not supported)");
      s.frames.push_back(std::move(f));
    }
    return s;
  }
  Step s;
  if (op == Op::refuse) {
    const std::uint8_t code = r.u8();
    const std::string_view why = r.str8();
    if (!r.ok() || !r.at_end()) return bad("malformed REFUSE");
    state_ = State::over;
    s.kind = code == kSimultaneous && role_ == Role::connector ? Step::simultaneous : Step::refused;
    s.why.assign(why);
    return s;
  }
  if (role_ == Role::acceptor && op == Op::hello && state_ == State::start) {
    const std::string_view name = r.str8();
    peer_creation_ = r.u32();
    const std::string_view nonce = r.bytes(16);
    peer_flags_ = r.u8();
    if (!r.ok() || !r.at_end()) return bad("malformed HELLO");
    if (!valid_node_name(name)) {
      // told, not left to time out: a foreign tool's likeliest first mistake is a short name
      const std::string shown(name.substr(0, 64));
      Step no = bad("a HELLO naming '" + shown + "', not a full node name (name@host)");
      no.frames.push_back(refuse(kRefused, "'" + shown + "' is not a full node name: a HELLO names the node as name@host"));
      return no;
    }
    if (name == self_) return bad("a HELLO with this node's own name");
    peer_.assign(name);
    std::memcpy(theirs_.data(), nonce.data(), 16);
    state_ = State::hello_seen;
    s.kind = Step::hello;
    return s;
  }
  if (role_ == Role::connector && op == Op::challenge && state_ == State::hello_sent) {
    const std::string_view name = r.str8();
    peer_creation_ = r.u32();
    const std::string_view nonce = r.bytes(16);
    const std::string_view mac = r.bytes(32);
    peer_flags_ = r.u8();
    if (!r.ok() || !r.at_end()) return bad("malformed CHALLENGE");
    std::memcpy(theirs_.data(), nonce.data(), 16);
    // answer even when their proof fails, so the other side logs the refusal too
    std::string reply = frame_head(Op::reply);
    Writer w(reply);
    w.bytes(as_bytes(connector_mac(cookie_, ours_, theirs_, self_, peer_)));
    s.frames.push_back(std::move(reply));
    if (name != peer_) {
      state_ = State::over;
      s.kind = Step::refused;
      s.why = "it answered as " + std::string(name.substr(0, 64)) + ", not as " + peer_;
      return s;
    }
    if (!mac_equal(acceptor_mac(cookie_, ours_, theirs_, self_, peer_), mac)) {
      state_ = State::over;
      s.kind = Step::refused;
      s.why = "cookie mismatch: it does not share our cookie";
      return s;
    }
    state_ = State::challenged;
    return s;
  }
  if (role_ == Role::acceptor && op == Op::reply && state_ == State::challenged) {
    const std::string_view mac = r.bytes(32);
    if (!r.ok() || !r.at_end()) return bad("malformed REPLY");
    if (!mac_equal(connector_mac(cookie_, theirs_, ours_, peer_, self_), mac)) {
      state_ = State::over;
      s.kind = Step::refused;
      s.why = "invalid challenge reply";
      s.frames.push_back(refuse(kRefused, "invalid challenge reply"));
      return s;
    }
    state_ = State::up;
    s.kind = Step::up;
    s.frames.push_back(frame_head(Op::accept));
    return s;
  }
  if (role_ == Role::connector && op == Op::accept && state_ == State::challenged) {
    if (!r.at_end()) return bad("malformed ACCEPT");
    state_ = State::up;
    s.kind = Step::up;
    return s;
  }
  return bad("unexpected frame (op " + std::to_string(static_cast<int>(op)) + ") during the handshake");
}

}  // namespace nodus::dist
