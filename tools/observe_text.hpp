// Text forms of nodus::observe's views, shared by `nodus shell` (i, stats, peers) and `nodus top`.
#pragma once

#include <string>
#include <vector>

#include "nodus/observe.hpp"

namespace nodus::tools {

/// A pid as the node that owns it prints it: <0.ID.SERIAL>.
std::string own_pid(const Pid& p);
/// Erlang's i(): one line per process under a header (pid, name, body, mailbox, handled,
/// status, links, monitors).
std::string format_processes(const std::vector<observe::ProcessInfo>& ps);
/// i(Pid): every field of one process.
std::string format_process(const observe::ProcessInfo& p);
/// The node's counters.
std::string format_stats(const observe::Stats& s);
/// One line per peer: state, messages and bytes each way, queued bytes, time over the budget.
std::string format_peers(const observe::Stats& s);
/// "12.3k", "4.5M": counts for narrow columns.
std::string human(double v);
/// `max` characters of `s` at most ("..." at the end when cut).
std::string cut(const std::string& s, std::size_t max);

}  // namespace nodus::tools
