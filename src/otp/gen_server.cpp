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
  static bool& terminated(GenServer& s) { return s.terminated_; }
};

namespace {

const Atom kCall = atom("$gen_call");
const Atom kCast = atom("$gen_cast");
const Atom kStop = atom("$gen_stop");

// OTP's crash report for a server that ends abnormally, cut and rate-limited (the last message
// may come from the network).
void crash_report(const GenServer& s, const Term& reason, const std::optional<Message>& last, const Pid& client) {
  if (is_normal_exit(reason)) return;
  std::string text = "GenServer " + to_string(self()) + " terminating\n** (stop) " + reason.to_string(1000);
  if (last) {
    text += "\nLast message" + (client.is_null() ? std::string() : " (from " + to_string(client) + ")") + ": " +
            last->to_string(1000);
  }
  std::optional<Term> st;
  try {
    st = s.format_status();
  } catch (...) {
    st.reset();
  }
  text += "\nState: " + (st ? st->to_string(1000) : std::string("(not printed: no GenServer::format_status)"));
  if (!client.is_null()) text += "\nClient " + to_string(client) + (is_process_alive(client) ? " is alive" : " is dead");
  log_limited(spdlog::level::err, "crash " + to_string(self()), text, 4000);  // (per process: one crash each)
}

// Ends the server: terminate(reason) (its own failure replaces the reason, as in OTP), the
// crash report, then the exit.
[[noreturn]] void stop_server(GenServer& s, Term reason, const std::optional<Message>& last = std::nullopt,
                              const Pid& client = {}) {
  try {
    s.terminate(reason);
  } catch (...) {
    reason = exit_reason_of(std::current_exception());
  }
  crash_report(s, reason, last, client);
  GenServerAccess::terminated(s) = true;
  exit_self(std::move(reason));
}

bool is_call(const Term& t) {
  return t.is_tuple() && t.size() == 3 && t[0].is_atom() && t[0].as_atom() == kCall && t[1].is_tuple() &&
         t[1].size() == 2 && t[1][0].is_pid() && t[1][1].is_ref();
}

Proc server_loop(std::unique_ptr<GenServer> s, detail::Starter st) {
  if (!detail::start_begin(st)) co_return;
  try {
    s->init();
  } catch (...) {
    const Term why = exit_reason_of(std::current_exception());
    if (!is_normal_exit(why)) {
      log_limited(spdlog::level::err, "crash " + to_string(self()),
                  "GenServer " + to_string(self()) + " failed to start: init: " + why.to_string(1000));
    }
    detail::start_ack(st, why);
    exit_self(why);
  }
  detail::start_ack(st);
  std::optional<Message> last;  // the message a failing callback was handling
  Pid client;
  try {
    s->handle_continue();
    if (auto& why = GenServerAccess::stop_reason(*s)) stop_server(*s, std::move(*why));
    for (;;) {
      last.reset();
      client = Pid{};
      last.emplace(co_await receive_any());
      Message& m = *last;
      if (m.is<Term>()) {
        const Term& t = m.get<Term>();
        if (is_call(t)) {
          const From from{t[1][0].as_pid(), t[1][1].as_ref()};
          client = from.pid;
          GenServer::CallResult r = s->handle_call(t[2], from);
          if (r.reply) send(from.pid, tuple(Term(from.tag), std::move(*r.reply)));
          if (r.stop) stop_server(*s, std::move(*r.stop), last, client);
          continue;
        }
        if (t.is_tuple() && t.size() == 2 && t[0].is_atom() && t[0].as_atom() == kCast) {
          s->handle_cast(t[1]);
          if (auto& why = GenServerAccess::stop_reason(*s)) stop_server(*s, std::move(*why), last);
          continue;
        }
        if (t.is_tuple() && t.size() == 2 && t[0].is_atom() && t[0].as_atom() == kStop) {
          stop_server(*s, t[1]);  // gen_server:stop (proc_lib:stop): terminate, then exit
        }
      }
      if (m.is<ExitMsg>() && m.get<ExitMsg>().from == GenServerAccess::parent(*s)) {
        // a trapped exit from the parent (a supervisor's shutdown): terminate, as OTP does
        stop_server(*s, m.get<ExitMsg>().reason);
      }
      s->handle_info(m);
      if (auto& why = GenServerAccess::stop_reason(*s)) stop_server(*s, std::move(*why), last);
    }
  } catch (const ProcessExit& e) {
    if (GenServerAccess::terminated(*s)) throw;  // stop_server's own exit: terminate ran
    stop_server(*s, e.reason, last, client);     // exit_self in a callback
  } catch (...) {
    stop_server(*s, exit_reason_of(std::current_exception()), last, client);
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

namespace {
// The server's body, made once the starter is known; its parent is the caller.
std::function<Proc(const detail::Starter&)> server_body(std::unique_ptr<GenServer> server) {
  GenServerAccess::parent(*server) = self();
  auto holder = std::make_shared<std::unique_ptr<GenServer>>(std::move(server));
  return [holder](const detail::Starter& st) { return server_loop(std::move(*holder), st); };
}
}  // namespace

Expected<Pid> start(std::unique_ptr<GenServer> server, StartOptions opts) {
  return detail::start_acked(server_body(std::move(server)), opts.name, opts.link, opts.timeout, "gen_server::start");
}

Async<Expected<Pid>> start_async(std::unique_ptr<GenServer> server, StartOptions opts) {
  return detail::start_acked_async(server_body(std::move(server)), opts.name, opts.link, opts.timeout);
}

Async<Term> call(ServerRef to, Term request, std::chrono::milliseconds timeout) {
  const Term asked = request;  // for OTP's exit shape, should the call fail uncaught
  try {
    PendingCall c(to, std::move(request));
    std::optional<Message> m =
        co_await detail::receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout);
    co_return c.finish(std::move(m));
  } catch (CallError& e) {
    e.exit = detail::call_exit(e.reason, to, asked, timeout);
    throw;
  }
}

Term call(Mailbox& mb, ServerRef to, Term request, std::chrono::milliseconds timeout) {
  const Term asked = request;
  try {
    PendingCall c(to, std::move(request));
    return c.finish(mb.receive_reply<Message>([&c](const MessageRef& r) { return c.matches(r); }, timeout));
  } catch (CallError& e) {
    e.exit = detail::call_exit(e.reason, to, asked, timeout);
    throw;
  }
}


Expected<Term> stop(Mailbox& mb, ServerRef server, Term reason, std::chrono::milliseconds timeout) {
  return detail::stop_process(mb, server, std::move(reason), timeout);
}
Async<Expected<Term>> stop(ServerRef server, Term reason, std::chrono::milliseconds timeout) {
  return detail::stop_process(server, std::move(reason), timeout);
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

Term MultiCallResult::to_term() const {
  std::vector<Term> ok;
  ok.reserve(replies.size());
  for (const auto& [n, r] : replies) ok.push_back(tuple(n, r));
  std::vector<Term> bad(bad_nodes.begin(), bad_nodes.end());
  return tuple(Term::list(std::move(ok)), Term::list(std::move(bad)));
}

namespace {


// The calls of a multi_call, all sent; a node whose call could not even be sent is bad at once.
struct MultiCall {
  std::vector<std::pair<Atom, std::optional<PendingCall>>> calls;
  MultiCallResult out;
  Clock::time_point deadline;

  MultiCall(const std::vector<Atom>& nodes, Atom name, const Term& request, std::chrono::milliseconds timeout)
      : deadline(Clock::now() + std::min(timeout, std::chrono::milliseconds(std::chrono::hours(24 * 365)))) {
    calls.reserve(nodes.size());
    for (Atom n : nodes) {
      try {
        calls.emplace_back(n, PendingCall(n == node::self() ? ServerRef(name) : ServerRef(name, n), request));
      } catch (const CallError&) {
        calls.emplace_back(n, std::nullopt);
      }
    }
  }
  void take(Atom n, PendingCall& c, std::optional<Message> m) {
    try {
      out.replies.emplace_back(n, c.finish(std::move(m)));
    } catch (const CallError&) {
      out.bad_nodes.push_back(n);
    }
  }
};
}  // namespace

Async<MultiCallResult> multi_call(std::vector<Atom> nodes, Atom name, Term request, std::chrono::milliseconds timeout) {
  MultiCall mc(nodes, name, request, timeout);
  for (auto& [n, c] : mc.calls) {
    if (!c) {
      mc.out.bad_nodes.push_back(n);
      continue;
    }
    PendingCall& pc = *c;
    // (a full receive, not receive_reply: a later call's reply may have come before this one's)
    auto m = co_await receive<Message>([&pc](const MessageRef& r) { return pc.matches(r); }, detail::time_left(mc.deadline));
    mc.take(n, pc, std::move(m));
  }
  co_return std::move(mc.out);
}

MultiCallResult multi_call(Mailbox& mb, const std::vector<Atom>& nodes, Atom name, const Term& request,
                           std::chrono::milliseconds timeout) {
  MultiCall mc(nodes, name, request, timeout);
  for (auto& [n, c] : mc.calls) {
    if (!c) {
      mc.out.bad_nodes.push_back(n);
      continue;
    }
    PendingCall& pc = *c;
    mc.take(n, pc, mb.receive<Message>([&pc](const MessageRef& r) { return pc.matches(r); }, detail::time_left(mc.deadline)));
  }
  return std::move(mc.out);
}

void abcast(const std::vector<Atom>& nodes, Atom name, const Term& msg) {
  for (Atom n : nodes) cast(n == node::self() ? ServerRef(name) : ServerRef(name, n), msg);
}

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

namespace {
// gen_server:stop's protocol: {'$gen_stop', Reason} to the server, then its Down.
Expected<Term> stop_outcome(const ServerRef& to, const Term& reason, std::optional<Down> d) {
  if (!d) return Failure{Errc::timeout, atom("timeout"), "time out: " + to.to_string() + " did not stop"};
  if (d->reason.is_atom("noproc")) return Failure{Errc::noproc, atom("noproc"), "no process: " + to.to_string()};
  if (d->reason.is_atom("noconnection")) {
    return Failure{Errc::nodedown, tuple(atom("nodedown"), to.node), "no connection to " + to.to_string()};
  }
  if (!(d->reason == reason)) {
    return Failure{Errc::exited, d->reason, to.to_string() + " exited with " + d->reason.to_string(1000)};
  }
  return Term(atom("ok"));
}

Ref stop_request(const ServerRef& to, const Term& reason) {
  const Ref ref = make_ref();
  Pid target;
  try {
    target = local_target(to);
  } catch (const CallError&) {
    return Ref{};
  }
  if (target.is_null()) {
    detail::monitor_name_as(to.name, to.node, ref);
    send(to.name, to.node, tuple(kStop, reason));
  } else {
    detail::monitor_as(target, ref);
    send(target, tuple(kStop, reason));
  }
  return ref;
}
}  // namespace

Expected<Term> stop_process(Mailbox& mb, const ServerRef& server, Term reason, std::chrono::milliseconds timeout) {
  const Ref ref = stop_request(server, reason);
  if (ref == Ref{}) return stop_outcome(server, reason, Down{ref, Pid{}, atom("noproc")});
  auto d = mb.receive<Down>([ref](const Down& x) { return x.ref == ref; }, timeout);
  if (!d) demonitor(ref, true);
  return stop_outcome(server, reason, std::move(d));
}

Async<Expected<Term>> stop_process(ServerRef server, Term reason, std::chrono::milliseconds timeout) {
  const Ref ref = stop_request(server, reason);
  if (ref == Ref{}) co_return stop_outcome(server, reason, Down{ref, Pid{}, atom("noproc")});
  auto d = co_await receive<Down>([ref](const Down& x) { return x.ref == ref; }, timeout);
  if (!d) demonitor(ref, true);
  co_return stop_outcome(server, reason, std::move(d));
}

Term server_term(const ServerRef& to) {
  if (!to.pid.is_null()) return Term(to.pid);
  if (to.node == Atom()) return Term(to.name);
  return tuple(to.name, to.node);
}

Term call_exit(const Term& reason, const ServerRef& to, const Term& request, std::chrono::milliseconds timeout) {
  const Term t = timeout >= std::chrono::hours(24) ? Term(atom("infinity")) : Term(static_cast<long>(timeout.count()));
  return tuple(reason, tuple(atom("gen_server"), atom("call"), Term::list({server_term(to), request, t})));
}

namespace {
thread_local StartCollector* t_collector = nullptr;

Failure start_failure(const Term& why) {
  if (why.is_tuple(2, "already_started")) {
    return {Errc::already_started, why, "already started: the name is taken by " + why[1].to_string()};
  }
  return {Errc::init_failed, why, "failed to start: " + why.to_string(1000)};
}

bool ack_of(const MessageRef& m, const Pid& pid, const Ref& ref) {
  if (m.is<InitAck>()) return m.get<InitAck>().from == pid;
  return m.is<Down>() && m.get<Down>().ref == ref;
}

// A name already taken at the start (the new process checks again as it registers).
std::optional<Failure> taken(Atom name) {
  if (name == Atom()) return std::nullopt;
  if (auto p = whereis(name)) return start_failure(tuple(atom("already_started"), *p));
  return std::nullopt;
}

Expected<Pid> ack_outcome(std::optional<Message> m, const Pid& pid, const Ref& ref) {
  if (!m) {
    demonitor(ref, true);
    exit(pid, atom("kill"));  // as OTP's start does when its timeout passes
    return Failure{Errc::timeout, atom("timeout"), "time out: " + to_string(pid) + " did not finish its init"};
  }
  if (m->is<Down>()) return start_failure(m->get<Down>().reason);
  demonitor(ref, true);
  InitAck a = m->take<InitAck>();
  if (a.error) return start_failure(*a.error);
  return pid;
}
}  // namespace

StartCollector::StartCollector() : previous(t_collector) { t_collector = this; }
StartCollector::~StartCollector() { t_collector = previous; }

bool start_begin(const Starter& s) {
  if (!s.link_to.is_null()) link(s.link_to);
  if (s.name == Atom()) return true;
  if (register_name(s.name, self())) return true;
  const auto holder = whereis(s.name);
  start_ack(s, tuple(atom("already_started"), holder ? Term(*holder) : Term(atom("undefined"))));
  return false;
}

void start_ack(const Starter& s, std::optional<Term> error) {
  if (error && !(s.name == Atom()) && whereis(s.name) == self()) {
    unregister_name(s.name);  // as OTP's init_it: the name is free when the starter hears of it
  }
  if (!s.ack_to.is_null()) send(s.ack_to, InitAck{self(), std::move(error)});
}

Expected<Pid> start_acked(const std::function<Proc(const Starter&)>& make, Atom name, bool link,
                        std::chrono::milliseconds timeout, const char* what) {
  if (auto f = taken(name)) return *f;
  if (on_scheduler_thread()) {
    if (t_collector == nullptr) {
      throw std::logic_error(std::string(what) +
                             " in a process body would block its worker: co_await the _async variant");
    }
    // in a supervisor's ChildSpec::start: linked now, the supervisor waits for the ack
    const Pid pid = spawn_frame(make(Starter{self(), Pid{}, name}).release(), {.link = link}, {}, nullptr);
    t_collector->started.push_back(pid);
    return pid;
  }
  const Pid caller = self();
  Mailbox waiter;  // (this thread's process while it waits; the caller's own mailbox is untouched)
  Ref ref;
  const Pid pid = spawn_frame(make(Starter{waiter.pid(), link ? caller : Pid{}, name}).release(), {.monitor = true},
                              {}, &ref);
  auto m = waiter.receive<Message>([pid, ref](const MessageRef& r) { return ack_of(r, pid, ref); }, timeout);
  return ack_outcome(std::move(m), pid, ref);
}

Async<Expected<Pid>> start_acked_async(std::function<Proc(const Starter&)> make, Atom name, bool link,
                                     std::chrono::milliseconds timeout) {
  if (auto f = taken(name)) co_return *f;
  Ref ref;
  const Pid pid = spawn_frame(make(Starter{self(), Pid{}, name}).release(), {.link = link, .monitor = true}, {}, &ref);
  auto m = co_await receive<Message>([pid, ref](const MessageRef& r) { return ack_of(r, pid, ref); }, timeout);
  co_return ack_outcome(std::move(m), pid, ref);
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
