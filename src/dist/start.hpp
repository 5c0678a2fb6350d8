// What the layers above the distribution use to start and stop this OS process's node. The
// public Node (src/services/node.cpp) starts it with these and then the services its options
// ask for (the gateway, the metrics endpoint): the distribution never calls up into them.
#pragma once

#include <memory>
#include <string>

#include "nodus/node.hpp"
#include "zmtp.hpp"

namespace nodus::dist {

/// Starts the node (throws as Node's constructor documents); one per OS process.
void start_node(NodeOptions opts);
/// Stops the started node and frees it once no thread is inside it.
void stop_node();
/// A function every node answers by name, found after the user's register_function ones
/// (the OTP layer's "erpc.run").
void add_builtin_function(std::string name, RemoteFunction f);
/// The running node's cookie and CURVE server side (what the gateway checks clients with).
std::string node_cookie();
std::shared_ptr<const zmtp::Curve> node_curve_server();

}  // namespace nodus::dist
