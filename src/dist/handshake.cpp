// Cookie file handling and HMACs (libsodium).
#include "handshake.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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
