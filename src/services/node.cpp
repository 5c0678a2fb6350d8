// The public Node: the distribution's node (src/dist) and the services its options ask for,
// which sit above it (the gateway, the metrics endpoint) and the OTP layer's built-in
// functions. This is the top of the layers: it may include every one below, none includes it.
#include <optional>
#include <string>

#include "dist/start.hpp"
#include "otp/builtins.hpp"
#include "gateway/gateway.hpp"
#include "metrics/metrics.hpp"
#include "nodus/node.hpp"

namespace nodus {

namespace {
void shut_down() {
  metrics::stop();
  gateway::stop();  // first: its clients' processes use the node
  dist::stop_node();
}
}  // namespace

Node::Node(NodeOptions opts) {
  const std::optional<GatewayOptions> gateway = opts.gateway;
  const std::string metrics_addr = opts.metrics;
  erpc::detail::install();  // every node answers erpc calls
  dist::start_node(std::move(opts));
  try {
    if (gateway) nodus::gateway::start(*gateway, dist::node_cookie(), dist::node_curve_server());
    if (!metrics_addr.empty()) nodus::metrics::start(metrics_addr);
  } catch (...) {
    shut_down();
    throw;
  }
}

Node::~Node() { shut_down(); }

namespace node {
std::uint16_t gateway_port() { return nodus::gateway::port(); }
std::uint16_t metrics_port() { return nodus::metrics::port(); }
}  // namespace node

}  // namespace nodus
