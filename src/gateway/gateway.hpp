// The gateway (docs/gateway.md): a ZMTP ROUTER endpoint where any ZeroMQ client (a REQ or a
// DEALER) reaches this node's processes with JSON requests, without becoming a node. It sits
// above the OTP layer (it runs tasks, calls GenServers); Node starts and stops it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dist/zmtp.hpp"
#include "nodus/node.hpp"

namespace nodus::gateway {

/// Starts the gateway (throws std::runtime_error: bad endpoint, address in use, a cookie-mode
/// bind off loopback without `allow_remote`). `curve`: CURVE mode's server side (its allow
/// list), else null and `cookie` proves a client.
void start(const GatewayOptions& opts, std::string cookie, std::shared_ptr<const dist::zmtp::Curve> curve);
/// Stops it (clients are disconnected, their processes end). No-op if it is not running.
void stop();
/// The port it listens on (0: not running).
std::uint16_t port();

}  // namespace nodus::gateway
