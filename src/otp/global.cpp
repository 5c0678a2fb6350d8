// global (nodus/global.hpp): one name server per node, a GenServer registered locally as
// global_name_server, holding every node's names. Between servers:
//   call {reserve, Name, Pid, Ref}  -> ok | taken | busy   (a reservation lasts 10 s at most)
//   call {commit, Name, Pid, Ref}   -> ok                   (the name is Pid's, here)
//   call {unregister, Name}         -> ok
//   cast {release, Name, Ref}                               (an aborted reservation)
//   cast {sync, Node, [{Name, Pid}], [Node]}                (on nodeup: the names of my own
//                                                            processes, and the nodes I know)
//   cast {resolved, Name, Pid | none}                       (the outcome of a conflict)
//   cast hello                                              (only opens the connection)
// A registration is coordinated by the caller (register_name): reserve on all, then commit on
// all, so servers never wait on each other.
#include "nodus/global.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <random>

#include "nodus/gen_server.hpp"
#include "nodus/log.hpp"
#include "nodus/node.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/system_messages.hpp"

namespace nodus::global {
namespace {

using Clock = std::chrono::steady_clock;

Atom server_name() { return atom("global_name_server"); }

constexpr auto kReservation = std::chrono::seconds(10);
constexpr auto kCallTimeout = std::chrono::seconds(5);
constexpr int kAttempts = 10;
// What one peer's sync may add here.
constexpr std::size_t kMaxSyncNames = 100000;
constexpr std::size_t kMaxSyncNodes = 1000;

// What whereis_name reads without a message, and the resolvers of registrations in flight
// (closures cannot cross the wire: the server of the registering node takes its own from here).
struct Shared {
  std::mutex mu;
  std::map<Atom, Pid> names;
  std::map<Ref, Resolver> resolvers;
};
Shared& shared() {
  static Shared s;
  return s;
}

// (resolvers' coin tosses, registration backoff)
std::mt19937& rng() {
  thread_local std::mt19937 r{std::random_device{}()};
  return r;
}
bool coin() { return (rng()() & 1u) != 0; }

class Server : public GenServer {
 public:
  void init() override {
    {
      std::lock_guard lock(shared().mu);
      shared().names.clear();
    }
    node::monitor_nodes(true);
    for (Atom n : node::list()) sync_to(n);
  }

  void terminate(const Term&) override {
    std::lock_guard lock(shared().mu);
    shared().names.clear();
  }

  CallResult handle_call(const Term& req, const From&) override {
    if (req.is_tuple() && req.size() == 4 && req[0].is_atom("reserve") && req[1].is_atom() && req[2].is_pid() &&
        req[3].is_ref()) {
      return reply(reserve(req[1].as_atom(), req[3].as_ref()));
    }
    if (req.is_tuple() && req.size() == 4 && req[0].is_atom("commit") && req[1].is_atom() && req[2].is_pid() &&
        req[3].is_ref()) {
      const Atom name = req[1].as_atom();
      if (auto r = reserved_.find(name); r != reserved_.end() && r->second.ref == req[3].as_ref()) reserved_.erase(r);
      Resolver resolver;
      {
        std::lock_guard lock(shared().mu);
        if (auto it = shared().resolvers.find(req[3].as_ref()); it != shared().resolvers.end()) resolver = it->second;
      }
      set(name, req[2].as_pid(), std::move(resolver));
      return reply(atom("ok"));
    }
    if (req.is_tuple(2, "unregister") && req[1].is_atom()) {
      erase(req[1].as_atom());
      return reply(atom("ok"));
    }
    bad(req);
    return reply(tuple(atom("error"), atom("badarg")));
  }

  void handle_cast(const Term& msg) override {
    if (msg.is_tuple(3, "release") && msg[1].is_atom() && msg[2].is_ref()) {
      auto r = reserved_.find(msg[1].as_atom());
      if (r != reserved_.end() && r->second.ref == msg[2].as_ref()) reserved_.erase(r);
    } else if (msg.is_tuple(4, "sync") && msg[1].is_atom() && msg[2].is_list() && msg[3].is_list()) {
      on_sync(msg[1].as_atom(), msg[2], msg[3]);
    } else if (msg.is_tuple(3, "resolved") && msg[1].is_atom() && (msg[2].is_pid() || msg[2].is_atom("none"))) {
      if (msg[2].is_pid()) {
        set(msg[1].as_atom(), msg[2].as_pid(), {});
      } else {
        erase(msg[1].as_atom());
      }
    } else if (!msg.is_atom("hello")) {
      bad(msg);
    }
  }

  void handle_info(Message& m) override {
    if (m.is<Down>()) {
      const Down& d = m.get<Down>();
      for (auto it = names_.begin(); it != names_.end(); ++it) {
        if (it->second.mref == d.ref) {
          forget(it);
          return;
        }
      }
      return;
    }
    if (m.is<Term>()) {
      const Term& t = m.get<Term>();
      if (t.is_tuple(2, "nodeup") && t[1].is_atom()) sync_to(t[1].as_atom());
      // nodedown: the monitors of that node's pids say noconnection
    }
  }

 private:
  struct Entry {
    Pid pid;
    Ref mref;
    Resolver resolver;  // set for a pid of this node registered here
  };
  struct Reservation {
    Ref ref;
    Clock::time_point until;
  };
  std::map<Atom, Entry> names_;
  std::map<Atom, Reservation> reserved_;

  Term reserve(Atom name, const Ref& ref) {
    if (names_.contains(name)) return atom("taken");
    if (auto r = reserved_.find(name); r != reserved_.end() && r->second.ref != ref && r->second.until > Clock::now()) {
      return atom("busy");
    }
    reserved_[name] = {ref, Clock::now() + kReservation};
    return atom("ok");
  }

  void set(Atom name, const Pid& pid, Resolver resolver) {
    auto it = names_.find(name);
    if (it != names_.end()) {
      if (it->second.pid == pid) {
        if (resolver) it->second.resolver = std::move(resolver);
        return;
      }
      demonitor(it->second.mref, true);
    }
    names_[name] = Entry{pid, monitor(pid), std::move(resolver)};
    std::lock_guard lock(shared().mu);
    shared().names[name] = pid;
  }

  void erase(Atom name) {
    auto it = names_.find(name);
    if (it == names_.end()) return;
    demonitor(it->second.mref, true);
    forget(it);
  }

  void forget(std::map<Atom, Entry>::iterator it) {
    {
      std::lock_guard lock(shared().mu);
      shared().names.erase(it->first);
    }
    names_.erase(it);
  }

  void sync_to(Atom node) {
    std::vector<Term> mine;
    for (const auto& [name, e] : names_) {
      if (e.pid.is_local()) mine.push_back(tuple(name, e.pid));
    }
    std::vector<Term> nodes;
    for (Atom n : node::list()) {
      if (!(n == node)) nodes.emplace_back(n);
    }
    gen_server::cast(ServerRef(server_name(), node),
                     Term::tuple({atom("sync"), node::self(), Term::list(std::move(mine)), Term::list(std::move(nodes))}));
  }

  void on_sync(Atom from, const Term& entries, const Term& nodes) {
    if (entries.size() > kMaxSyncNames || nodes.size() > kMaxSyncNodes) {
      log_limited(spdlog::level::warn, "global", "global: sync from " + std::string(from.name()) + " too large, ignored");
      return;
    }
    // a full mesh, as Erlang's global keeps: meet the nodes it knows (the sync follows nodeup)
    const std::vector<Atom> known = node::list();
    for (const Term& n : nodes.elems()) {
      if (!n.is_atom() || n.as_atom() == node::self() || std::find(known.begin(), known.end(), n.as_atom()) != known.end()) {
        continue;
      }
      gen_server::cast(ServerRef(server_name(), n.as_atom()), atom("hello"));
    }
    for (const Term& e : entries.elems()) {
      if (!(e.is_tuple() && e.size() == 2 && e[0].is_atom() && e[1].is_pid() && e[1].as_pid().node == from)) {
        bad(e);
        continue;
      }
      const Atom name = e[0].as_atom();
      const Pid theirs = e[1].as_pid();
      auto it = names_.find(name);
      if (it == names_.end()) {
        set(name, theirs, {});
      } else if (!(it->second.pid == theirs)) {
        conflict(name, it->second, theirs, from);
      }
    }
  }

  // A name two pids hold: resolved here if one is ours and our node's name sorts first (the
  // other side, seeing the same, waits for our {resolved, ...}); otherwise we wait too.
  void conflict(Atom name, const Entry& ours, const Pid& theirs, Atom from) {
    if (!ours.pid.is_local() || !(node::self().name() < from.name())) return;
    const Pid mine = ours.pid;
    const Resolver resolve = ours.resolver ? ours.resolver : Resolver(random_exit_name);
    std::optional<Pid> keep;
    try {
      keep = resolve(name, mine, theirs);
    } catch (const std::exception& e) {
      log_limited(spdlog::level::err, "global", "global: resolver for " + std::string(name.name()) + " threw: " + e.what());
    }
    if (keep && !(*keep == mine) && !(*keep == theirs)) keep.reset();
    if (keep) {
      set(name, *keep, {});
    } else {
      erase(name);
    }
    const Term outcome = tuple(atom("resolved"), name, keep ? Term(*keep) : Term(atom("none")));
    std::vector<Atom> to = node::list();
    if (std::find(to.begin(), to.end(), from) == to.end()) to.push_back(from);  // (it is connected: it just spoke)
    for (Atom n : to) gen_server::cast(ServerRef(server_name(), n), outcome);
  }

  void bad(const Term& t) {
    log_limited(spdlog::level::warn, "global", "global: unexpected message " + t.to_string(200));
  }
};

// One registration's steps, shared by the thread and the process variant.
struct Registration {
  Atom name;
  Pid pid;
  Ref ref;
  std::vector<Atom> nodes;

  Registration(Atom n, const Pid& p, Resolver r) : name(n), pid(p) {
    if (!whereis(server_name())) throw Error(Errc::noproc, atom("noproc"), "global: no name server on this node (global::start)");
    if (pid.is_null()) throw Error(Errc::badarg, atom("badarg"), "global::register_name: no pid");
    next(std::move(r));
  }
  // A new attempt: a fresh reservation, over the nodes connected now.
  void next(Resolver r) {
    std::lock_guard lock(shared().mu);
    shared().resolvers.erase(ref);
    ref = make_ref();
    shared().resolvers[ref] = std::move(r);
    nodes = node::list();
    nodes.insert(nodes.begin(), node::self());
  }
  Term reserve() const { return Term::tuple({atom("reserve"), name, pid, ref}); }
  Term commit() const { return Term::tuple({atom("commit"), name, pid, ref}); }
  // ok: commit; taken: give up; busy: release and try again
  enum class Verdict { ok, taken, busy };
  Verdict verdict(const gen_server::MultiCallResult& r) const {
    bool busy = false;
    bool here = false;
    for (const auto& [n, answer] : r.replies) {
      if (answer.is_atom("taken")) return Verdict::taken;
      busy = busy || !answer.is_atom("ok");
      here = here || n == node::self();
    }
    if (!here) return Verdict::busy;  // our own server did not answer (it is restarting)
    return busy ? Verdict::busy : Verdict::ok;
  }
  void release() const { gen_server::abcast(nodes, server_name(), tuple(atom("release"), name, ref)); }
  void done() const {
    std::lock_guard lock(shared().mu);
    shared().resolvers.erase(ref);
  }
  static std::chrono::milliseconds backoff(int attempt) {
    return std::chrono::milliseconds(5 + rng()() % (10u * static_cast<unsigned>(attempt + 1)));
  }
};

}  // namespace

std::optional<Pid> random_exit_name(Atom name, const Pid& a, const Pid& b) {
  const bool first = coin();
  const Pid keep = first ? a : b;
  const Pid lose = first ? b : a;
  logger().info("global: name conflict for {} between {} and {}: {} keeps it, {} is killed", name.name(),
                to_string(a), to_string(b), to_string(keep), to_string(lose));
  exit(lose, atom("kill"));
  return keep;
}

std::optional<Pid> random_notify_name(Atom name, const Pid& a, const Pid& b) {
  const bool first = coin();
  const Pid keep = first ? a : b;
  const Pid other = first ? b : a;
  nodus::send(other, tuple(atom("global_name_conflict"), name));
  return keep;
}

std::optional<Pid> notify_all_name(Atom name, const Pid& a, const Pid& b) {
  nodus::send(a, tuple(atom("global_name_conflict"), name, b));
  nodus::send(b, tuple(atom("global_name_conflict"), name, a));
  return std::nullopt;
}

Expected<Pid> start() { return gen_server::start(std::make_unique<Server>(), {.name = server_name()}); }

supervisor::ChildSpec child_spec() {
  return supervisor::gen_server_child("global_name_server", [] { return std::make_unique<Server>(); }, server_name());
}

bool register_name(Mailbox& mb, Atom name, const Pid& pid, Resolver resolver) {
  Registration reg(name, pid, resolver);
  for (int attempt = 0;; ++attempt) {
    const auto v = reg.verdict(gen_server::multi_call(mb, reg.nodes, server_name(), reg.reserve(), kCallTimeout));
    if (v == Registration::Verdict::ok) {
      (void)gen_server::multi_call(mb, reg.nodes, server_name(), reg.commit(), kCallTimeout);
      reg.done();
      return true;
    }
    reg.release();
    if (v == Registration::Verdict::taken || attempt + 1 == kAttempts) {
      reg.done();
      return false;
    }
    (void)mb.receive<Term>([](const Term&) { return false; }, Registration::backoff(attempt));
    reg.next(resolver);
  }
}

Async<bool> register_name(Atom name, Pid pid, Resolver resolver) {
  Registration reg(name, pid, resolver);
  for (int attempt = 0;; ++attempt) {
    const auto v = reg.verdict(co_await gen_server::multi_call(reg.nodes, server_name(), reg.reserve(), kCallTimeout));
    if (v == Registration::Verdict::ok) {
      (void)co_await gen_server::multi_call(reg.nodes, server_name(), reg.commit(), kCallTimeout);
      reg.done();
      co_return true;
    }
    reg.release();
    if (v == Registration::Verdict::taken || attempt + 1 == kAttempts) {
      reg.done();
      co_return false;
    }
    co_await sleep_for(Registration::backoff(attempt));
    reg.next(resolver);
  }
}

namespace {
std::vector<Atom> all_nodes() {
  if (!whereis(server_name())) throw Error(Errc::noproc, atom("noproc"), "global: no name server on this node (global::start)");
  std::vector<Atom> nodes = node::list();
  nodes.insert(nodes.begin(), node::self());
  return nodes;
}
}  // namespace

void unregister_name(Mailbox& mb, Atom name) {
  (void)gen_server::multi_call(mb, all_nodes(), server_name(), tuple(atom("unregister"), name), kCallTimeout);
}

Async<void> unregister_name(Atom name) {
  (void)co_await gen_server::multi_call(all_nodes(), server_name(), tuple(atom("unregister"), name), kCallTimeout);
}

std::optional<Pid> whereis_name(Atom name) {
  std::lock_guard lock(shared().mu);
  auto it = shared().names.find(name);
  if (it == shared().names.end()) return std::nullopt;
  return it->second;
}

Expected<Pid> send(Atom name, Term msg) {
  auto p = whereis_name(name);
  if (!p) {
    return Failure{Errc::badarg, tuple(atom("badarg"), tuple(name, msg)),
                   "global::send: nothing is registered globally as " + std::string(name.name())};
  }
  nodus::send(*p, std::move(msg));
  return *p;
}

std::vector<Atom> registered_names() {
  std::lock_guard lock(shared().mu);
  std::vector<Atom> out;
  out.reserve(shared().names.size());
  for (const auto& [n, p] : shared().names) out.push_back(n);
  return out;
}

}  // namespace nodus::global
