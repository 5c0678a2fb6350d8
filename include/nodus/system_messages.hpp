// Messages the runtime itself puts in mailboxes: trapped exits and monitor notifications.
#pragma once

#include <ostream>

#include "nodus/pid.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

/// An exit signal turned into a message because the receiver traps exits:
/// Erlang's `{'EXIT', From, Reason}`.
struct ExitMsg {
  Pid from;
  Term reason;
};

/// A monitored process (or node connection) went away: Erlang's
/// `{'DOWN', Ref, process, Pid, Reason}`.
struct Down {
  Ref ref;
  Pid pid;
  Term reason;
};

inline std::ostream& operator<<(std::ostream& os, const ExitMsg& m) {
  return os << "{'EXIT', " << m.from << ", " << m.reason << "}";
}

inline std::ostream& operator<<(std::ostream& os, const Down& m) {
  return os << "{'DOWN', " << m.ref << ", process, " << m.pid << ", " << m.reason << "}";
}

}  // namespace nodus

NODUS_API_END
