// The gateway: one thread owning a listening socket and its clients' ZMTP streams (poll), and
// per authenticated client one process on this node (the client's identity: its pid sends, it
// is the group leader of what the client spawns, it holds the client's names and monitors).
// Requests go from the thread to the client's process as typed messages; what blocks (a task,
// a call) runs in a helper process; replies and pushes come back to the thread through one
// mutexed queue and an eventfd. docs/gateway.md says what a client sees.
#include "gateway.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "dist/json.hpp"
#include "runtime/context.hpp"
#include "nodus/gen_server.hpp"
#include "nodus/io.hpp"
#include "nodus/log.hpp"
#include "nodus/message.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/task.hpp"

namespace nodus::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- what travels between the gateway thread and the client processes

struct Request {  // thread -> client process
  Term req;
  std::string id;  // the request's "id" as JSON ("" if none)
};
struct Stop {};
struct Overflow {};
// a served function was called: to the serving client's process
struct ServedCall {
  Pid caller;
  Ref ref;
  std::string function;
  Term args;
  bool answer;  // the caller waits for the client's result
};

// Replies and pushes, from any thread to the gateway thread.
struct Outbox {
  std::mutex mu;
  struct Item {
    std::uint64_t client;
    bool reply;
    std::string json;
  };
  std::vector<Item> items;
  int efd = -1;
  bool closed = false;
  void post(std::uint64_t client, bool reply, std::string json) {
    {
      std::lock_guard lock(mu);
      if (closed) return;
      items.push_back({client, reply, std::move(json)});
    }
    const std::uint64_t one = 1;
    (void)!::write(efd, &one, sizeof one);
  }
};

std::string quote(std::string_view s) { return dist::term_to_json(Term(std::string(s))); }
std::string with_id(const std::string& id, const std::string& rest) {
  return id.empty() ? "{" + rest + "}" : "{\"id\":" + id + "," + rest + "}";
}
std::string ok_json(const std::string& id, const Term& v) { return with_id(id, "\"ok\":" + dist::term_to_json(v)); }
std::string error_json(const std::string& id, const Term& reason, std::string_view text) {
  return with_id(id, "\"error\":{\"reason\":" + dist::term_to_json(reason) + ",\"text\":" + quote(text) + "}");
}
std::string push_json(std::string_view kind, const Term& v) { return "{" + quote(kind) + ":" + dist::term_to_json(v) + "}"; }

Term bin_key(const char* k) { return Term(std::string(k)); }
const Term* field(const Term& m, const char* k) { return m.is_map() ? m.find(bin_key(k)) : nullptr; }

std::optional<Atom> atom_of(const Term* t) {
  if (t == nullptr) return std::nullopt;
  if (t->is_atom()) return t->as_atom();
  if (t->is_binary() && !t->as_binary().empty() && t->as_binary().size() < 256) return detail::network_atom(t->as_binary());
  return std::nullopt;
}

// "to": a pid, a name (this node), or {"name": N, "node": Node}
std::optional<ServerRef> target_of(const Term* t) {
  if (t == nullptr) return std::nullopt;
  if (t->is_pid()) return ServerRef(t->as_pid());
  if (t->is_map()) {
    auto name = atom_of(field(*t, "name"));
    auto node = atom_of(field(*t, "node"));
    if (!name) return std::nullopt;
    return node ? ServerRef(*name, *node) : ServerRef(*name);
  }
  if (auto name = atom_of(t)) return ServerRef(*name);
  return std::nullopt;
}

long long timeout_of(const Term& req, long long dflt) {
  const Term* t = field(req, "timeout");
  if (t == nullptr || !t->is_integer()) return dflt;
  return std::clamp<long long>(t->as_int(), 0, 3600 * 1000);
}

// ---- served functions: name -> the client process serving it

struct Served {
  Pid client;
  std::optional<Term> result;  // a fixed result: the caller does not wait for the client
  std::chrono::milliseconds timeout{5000};
};
std::mutex g_served_mu;
std::unordered_map<std::string, Served> g_served;

std::atomic<std::size_t> g_clients{0};  // connected clients (for `stats`)

std::optional<Served> served(const std::string& name) {
  std::lock_guard lock(g_served_mu);
  auto it = g_served.find(name);
  if (it == g_served.end()) return std::nullopt;
  return it->second;
}

void unserve_all(const Pid& client) {
  std::lock_guard lock(g_served_mu);
  std::erase_if(g_served, [&](const auto& e) { return e.second.client == client; });
}

Term gone_reason(const std::string& function) {
  return tuple(atom("gateway_client_gone"), Term(function));
}

// What a task or a spawn of a served function runs on this node.
Async<Term> call_served(std::string function, Term args) {
  auto s = served(function);
  if (!s) exit_self(tuple(atom("not_served"), Term(function)));
  const Ref ref = monitor(s->client);
  send(s->client, ServedCall{self(), ref, function, args, !s->result});
  if (s->result) {
    demonitor(ref, true);
    co_return *s->result;
  }
  auto m = co_await receive<Message>(
      [&](const MessageRef& r) {
        if (r.is<Down>()) return r.get<Down>().ref == ref;
        if (!r.is<Term>()) return false;
        const Term& t = r.get<Term>();
        return t.is_tuple() && t.size() == 2 && t[0].is_ref() && t[0].as_ref() == ref;
      },
      s->timeout);
  if (!m) {
    demonitor(ref, true);
    exit_self(tuple(atom("timeout"), Term(function)));
  }
  if (m->is<Down>()) exit_self(gone_reason(function));
  demonitor(ref, true);
  Term answer = m->get<Term>()[1];  // {ok, V} | {error, R}
  if (answer.is_tuple(2, "ok")) co_return answer[1];
  exit_self(answer.is_tuple(2, "error") ? answer[1] : answer);
}

// A spawn of a served function (the arguments are the coroutine's own: a capturing lambda
// coroutine would outlive its captures).
Proc spawn_served(std::string function, Term args) { co_await call_served(std::move(function), std::move(args)); }

// ---- the client's process

struct ClientState {
  std::shared_ptr<Outbox> out;
  std::uint64_t id;
  std::vector<Atom> names;
  std::map<long long, std::pair<Pid, Ref>> calls;  // served calls waiting for the client's result
  std::set<Pid> helpers;  // its tasks and calls in progress (linked): they end with the client
  long long next_call = 1;
  void reply(const std::string& rid, const Term& v) const { out->post(id, true, ok_json(rid, v)); }
  void fail(const std::string& rid, const Term& why, std::string_view text) const {
    out->post(id, true, error_json(rid, why, text));
  }
  void push(std::string_view kind, const Term& v) const { out->post(id, false, push_json(kind, v)); }
};

// A request that may wait (a task, a call) runs in its own process, so the client's others go on.
// It is linked to the client's process, which kills it when the client goes; a task it started
// is linked to it in turn, so that goes too. It traps exits: a task that fails is an error reply
// (its DOWN), not the helper's end.
Proc helper(std::shared_ptr<Outbox> out, std::uint64_t client, std::string rid, std::function<Async<Term>()> f) {
  trap_exit(true);
  try {
    Term v = co_await f();
    out->post(client, true, ok_json(rid, v));
  } catch (const Error& e) {
    out->post(client, true, error_json(rid, e.reason, e.what()));
  } catch (const std::exception& e) {
    out->post(client, true, error_json(rid, atom("badarg"), e.what()));
  }
}

// Task.Supervisor.async + await, linked to the helper (so it ends with the client).
Async<Term> run_task(ServerRef sup, std::string function, Term args, std::chrono::milliseconds timeout) {
  Task t = co_await task_supervisor::async(sup, std::move(function), std::move(args));
  co_return co_await task::await(t, timeout);
}

Term args_of(const Term& req) {
  const Term* a = field(req, "args");
  if (a == nullptr) return Term::list({});
  if (a->is_list()) return *a;
  return Term::list({*a});
}

// One request in the client's process. Returns false to end the process.
Async<void> handle(ClientState& st, Request r) {
  const Term& req = r.req;
  const std::string& rid = r.id;
  const std::string op = field(req, "op")->as_binary();
  const auto bad = [&](std::string_view what) { st.fail(rid, atom("badarg"), std::string(op) + ": " + std::string(what)); };
  if (op == "send") {
    auto to = target_of(field(req, "to"));
    const Term* msg = field(req, "message");
    if (!to || msg == nullptr) co_return bad("needs \"to\" (a pid, a name or {name, node}) and \"message\"");
    if (to->pid != Pid{}) {
      send(to->pid, *msg);
    } else if (to->node != Atom()) {
      send(to->name, to->node, *msg);
    } else if (!send(to->name, *msg)) {
      co_return st.fail(rid, atom("noproc"), "send: nothing is registered as " + std::string(to->name.name()));
    }
    co_return st.reply(rid, atom("ok"));
  }
  if (op == "cast") {
    auto to = target_of(field(req, "to"));
    const Term* msg = field(req, "message");
    if (!to || msg == nullptr) co_return bad("needs \"to\" and \"message\"");
    gen_server::cast(*to, *msg);
    co_return st.reply(rid, atom("ok"));
  }
  if (op == "call") {
    auto to = target_of(field(req, "to"));
    const Term* msg = field(req, "request");
    if (!to || msg == nullptr) co_return bad("needs \"to\" and \"request\"");
    const auto timeout = std::chrono::milliseconds(timeout_of(req, 5000));
    st.helpers.insert(
        spawn_link(helper, st.out, st.id, rid, [to = *to, m = *msg, timeout]() { return gen_server::call(to, m, timeout); }));
    co_return;
  }
  if (op == "task") {
    auto sup = target_of(field(req, "supervisor"));
    const Term* fn = field(req, "function");
    if (!sup || fn == nullptr || !fn->is_binary()) co_return bad("needs \"supervisor\" and \"function\"");
    const auto timeout = std::chrono::milliseconds(timeout_of(req, 5000));
    st.helpers.insert(spawn_link(helper, st.out, st.id, rid, [sup = *sup, f = fn->as_binary(), args = args_of(req), timeout]() {
      return run_task(sup, f, args, timeout);
    }));
    co_return;
  }
  if (op == "spawn") {
    const Term* fn = field(req, "function");
    auto node = atom_of(field(req, "node"));
    if (fn == nullptr || !fn->is_binary()) co_return bad("needs \"function\"");
    const Term* l = field(req, "link");
    const bool link = l != nullptr && l->is_atom("true");
    try {
      Spawned s = co_await spawn_request(node ? *node : node::self(), fn->as_binary(), args_of(req),
                                         {.link = link, .group_leader = self()});
      st.reply(rid, Term(s.pid));
    } catch (const Error& e) {
      st.fail(rid, e.reason, e.what());
    }
    co_return;
  }
  if (op == "register" || op == "unregister") {
    auto name = atom_of(field(req, "name"));
    if (!name) co_return bad("needs \"name\"");
    if (op == "unregister") {
      if (std::erase(st.names, *name) == 0) co_return st.fail(rid, atom("badarg"), "unregister: not this client's name");
      unregister_name(*name);
      co_return st.reply(rid, atom("ok"));
    }
    if (!register_name(*name, self())) {
      co_return st.fail(rid, atom("badarg"), "register: " + std::string(name->name()) + " is taken");
    }
    st.names.push_back(*name);
    co_return st.reply(rid, Term(self()));
  }
  if (op == "serve") {
    const Term* fns = field(req, "functions");
    if (fns == nullptr || !fns->is_list() || fns->size() == 0 || fns->size() > 100) {
      co_return bad("needs \"functions\": a list of 1 to 100 names");
    }
    for (const Term& f : fns->elems()) {
      if (!f.is_binary() || f.as_binary().empty() || f.as_binary().size() > 255) co_return bad("a function name is a string");
    }
    Served s{self(), std::nullopt, std::chrono::milliseconds(timeout_of(req, 5000))};
    if (const Term* res = field(req, "result")) s.result = *res;
    if (const Term* sup = field(req, "supervisor")) {
      auto name = atom_of(sup);
      if (!name) co_return bad("\"supervisor\" is a name");
      if (!whereis(*name)) {
        auto started = co_await task_supervisor::start_async({.name = *name});
        if (!started && started.error().code != Errc::already_started) {
          co_return st.fail(rid, started.error().reason, started.error().text);
        }
      }
    }
    {
      std::lock_guard lock(g_served_mu);  // (a later serve of a name takes it over, as register_function does)
      for (const Term& f : fns->elems()) g_served[f.as_binary()] = s;
    }
    for (const Term& f : fns->elems()) {
      const std::string name = f.as_binary();
      task::register_function(name, [name](Term args) { return call_served(name, std::move(args)); });
      register_function(name, [name](Term args) { return spawn_served(name, std::move(args)); });
    }
    co_return st.reply(rid, atom("ok"));
  }
  if (op == "result") {
    const Term* c = field(req, "call");
    if (c == nullptr || !c->is_integer()) co_return bad("needs \"call\" (the id of a pushed call)");
    auto it = st.calls.find(c->as_int());
    if (it == st.calls.end()) co_return st.fail(rid, atom("badarg"), "result: no such call waits (it timed out?)");
    const auto [caller, ref] = it->second;
    st.calls.erase(it);
    if (const Term* e = field(req, "error")) {
      send(caller, tuple(Term(ref), tuple(atom("error"), *e)));
    } else {
      const Term* v = field(req, "value");
      send(caller, tuple(Term(ref), tuple(atom("ok"), v ? *v : Term(atom("ok")))));
    }
    co_return st.reply(rid, atom("ok"));
  }
  if (op == "monitor" || op == "demonitor") {
    if (op == "demonitor") {
      const Term* ref = field(req, "ref");
      if (ref == nullptr || !ref->is_ref()) co_return bad("needs \"ref\"");
      demonitor(ref->as_ref(), true);
      co_return st.reply(rid, atom("ok"));
    }
    if (auto n = atom_of(field(req, "node"))) {
      if (field(req, "to") == nullptr) {
        node::monitor(*n);
        co_return st.reply(rid, atom("ok"));
      }
    }
    auto to = target_of(field(req, "to"));
    if (!to) co_return bad("needs \"to\" (a pid, a name or {name, node}) or \"node\"");
    Ref ref;
    if (to->pid != Pid{}) {
      ref = monitor(to->pid);
    } else if (to->node == Atom() || to->node == node::self()) {
      auto p = whereis(to->name);
      if (!p) co_return st.fail(rid, atom("noproc"), "monitor: nothing is registered as " + std::string(to->name.name()));
      ref = monitor(*p);
    } else {
      ref = detail::monitor_name(to->name, to->node);
    }
    co_return st.reply(rid, Term(ref));
  }
  if (op == "stats") {
    co_return st.reply(rid, Term::map({{bin_key("clients"), Term(static_cast<long>(g_clients.load()))},
                                       {bin_key("processes"), Term(static_cast<long>(runtime::ctx().table.count()))},
                                       {bin_key("node"), Term(node::self())}}));
  }
  st.fail(rid, atom("badarg"), "unknown op '" + op.substr(0, 40) + "' (docs/gateway.md lists them)");
}

Proc client_body(std::shared_ptr<Outbox> out, std::uint64_t id) {
  trap_exit(true);
  ClientState st{std::move(out), id};
  for (;;) {
    Message m = co_await receive<Message>([](const MessageRef&) { return true; });
    if (m.is<Request>()) {
      co_await handle(st, m.take<Request>());
    } else if (m.is<Stop>()) {
      break;
    } else if (m.is<Overflow>()) {
      for (Atom n : st.names) unregister_name(n);
      st.names.clear();
      unserve_all(self());
    } else if (m.is<ServedCall>()) {
      ServedCall c = m.take<ServedCall>();
      Term call = Term::map({{bin_key("function"), Term(c.function)}, {bin_key("args"), c.args}});
      if (c.answer) {
        if (st.calls.size() >= 10000) st.calls.erase(st.calls.begin());
        const long long n = st.next_call++;
        st.calls.emplace(n, std::make_pair(c.caller, c.ref));
        call = Term::map({{bin_key("id"), Term(static_cast<long>(n))}, {bin_key("function"), Term(c.function)}, {bin_key("args"), c.args}});
      }
      st.push("call", call);
    } else if (m.is<io::Request>()) {
      st.push("io", Term(m.get<io::Request>().text));
    } else if (m.is<ExitMsg>()) {
      const auto& e = m.get<ExitMsg>();
      if (st.helpers.erase(e.from) != 0) continue;  // a task or call of the client's finished
      st.push("exit", Term::map({{bin_key("pid"), Term(e.from)}, {bin_key("reason"), e.reason}}));
    } else if (m.is<Down>()) {
      const auto& d = m.get<Down>();
      st.push("down", Term::map({{bin_key("ref"), Term(d.ref)}, {bin_key("pid"), Term(d.pid)}, {bin_key("reason"), d.reason}}));
    } else if (m.is<Term>()) {
      const Term& t = m.get<Term>();
      if (t.is_tuple(2, "nodedown")) {
        st.push("nodedown", t[1]);
      } else {
        st.push("message", t);
      }
    }
  }
  // the client is gone: its tasks and calls in progress end (and the tasks they started), and
  // whoever waits for one of its results gets an error now
  for (const Pid& h : st.helpers) exit(h, atom("kill"));
  unserve_all(self());
  for (const auto& [n, c] : st.calls) send(c.first, tuple(Term(c.second), tuple(atom("error"), atom("gateway_client_gone"))));
}

// ---- the gateway thread

struct Client {
  std::uint64_t id;
  std::unique_ptr<dist::zmtp::Stream> stream;
  std::string peer;  // address:port, for the log
  Clock::time_point since, last_heard;
  std::uint64_t heard = 0;
  bool authed = false;
  bool req = false;  // a REQ socket: one reply per request, pushes wait for `recv`
  std::string challenge;
  Pid proc;
  std::vector<std::string> envelope;
  std::size_t pending = 0;  // requests in progress
  bool owes_reply = false;  // REQ: a request is waiting for its reply
  std::deque<std::string> queue;  // REQ: pushes waiting for `recv`
  std::optional<std::pair<std::string, Clock::time_point>> recv_wait;  // REQ: a `recv` waiting (id, until)
  std::size_t dropped = 0;
  bool overflowed = false;
  bool closing = false;
  Clock::time_point last_ping{}, close_by{};
};

class Gateway {
 public:
  Gateway(GatewayOptions opts, std::string cookie, std::shared_ptr<const dist::zmtp::Curve> curve)
      : opts_(std::move(opts)), cookie_(std::move(cookie)), curve_(std::move(curve)), out_(std::make_shared<Outbox>()) {
    listen();
    out_->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (out_->efd < 0) throw std::runtime_error(std::string("gateway: eventfd: ") + std::strerror(errno));
    thread_ = std::thread([this] { run(); });
  }
  ~Gateway() {
    stop_.store(true);
    const std::uint64_t one = 1;
    (void)!::write(out_->efd, &one, sizeof one);
    thread_.join();
    {
      std::lock_guard lock(out_->mu);
      out_->closed = true;
    }
    for (auto& [id, c] : clients_) {
      if (c.proc != Pid{}) send(c.proc, Stop{});
    }
    clients_.clear();
    g_clients.store(0);
    ::close(listen_fd_);
    ::close(out_->efd);
  }
  std::uint16_t port() const { return port_; }

 private:
  void listen() {
    const std::string& ep = opts_.bind;
    const auto colon = ep.rfind(':');
    if (ep.rfind("tcp://", 0) != 0 || colon == std::string::npos || colon < 6) {
      throw std::runtime_error("bad gateway endpoint '" + ep + "': expected tcp://ADDR:PORT");
    }
    std::string host = ep.substr(6, colon - 6);
    if (host == "localhost") host = "127.0.0.1";
    if (host == "*") host = "0.0.0.0";
    sockaddr_in a{};
    a.sin_family = AF_INET;
    const long p = std::strtol(ep.c_str() + colon + 1, nullptr, 10);
    if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 || p < 0 || p > 65535) {
      throw std::runtime_error("bad gateway endpoint '" + ep + "': expected tcp://IPV4:PORT");
    }
    const bool loopback = (ntohl(a.sin_addr.s_addr) >> 24) == 127;
    if (!curve_ && !loopback) {
      if (!opts_.allow_remote) {
        throw std::runtime_error("gateway: in cookie mode it binds to loopback only ('" + ep +
                                 "' is not); use CURVE mode, or allow it explicitly (--gateway-allow-remote)");
      }
      logger().warn("gateway: cookie mode on {}, off loopback: anyone on that network can see requests", ep);
    }
    a.sin_port = htons(static_cast<std::uint16_t>(p));
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 128) != 0) {
      const std::string why = std::strerror(errno);
      ::close(listen_fd_);
      throw std::runtime_error("gateway: cannot listen on " + ep + ": " + why);
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    logger().info("gateway: listening on tcp://{}:{} ({} mode)", host, port_, curve_ ? "CURVE" : "cookie");
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    auto next_tick = Clock::now() + tick();
    while (!stop_.load()) {
      fds.clear();
      ids.clear();
      fds.push_back({listen_fd_, POLLIN, 0});
      fds.push_back({out_->efd, POLLIN, 0});
      for (auto& [id, c] : clients_) {
        short ev = c.closing ? 0 : POLLIN;
        if (c.stream->has_output()) ev |= POLLOUT;
        fds.push_back({c.stream->fd(), ev, 0});
        ids.push_back(id);
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now()).count();
      ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait, 0, 1000)));
      if (fds[0].revents & POLLIN) accept_one();
      if (fds[1].revents & POLLIN) {
        std::uint64_t n;
        (void)!::read(out_->efd, &n, sizeof n);
      }
      deliver_outbox();
      for (std::size_t i = 0; i < ids.size(); ++i) {
        auto it = clients_.find(ids[i]);
        if (it == clients_.end()) continue;
        Client& c = it->second;
        if (!c.closing && (fds[i + 2].revents & (POLLIN | POLLERR | POLLHUP))) read_client(c);
        if (!c.closing && (fds[i + 2].revents & POLLOUT)) c.stream->flush();
      }
      if (Clock::now() >= next_tick) {
        next_tick = Clock::now() + tick();
        on_tick();
      }
      for (auto it = clients_.begin(); it != clients_.end();) {
        it = it->second.closing && finish_close(it->second) ? clients_.erase(it) : std::next(it);
      }
      g_clients.store(clients_.size());
    }
  }

  std::chrono::milliseconds tick() const { return std::clamp(opts_.heartbeat / 4, 10ms, 1000ms); }

  void accept_one() {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    char ip[INET_ADDRSTRLEN] = "?";
    ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    const std::string peer = std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
    if (clients_.size() >= opts_.max_clients) {
      log_limited(spdlog::level::warn, "gateway.full",
                  "gateway: refused " + peer + ": " + std::to_string(opts_.max_clients) + " clients already (max_clients)");
      ::close(fd);
      return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, 1 /*TCP_NODELAY*/, &one, sizeof one);
    Client c;
    c.id = next_id_++;
    c.stream = std::make_unique<dist::zmtp::Stream>(fd, "ROUTER", opts_.max_request, true, curve_);
    c.stream->keep_envelope(true);
    c.peer = peer;
    c.since = c.last_heard = Clock::now();
    clients_.emplace(c.id, std::move(c));
    g_clients.store(clients_.size());
  }

  void read_client(Client& c) {
    const auto r = c.stream->read(8, [&](std::string_view m) {
      on_request(c, m);
      return !c.closing;
    });
    if (c.stream->writes_due()) c.stream->service();
    if (c.closing) return;
    if (!c.authed && curve_ && c.stream->ready()) authenticate(c);  // the CURVE handshake let it in
    if (r == dist::zmtp::Stream::Read::closed) {
      if (c.stream->failed()) {
        log_limited(spdlog::level::warn, "gateway.proto", "gateway: client " + c.peer + " dropped: " + c.stream->error());
      } else {
        logger().debug("gateway: client {} disconnected", c.peer);
      }
      drop(c, "");
    }
  }

  void authenticate(Client& c) {
    c.authed = true;
    c.proc = spawn(client_body, out_, c.id);
    logger().info("gateway: client {} ({}) is in", c.peer, c.stream->peer_socket_type());
  }

  void send_to(Client& c, const std::string& json) {
    if (!c.stream->send_parts(c.envelope, json)) {
      // the socket is full: the bytes wait inside the stream (bounded below by max_queue)
    }
  }

  void reply(Client& c, const std::string& json) {
    if (c.req) {
      if (!c.owes_reply) return;  // (a REQ gets one reply per request)
      c.owes_reply = false;
    }
    send_to(c, json);
  }

  // A refusal: an error reply, then the connection closes once it is written.
  void refuse(Client& c, const std::string& id, const Term& why, const std::string& text) {
    log_limited(spdlog::level::warn, "gateway.refused", "gateway: refused client " + c.peer + ": " + text);
    c.owes_reply = true;
    reply(c, error_json(id, why, text));
    drop(c, "");
  }

  void on_request(Client& c, std::string_view body) {
    c.envelope = c.stream->envelope();
    c.req = c.stream->peer_socket_type() == "REQ";
    if (c.req && (c.envelope.empty() || !c.envelope.back().empty())) {
      return drop(c, "a REQ message without its empty delimiter");
    }
    c.owes_reply = true;
    std::string error;
    auto req = dist::json_to_term(body, &error);
    std::string id;
    if (req && req->is_map()) {
      if (const Term* i = field(*req, "id")) id = dist::term_to_json(*i);
    }
    if (!req || !req->is_map() || !field(*req, "op") || !field(*req, "op")->is_binary()) {
      const std::string text = req ? "a request is a JSON object with \"op\"" : "malformed JSON: " + error.substr(0, 200);
      if (!c.authed) return refuse(c, id, atom("badarg"), text);
      log_limited(spdlog::level::warn, "gateway.bad", "gateway: client " + c.peer + ": " + text);
      return reply(c, error_json(id, atom("badarg"), text));
    }
    const std::string& op = field(*req, "op")->as_binary();
    if (op == "hello") return hello(c, *req, id);
    if (!c.authed) {
      return refuse(c, id, atom("unauthenticated"), curve_ ? "the CURVE handshake did not finish"
                                                           : "the first request must be a hello with the cookie's proof");
    }
    if (op == "recv") {
      if (!c.req) return reply(c, error_json(id, atom("badarg"), "recv is for REQ clients: a DEALER gets pushes as they come"));
      if (!c.queue.empty()) {
        reply(c, ok_json_raw(id, c.queue.front()));
        c.queue.pop_front();
        return;
      }
      c.recv_wait.emplace(id, Clock::now() + std::chrono::milliseconds(timeout_of(*req, 5000)));
      return;
    }
    if (c.pending >= opts_.max_pending) {
      return reply(c, error_json(id, atom("busy"), "too many requests in progress (max_pending)"));
    }
    ++c.pending;
    send(c.proc, Request{std::move(*req), id});
  }

  static std::string ok_json_raw(const std::string& id, const std::string& json) { return with_id(id, "\"ok\":" + json); }

  void hello(Client& c, const Term& req, const std::string& id) {
    const auto who = [&] { return Term::map({{bin_key("node"), Term(node::self())}, {bin_key("pid"), Term(c.proc)}}); };
    if (c.authed) return reply(c, ok_json(id, who()));
    if (curve_) return refuse(c, id, atom("unauthenticated"), "the CURVE handshake did not finish");
    const Term* proof = field(req, "proof");
    if (proof == nullptr) {
      unsigned char r[16];
      randombytes_buf(r, sizeof r);
      c.challenge.assign(reinterpret_cast<char*>(r), sizeof r);
      return reply(c, ok_json(id, Term::map({{bin_key("challenge"), Term(hex(c.challenge))}})));
    }
    if (c.challenge.empty() || !proof->is_binary()) {
      return refuse(c, id, atom("unauthenticated"), "a hello with a proof comes after the challenge");
    }
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state s;
    crypto_auth_hmacsha256_init(&s, reinterpret_cast<const unsigned char*>(cookie_.data()), cookie_.size());
    crypto_auth_hmacsha256_update(&s, reinterpret_cast<const unsigned char*>(c.challenge.data()), c.challenge.size());
    crypto_auth_hmacsha256_final(&s, mac);
    const std::string want = hex(std::string(reinterpret_cast<char*>(mac), sizeof mac));
    const std::string& got = proof->as_binary();
    if (got.size() != want.size() || sodium_memcmp(got.data(), want.data(), want.size()) != 0) {
      return refuse(c, id, atom("unauthenticated"), "wrong cookie proof");
    }
    c.challenge.clear();
    authenticate(c);
    reply(c, ok_json(id, who()));
  }

  static std::string hex(const std::string& b) {
    std::string out(b.size() * 2 + 1, '\0');
    sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(b.data()), b.size());
    out.pop_back();
    return out;
  }

  void deliver_outbox() {
    std::vector<Outbox::Item> items;
    {
      std::lock_guard lock(out_->mu);
      items.swap(out_->items);
    }
    for (auto& it : items) {
      auto ci = clients_.find(it.client);
      if (ci == clients_.end() || ci->second.closing) continue;
      Client& c = ci->second;
      if (it.reply) {
        if (c.pending > 0) --c.pending;
        reply(c, it.json);
      } else {
        push(c, std::move(it.json));
      }
    }
  }

  void push(Client& c, std::string json) {
    if (c.req) {
      if (c.recv_wait && c.owes_reply) {
        const std::string id = c.recv_wait->first;
        c.recv_wait.reset();
        return reply(c, ok_json_raw(id, json));
      }
      if (c.queue.size() < opts_.max_queue) {
        c.queue.push_back(std::move(json));
        return;
      }
    } else if (c.stream->buffered() < opts_.max_queue * 1024) {
      return send_to(c, json);
    }
    ++c.dropped;
    if (!c.overflowed) {
      c.overflowed = true;
      logger().warn("gateway: client {} is not reading its pushed messages ({} waiting): its names and served "
                    "functions are dropped, and pushes are counted, not kept",
                    c.peer, opts_.max_queue);
      send(c.proc, Overflow{});
    }
  }

  void on_tick() {
    const auto now = Clock::now();
    for (auto& [id, c] : clients_) {
      if (c.closing) continue;
      if (c.stream->received() != c.heard) {
        c.heard = c.stream->received();
        c.last_heard = now;
      }
      if (!c.authed && now - c.since > opts_.hello_timeout) {
        log_limited(spdlog::level::warn, "gateway.slow", "gateway: client " + c.peer + " dropped: no hello in time");
        drop(c, "");
        continue;
      }
      if (c.stream->ready() && now - c.last_heard > 3 * opts_.heartbeat) {
        logger().warn("gateway: client {} dropped: it stopped answering heartbeats", c.peer);
        drop(c, "");
        continue;
      }
      if (c.stream->ready() && now - c.last_ping >= opts_.heartbeat) {
        c.last_ping = now;
        c.stream->send_ping(static_cast<std::uint16_t>(std::min<long long>(30 * opts_.heartbeat.count() / 100, 65535)));
      }
      if (c.recv_wait && now >= c.recv_wait->second && c.owes_reply) {
        const std::string rid = c.recv_wait->first;
        c.recv_wait.reset();
        reply(c, ok_json(rid, atom("nil")));
      }
      // told once it reads again (half the limit is free): how many pushes it missed
      if (c.overflowed && (c.req ? c.queue.size() < opts_.max_queue / 2 : c.stream->buffered() < opts_.max_queue * 512)) {
        c.overflowed = false;
        std::string notice = push_json("overflow", Term::map({{bin_key("dropped"), Term(static_cast<long>(c.dropped))}}));
        c.dropped = 0;
        if (!c.req) {
          send_to(c, notice);
        } else if (c.recv_wait && c.owes_reply && c.queue.empty()) {  // a `recv` waits for it
          const std::string rid = c.recv_wait->first;
          c.recv_wait.reset();
          reply(c, ok_json_raw(rid, notice));
        } else {
          c.queue.push_back(std::move(notice));
        }
      }
    }
  }

  void drop(Client& c, const std::string& why) {
    if (!why.empty()) log_limited(spdlog::level::warn, "gateway.proto", "gateway: client " + c.peer + " dropped: " + why);
    c.closing = true;
    c.close_by = Clock::now() + 1s;
    if (c.proc != Pid{}) send(c.proc, Stop{});
  }
  // true once a closing client's last bytes (its refusal) are out, or it would wait too long
  bool finish_close(Client& c) {
    if (c.stream->has_output()) c.stream->flush();
    return !c.stream->has_output() || Clock::now() >= c.close_by;
  }

  GatewayOptions opts_;
  std::string cookie_;
  std::shared_ptr<const dist::zmtp::Curve> curve_;
  std::shared_ptr<Outbox> out_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, Client> clients_;
};

std::mutex g_mu;
std::unique_ptr<Gateway> g_gateway;

}  // namespace

void start(const GatewayOptions& opts, std::string cookie, std::shared_ptr<const dist::zmtp::Curve> curve) {
  std::lock_guard lock(g_mu);
  if (g_gateway) throw std::logic_error("a gateway is already running");
  if (sodium_init() < 0) throw std::runtime_error("gateway: libsodium cannot start");
  g_gateway = std::make_unique<Gateway>(opts, std::move(cookie), std::move(curve));
}

void stop() {
  std::unique_ptr<Gateway> g;
  {
    std::lock_guard lock(g_mu);
    g = std::move(g_gateway);
  }
}

std::uint16_t port() {
  std::lock_guard lock(g_mu);
  return g_gateway ? g_gateway->port() : 0;
}

}  // namespace nodus::gateway
