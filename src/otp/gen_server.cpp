// GenServer: the server loop and the call protocol ({'$gen_call', {From, Tag}, Request} ->
// {Tag, Reply}), with OTP's failure reasons.
#include "nodus/gen_server.hpp"

#include "nodus/log.hpp"
#include "nodus/node.hpp"
#include "nodus/system_messages.hpp"

namespace nodus {

std::string ServerRef::to_string() const {
  if (!pid.is_null()) return nodus::to_string(pid);
  if (node == Atom()) return std::string(name.name());
  return "{" + std::string(name.name()) + ", " + std::string(node.name()) + "}";
}

GenServer::CallResult GenServer::handle_call(const Term& request, const From&) {
  return {std::nullopt, tuple(atom("bad_call"), request)};
}
void GenServer::handle_cast(const Term& msg) { stop_after(tuple(atom("bad_cast"), msg)); }
void GenServer::handle_info(Message& msg) {
  logger().warn("{}: unexpected message {}", to_string(self()), msg.to_string());
}
void GenServer::terminate(const Term&) {}

struct GenServerAccess {
  static std::optional<Term>& stop_reason(GenServer& s) { return s.stop_reason_; }
  static Pid& parent(GenServer& s) { return s.parent_; }
};

namespace {

const Atom kCall = atom("$gen_call");
const Atom kCast = atom("$gen_cast");

[[noreturn]] void stop_server(GenServer& s, Term reason) {
  s.terminate(reason);
  exit_self(std::move(reason));
}

Proc server_loop(std::unique_ptr<GenServer> s) {
  s->init();
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<Term>()) {
      const Term& t = m.get<Term>();
      if (t.is_tuple() && t.size() == 3 && t[0].is_atom() && t[0].as_atom() == kCall && t[1].is_tuple() &&
          t[1].size() == 2 && t[1][0].is_pid() && t[1][1].is_ref()) {
        const From from{t[1][0].as_pid(), t[1][1].as_ref()};
        GenServer::CallResult r = s->handle_call(t[2], from);
        if (r.reply) send(from.pid, tuple(Term(from.tag), std::move(*r.reply)));
        if (r.stop) stop_server(*s, std::move(*r.stop));
        continue;
      }
      if (t.is_tuple() && t.size() == 2 && t[0].is_atom() && t[0].as_atom() == kCast) {
        s->handle_cast(t[1]);
        if (auto& why = GenServerAccess::stop_reason(*s)) stop_server(*s, std::move(*why));
        continue;
      }
    }
    if (m.is<ExitMsg>() && m.get<ExitMsg>().from == GenServerAccess::parent(*s)) {
      // a trapped exit from the parent (a supervisor's shutdown): terminate, as OTP does
      stop_server(*s, m.get<ExitMsg>().reason);
    }
    s->handle_info(m);
    if (auto& why = GenServerAccess::stop_reason(*s)) stop_server(*s, std::move(*why));
  }
}

// One call in flight: what it waits for, and how each outcome reads.
struct PendingCall {
  Pid target;       // null for {name, node} on another node
  Ref mref;         // monitor of target (or of the name there)
  Ref tag;          // the reply's tag
  Atom target_node;
  std::string what;

  PendingCall(const ServerRef& to, Term request) : PendingCall(to, [&request](const Pid& target, const From& from) {
    if (!target.is_null()) {
      send(target, tuple(kCall, tuple(from.pid, from.tag), std::move(request)));
    }
  }, &request) {}

  // `request` non-null: a Term request, which can also go to {name, node}.
  PendingCall(const ServerRef& to, const detail::RequestSender& sender, Term* request = nullptr)
      : what(to.to_string()) {
    const bool remote_name = to.pid.is_null() && !(to.node == Atom()) && !(to.node == node::self());
    if (!to.pid.is_null()) {
      target = to.pid;
    } else if (!remote_name) {
      auto p = whereis(to.name);
      if (!p) throw CallError(atom("noproc"), "no process: nothing is registered as " + std::string(to.name.name()));
      target = *p;
    }
    const Pid me = self();
    if (me.is_null()) throw std::logic_error("gen_server::call needs a calling process or Mailbox");
    if (!target.is_null()) {
      mref = monitor(target);
      tag = mref;
      target_node = target.node;
      sender(target, From{me, tag});
    } else {
      if (request == nullptr) throw CallError(atom("badarg"), "only Term requests go to a name on another node");
      // monitor the name there (noproc if it is not registered, noconnection if the node goes)
      mref = detail::monitor_name(to.name, to.node);
      tag = mref;
      target_node = to.node;
      send(to.name, to.node, tuple(kCall, tuple(me, tag), std::move(*request)));
    }
  }

  bool matches(const MessageRef& m) const {
    if (m.is<Term>()) {
      const Term& t = m.get<Term>();
      return t.is_tuple() && t.size() == 2 && t[0].is_ref() && t[0].as_ref() == tag;
    }
    return m.is<Down>() && m.get<Down>().ref == mref;
  }

  void cleanup() { demonitor(mref, true); }

  Term finish(std::optional<Message> m) {
    cleanup();
    if (!m) throw CallError(atom("timeout"), "time out: no reply from " + what);
    if (m->is<Down>()) throw detail::call_failure(m->get<Down>().reason, what, target_node);
    return m->take<Term>()[1];
  }
};

}  // namespace

namespace gen_server {

Pid start(std::unique_ptr<GenServer> server, StartOptions opts) {
  GenServerAccess::parent(*server) = self();
  return detail::start_registered(server_loop(std::move(server)), opts.name, opts.link);
}

Async<Term> call(ServerRef to, Term request, std::chrono::milliseconds timeout) {
  PendingCall c(to, std::move(request));
  std::optional<Message> m = co_await receive<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout);
  co_return c.finish(std::move(m));
}

Term call(Mailbox& mb, ServerRef to, Term request, std::chrono::milliseconds timeout) {
  PendingCall c(to, std::move(request));
  return c.finish(mb.receive<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout));
}

void cast(ServerRef to, Term msg) {
  Term m = tuple(kCast, std::move(msg));
  if (!to.pid.is_null()) {
    send(to.pid, std::move(m));
  } else if (to.node == Atom()) {
    send(to.name, std::move(m));
  } else {
    send(to.name, to.node, std::move(m));
  }
}

void reply(const From& to, Term value) { send(to.pid, tuple(Term(to.tag), std::move(value))); }

}  // namespace gen_server

namespace detail {
CallError call_failure(const Term& r, const std::string& what, Atom node) {
  if (r.is_atom("noproc")) return CallError(r, "no process: " + what + " is not alive or not registered");
  if (r.is_atom("noconnection")) return CallError(r, "no connection to " + std::string(node.name()));
  return CallError(r, what + " exited while serving the call: " + r.to_string());
}

Pid start_registered(Proc body, Atom name, bool link) {
  const bool named = !(name == Atom());
  auto taken = [&] { return std::invalid_argument("name " + std::string(name.name()) + " is already registered"); };
  if (named && whereis(name)) throw taken();
  const Pid pid = spawn_frame(body.release(), {.link = link}, {}, nullptr);
  if (named && !register_name(name, pid)) {
    exit(pid, atom("kill"));
    throw taken();
  }
  return pid;
}

Async<Term> call_with(ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout) {
  PendingCall c(to, send_request);
  std::optional<Message> m = co_await receive<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout);
  co_return c.finish(std::move(m));
}
Term call_with(Mailbox& mb, ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout) {
  PendingCall c(to, send_request);
  return c.finish(mb.receive<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout));
}
}  // namespace detail
}  // namespace nodus
