// Application: a named supervision tree started with the node and stopped in order with it
// (the lesson's Chat.Application). An application master process owns the root supervisor,
// so stopping is an orderly shutdown from the root's parent, as in OTP.
//
//   nodus::Application app{"chat", {}, {nodus::task_supervisor::child_spec(atom("Chat.TaskSupervisor"))}};
//   nodus::application::Running running(app);   // after the Node; throws if the tree fails
//   ...                                          // destructor (or stop()) shuts the tree down
#pragma once

#include <string>
#include <vector>

#include "nodus/pid.hpp"
#include "nodus/supervisor.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

struct Application {
  std::string name;                                 ///< also the root supervisor's registered name
  supervisor::Flags flags;                          ///< the root supervisor's
  std::vector<supervisor::ChildSpec> children;      ///< started in order, stopped in reverse
};

namespace application {

/// A started application. Start and stop from a thread (main), not from a process body.
class Running {
 public:
  /// Starts the tree and returns once every child runs; std::runtime_error with the reason
  /// if a child fails to start.
  explicit Running(const Application& app);
  ~Running() { stop(); }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

  /// Shuts the tree down (children in reverse start order, each within its shutdown time) and
  /// waits for it. Idempotent. Logs "application NAME stopped".
  void stop();
  Pid root() const { return root_; }
  Pid master() const { return master_; }

 private:
  std::string name_;
  Pid master_, root_;
};

}  // namespace application
}  // namespace nodus

NODUS_API_END
