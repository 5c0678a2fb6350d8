// The application master: starts the root supervisor linked to itself, stops it on request.
#include "nodus/application.hpp"

#include "nodus/log.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/system_messages.hpp"

namespace nodus::application {
namespace {

Proc master_body(Pid requester, std::shared_ptr<Application> app) {
  trap_exit(true);
  Pid root;
  Expected<Pid> started = co_await supervisor::start_async(app->flags, app->children, {.name = atom(app->name), .link = true});
  if (!started) {
    send(requester, tuple(atom("failed"), started.error().reason.to_string()));
    co_return;
  }
  root = started.value();
  send(requester, tuple(atom("started"), root));
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<ExitMsg>() && m.get<ExitMsg>().from == root) {
      logger().error("application {} exited: {}", app->name, m.get<ExitMsg>().reason.to_string());
      co_return;
    }
    if (m.is<Term>() && m.get<Term>().is_tuple(2, "stop") && m.get<Term>()[1].is_pid()) {
      const Pid from = m.get<Term>()[1].as_pid();
      exit(root, atom("shutdown"));  // from the root's parent: an orderly shutdown
      co_await receive<ExitMsg>([&](const ExitMsg& e) { return e.from == root; });
      logger().info("application {} stopped", app->name);
      send(from, atom("stopped"));
      co_return;
    }
  }
}

}  // namespace

Running::Running(const Application& app) : name_(app.name) {
  Mailbox mb;
  master_ = spawn(master_body, self(), std::make_shared<Application>(app));
  auto r = mb.receive<Term>(std::chrono::seconds(60));
  if (!r) throw std::runtime_error("application " + name_ + " did not start within 60 s");
  if (r->is_tuple(2, "failed")) {
    throw std::runtime_error("application " + name_ + " failed to start: " + (*r)[1].as_binary());
  }
  root_ = (*r)[1].as_pid();
  logger().info("application {} started", name_);
}

void Running::stop() {
  if (master_.is_null()) return;
  Mailbox mb;
  const Ref ref = monitor(master_);
  send(master_, tuple(atom("stop"), self()));
  // `stopped`, or the master's end if the tree had already gone
  (void)mb.receive<Message>(
      [&](const MessageRef& m) {
        return (m.is<Term>() && m.get<Term>().is_atom("stopped")) || (m.is<Down>() && m.get<Down>().ref == ref);
      },
      std::chrono::hours(1));
  master_ = Pid{};
}

}  // namespace nodus::application
