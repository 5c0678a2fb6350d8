// Cookie resolution and the challenge/response MACs. The cookie never goes on the wire: each
// side proves it knows it with an HMAC-SHA256 over both nonces and both names.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
