// The `nodus top NODE` command.
#pragma once

#include <string>

#include "nodus/node.hpp"

namespace nodus::tools {
struct TopOptions {
  int interval_ms = 1000;     ///< refresh period
  int rows = 15;              ///< processes shown
  bool sort_handled = false;  ///< start sorted by messages handled (else by mailbox length)
  bool once = false;          ///< print one frame and exit (no terminal handling)
};
/// Runs a node that shows `target` live until q (or end of input). Exit status.
int run_top(const NodeOptions& opts, const std::string& target, const TopOptions& t);
}  // namespace nodus::tools
