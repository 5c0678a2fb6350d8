// Prometheus metrics (--metrics ADDR:PORT): an HTTP endpoint serving nodus::observe::stats()
// in Prometheus's text format at /metrics, with Debian's prometheus-cpp. Node starts and stops it.
#pragma once

#include <cstdint>
#include <string>

namespace nodus::metrics {
/// Serves /metrics on `addr` (HOST:PORT; port 0 picks a free one). Throws std::runtime_error
/// when it cannot (bad address, port in use, a build without prometheus-cpp).
void start(const std::string& addr);
/// No-op if it is not running.
void stop();
/// The port it listens on (0: not running).
std::uint16_t port();
}  // namespace nodus::metrics
