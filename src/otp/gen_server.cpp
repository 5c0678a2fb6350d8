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
  // (rate-limited per server and cut: whoever can send to it chooses what is logged)
  const std::string who = to_string(self());
  log_limited(spdlog::level::warn, who, who + ": unexpected message " + msg.to_string(200));
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

// The server `to` names on this node: its pid, or the pid registered under its name here
// (noproc if none); a null pid for a name on another node.
Pid local_target(const ServerRef& to) {
  if (!to.pid.is_null()) return to.pid;
  if (!(to.node == Atom()) && !(to.node == node::self())) return Pid{};
  auto p = whereis(to.name);
  if (!p) throw CallError(atom("noproc"), "no process: nothing is registered as " + std::string(to.name.name()));
  return *p;
}

Pid calling_process() {
  const Pid me = self();
  if (me.is_null()) throw std::logic_error("gen_server::call needs a calling process or Mailbox");
  return me;
}

// One call in flight: what it waits for, and how each outcome reads.
struct PendingCall {
  ServerRef to;      // as the errors name it
  Ref tag;           // the reply's tag, and the ref of the monitor of the server
  Atom target_node;

  PendingCall(const ServerRef& server, Term request) : to(server), tag(make_ref()) {
    target_node = detail::send_call(to, tag, std::move(request));
  }

  // A typed request, for a server on this node only.
  PendingCall(const ServerRef& server, const detail::RequestSender& sender) : to(server), tag(make_ref()) {
    const Pid target = local_target(to);
    if (target.is_null()) throw CallError(atom("badarg"), "only Term requests go to a name on another node");
    const Pid me = calling_process();
    if (target == me) throw CallError(atom("calling_self"), "calling_self: " + to.to_string() + " is the calling process");
    detail::monitor_as(target, tag);
    target_node = target.node;
    sender(target, From{me, tag});
  }

  bool matches(const MessageRef& m) const {
    if (m.is<Term>()) {
      const Term& t = m.get<Term>();
      return t.is_tuple() && t.size() == 2 && t[0].is_ref() && t[0].as_ref() == tag;
    }
    return m.is<Down>() && m.get<Down>().ref == tag;
  }

  Term finish(std::optional<Message> m) {
    demonitor(tag, true);
    if (!m) {
      detail::ignore_reply(tag);  // a reply after the timeout is dropped, not left behind
      throw CallError(atom("timeout"), "time out: no reply from " + to.to_string());
    }
    if (m->is<Down>()) throw detail::call_failure(m->get<Down>().reason, to.to_string(), target_node);
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
  std::optional<Message> m = co_await detail::receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout);
  co_return c.finish(std::move(m));
}

Term call(Mailbox& mb, ServerRef to, Term request, std::chrono::milliseconds timeout) {
  PendingCall c(to, std::move(request));
  return c.finish(mb.receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout));
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
Atom send_call(const ServerRef& to, const Ref& tag, Term request) {
  const Pid target = local_target(to);
  const Pid me = calling_process();
  if (target == me) {
    // OTP exits the caller at once with calling_self (the request would wait behind this call)
    throw CallError(atom("calling_self"), "calling_self: " + to.to_string() + " is the calling process");
  }
  Term call = tuple(kCall, tuple(me, tag), std::move(request));
  if (target.is_null()) {
    // monitor the name there (noproc if it is not registered, noconnection if the node goes)
    monitor_name_as(to.name, to.node, tag);
    send(to.name, to.node, std::move(call));
    return to.node;
  }
  monitor_as(target, tag);
  send(target, std::move(call));
  return target.node;
}

CallError call_failure(const Term& r, const std::string& what, Atom node) {
  if (r.is_atom("noproc")) return CallError(r, "no process: " + what + " is not alive or not registered");
  if (r.is_atom("noconnection")) {
    // as gen:call turns the monitor's noconnection into {nodedown, Node}
    return CallError(tuple(atom("nodedown"), node), "no connection to " + std::string(node.name()));
  }
  return CallError(r, what + " exited while serving the call: " + r.to_string(1000));
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
  std::optional<Message> m = co_await detail::receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout);
  co_return c.finish(std::move(m));
}
Term call_with(Mailbox& mb, ServerRef to, RequestSender send_request, std::chrono::milliseconds timeout) {
  PendingCall c(to, send_request);
  return c.finish(mb.receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout));
}
}  // namespace detail
}  // namespace nodus
