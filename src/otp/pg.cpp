// Process groups (nodus/pg.hpp): the membership table a scope shares with its callers, and the
// scope process that watches members and speaks to the scopes of the same name on other nodes.
//
// Between scopes (Terms, to the scope's registered name on the peer node, then to its pid):
//   {pg_discover, Scope}                  I am here; answer with your local members
//   {pg_sync, Scope, [{Group, [Pid]}]}    all my local members (replaces what you had of mine)
//   {pg_join, Scope, Group, [Pid]}        these local members of mine joined Group
//   {pg_leave, Scope, Group, [Pid]}       ... left it
// A scope monitors each peer scope it knows: its Down (an exit, or noconnection when the node
// goes) removes every member of that peer. Pids a peer names must be of the peer's node.
#include "nodus/pg.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "nodus/gen_server.hpp"
#include "nodus/log.hpp"
#include "nodus/node.hpp"
#include "nodus/process.hpp"
#include "nodus/system_messages.hpp"

namespace nodus::pg {
namespace {

using Members = std::map<Term, std::vector<Pid>>;

// Bounds on what one peer may make this node hold (its groups, and members per group).
constexpr std::size_t kMaxPeerGroups = 100000;
constexpr std::size_t kMaxGroupMembers = 100000;

struct ScopeState {
  std::mutex mu;
  Members all;    // every node's members
  Members local;  // this node's
  std::vector<std::pair<Ref, Pid>> subscribers;

  // Both under mu, so a monitor_scope snapshot and the events after it never overlap.
  void notify(const char* what, const Term& group, const std::vector<Pid>& pids) {
    if (subscribers.empty() || pids.empty()) return;
    std::vector<Term> ps(pids.begin(), pids.end());
    for (const auto& [ref, who] : subscribers) send(who, tuple(Term(ref), atom(what), group, Term::list(ps)));
  }
  void add(const Term& group, const std::vector<Pid>& pids, bool is_local) {
    std::lock_guard lock(mu);
    auto& a = all[group];
    a.insert(a.end(), pids.begin(), pids.end());
    if (is_local) {
      auto& l = local[group];
      l.insert(l.end(), pids.begin(), pids.end());
    }
    notify("join", group, pids);
  }
  // Removes one entry per pid given (those it has); returns how many went.
  std::size_t remove(const Term& group, const std::vector<Pid>& pids, bool is_local) {
    std::lock_guard lock(mu);
    std::vector<Pid> gone;
    auto drop_one = [](Members& m, const Term& g, const Pid& p) {
      auto it = m.find(g);
      if (it == m.end()) return false;
      auto at = std::find(it->second.begin(), it->second.end(), p);
      if (at == it->second.end()) return false;
      it->second.erase(at);
      if (it->second.empty()) m.erase(it);
      return true;
    };
    for (const Pid& p : pids) {
      if (is_local && !drop_one(local, group, p)) continue;
      if (drop_one(all, group, p)) gone.push_back(p);
    }
    notify("leave", group, gone);
    return gone.size();
  }
};

std::mutex g_mu;
std::map<std::uint32_t, std::shared_ptr<ScopeState>> g_scopes;

std::shared_ptr<ScopeState> scope_state(Atom scope) {
  std::lock_guard lock(g_mu);
  auto it = g_scopes.find(scope.id());
  return it == g_scopes.end() ? nullptr : it->second;
}

// Local joins and leaves, told to the scope process by the caller after it changed the table.
struct LocalJoin {
  Term group;
  Pid pid;
};
struct LocalLeave {
  Term group;
  Pid pid;
};

struct Peer {
  Ref mref;
  Members groups;  // its local members, as it told us
  std::size_t count = 0;
};

struct Scope {
  Atom name;
  std::shared_ptr<ScopeState> st;
  std::map<Pid, std::pair<Ref, std::vector<Term>>> members;  // local member -> its monitor, groups
  std::map<Pid, Peer> peers;

  Term local_groups() {
    std::vector<Term> out;
    std::lock_guard lock(st->mu);
    for (const auto& [g, ps] : st->local) out.push_back(tuple(g, Term::list(std::vector<Term>(ps.begin(), ps.end()))));
    return Term::list(std::move(out));
  }
  void broadcast(const Term& msg) {
    for (const auto& [p, _] : peers) send(p, msg);
  }
  Peer& peer(const Pid& p) {
    auto it = peers.find(p);
    if (it != peers.end()) return it->second;
    Peer& fresh = peers[p];
    fresh.mref = monitor(p);
    return fresh;
  }
  void drop_peer(const Pid& p) {
    auto it = peers.find(p);
    if (it == peers.end()) return;
    for (const auto& [g, ps] : it->second.groups) st->remove(g, ps, false);
    peers.erase(it);
  }
  // Pids a peer may name: of its own node, and not too many.
  static bool pids_of(const Term& list, const Pid& peer, std::vector<Pid>& out) {
    if (!list.is_list() || list.size() > kMaxGroupMembers) return false;
    for (const Term& t : list.elems()) {
      if (!t.is_pid() || !(t.as_pid().node == peer.node)) return false;  // (a peer is never local)
      out.push_back(t.as_pid());
    }
    return true;
  }
  void peer_join(const Pid& p, const Term& group, const std::vector<Pid>& pids) {
    Peer& pr = peer(p);
    if (!pr.groups.contains(group) && pr.groups.size() >= kMaxPeerGroups) {
      log_limited(spdlog::level::warn, "pg", "pg " + std::string(name.name()) + ": " + to_string(p) +
                                                 " has more groups than this node keeps per peer; join dropped");
      return;
    }
    auto& g = pr.groups[group];
    if (g.size() + pids.size() > kMaxGroupMembers) return;
    g.insert(g.end(), pids.begin(), pids.end());
    st->add(group, pids, false);
  }
  void peer_leave(const Pid& p, const Term& group, const std::vector<Pid>& pids) {
    auto it = peers.find(p);
    if (it == peers.end()) return;
    auto g = it->second.groups.find(group);
    if (g == it->second.groups.end()) return;
    std::vector<Pid> gone;
    for (const Pid& x : pids) {
      auto at = std::find(g->second.begin(), g->second.end(), x);
      if (at == g->second.end()) continue;
      g->second.erase(at);
      gone.push_back(x);
    }
    if (g->second.empty()) it->second.groups.erase(g);
    st->remove(group, gone, false);
  }

  void on_term(const Term& t) {
    if (t.is_tuple(2, "nodeup") && t[1].is_atom()) {
      send(name, t[1].as_atom(), tuple(atom("pg_discover"), self()));
      return;
    }
    if (t.is_tuple(2, "nodedown")) return;  // the peers' Downs (noconnection) do the work
    if (t.is_tuple(2, "pg_discover") && t[1].is_pid() && !t[1].as_pid().is_local()) {
      const Pid p = t[1].as_pid();
      const bool known = peers.contains(p);
      peer(p);
      send(p, tuple(atom("pg_sync"), self(), local_groups()));
      if (!known) send(p, tuple(atom("pg_discover"), self()));
      return;
    }
    if (t.is_tuple(3, "pg_sync") && t[1].is_pid() && !t[1].as_pid().is_local() && t[2].is_list()) {
      const Pid p = t[1].as_pid();
      // what it had of its members goes, what it says now comes
      if (auto it = peers.find(p); it != peers.end()) {
        for (const auto& [g, ps] : it->second.groups) st->remove(g, ps, false);
        it->second.groups.clear();
      }
      peer(p);
      for (const Term& e : t[2].elems()) {
        std::vector<Pid> pids;
        if (e.is_tuple() && e.size() == 2 && pids_of(e[1], p, pids)) peer_join(p, e[0], pids);
      }
      return;
    }
    if ((t.is_tuple(4, "pg_join") || t.is_tuple(4, "pg_leave")) && t[1].is_pid() && !t[1].as_pid().is_local()) {
      const Pid p = t[1].as_pid();
      std::vector<Pid> pids;
      if (!pids_of(t[3], p, pids)) return bad(t);
      if (t[0].is_atom("pg_join")) {
        peer_join(p, t[2], pids);
      } else {
        peer_leave(p, t[2], pids);
      }
      return;
    }
    bad(t);
  }
  void bad(const Term& t) {
    log_limited(spdlog::level::warn, "pg", "pg " + std::string(name.name()) + ": unexpected message " + t.to_string(200));
  }
};

Proc scope_loop(Atom name, detail::Starter starter) {
  if (!detail::start_begin(starter)) co_return;
  Scope s{name, std::make_shared<ScopeState>(), {}, {}};
  {
    std::lock_guard lock(g_mu);
    g_scopes[name.id()] = s.st;
  }
  struct Unlist {
    Atom name;
    std::shared_ptr<ScopeState> st;
    ~Unlist() {
      std::lock_guard lock(g_mu);
      auto it = g_scopes.find(name.id());
      if (it != g_scopes.end() && it->second == st) g_scopes.erase(it);
    }
  } unlist{name, s.st};
  node::monitor_nodes(true);
  for (Atom n : node::list()) send(name, n, tuple(atom("pg_discover"), self()));
  detail::start_ack(starter);
  for (;;) {
    Message m = co_await receive_any();
    if (m.is<LocalJoin>()) {
      LocalJoin j = m.take<LocalJoin>();
      auto it = s.members.find(j.pid);
      if (it == s.members.end()) it = s.members.emplace(j.pid, std::make_pair(monitor(j.pid), std::vector<Term>{})).first;
      it->second.second.push_back(j.group);
      s.broadcast(tuple(atom("pg_join"), self(), j.group, Term::list({Term(j.pid)})));
    } else if (m.is<LocalLeave>()) {
      LocalLeave l = m.take<LocalLeave>();
      auto it = s.members.find(l.pid);
      if (it != s.members.end()) {
        auto& gs = it->second.second;
        if (auto at = std::find(gs.begin(), gs.end(), l.group); at != gs.end()) gs.erase(at);
        if (gs.empty()) {
          demonitor(it->second.first, true);
          s.members.erase(it);
        }
      }
      s.broadcast(tuple(atom("pg_leave"), self(), l.group, Term::list({Term(l.pid)})));
    } else if (m.is<Down>()) {
      const Down d = m.take<Down>();
      if (auto it = s.members.find(d.pid); it != s.members.end() && it->second.first == d.ref) {
        // a member ended: it leaves all its groups, here and everywhere
        for (const Term& g : it->second.second) {
          s.st->remove(g, {d.pid}, true);
          s.broadcast(tuple(atom("pg_leave"), self(), g, Term::list({Term(d.pid)})));
        }
        s.members.erase(it);
      } else if (auto p = s.peers.find(d.pid); p != s.peers.end() && p->second.mref == d.ref) {
        s.drop_peer(d.pid);
      }
    } else if (m.is<Term>()) {
      s.on_term(m.get<Term>());
    } else {
      s.bad(Term(atom("non_term_message")));
    }
  }
}

Expected<Term> no_scope(Atom scope) {
  return Failure{Errc::noproc, atom("noproc"), "no pg scope " + std::string(scope.name()) + " on this node"};
}

}  // namespace

Atom default_scope() { return atom("pg"); }

Expected<Pid> start(Atom scope) {
  return detail::start_acked([scope](const detail::Starter& st) { return scope_loop(scope, st); }, scope, false,
                             std::chrono::hours(24 * 365), "pg::start");
}

supervisor::ChildSpec child_spec(Atom scope) {
  supervisor::ChildSpec c{std::string(scope.name()), [scope]() {
                            return detail::start_acked(
                                       [scope](const detail::Starter& st) { return scope_loop(scope, st); }, scope,
                                       true, std::chrono::hours(24 * 365), "pg::child_spec")
                                .value();
                          }};
  return c;
}

Expected<Term> join(Atom scope, const Term& group, const Pid& pid) {
  auto st = scope_state(scope);
  const auto proc = whereis(scope);
  if (!st || !proc) return no_scope(scope);
  if (pid.is_null() || !pid.is_local() || !is_process_alive(pid)) {
    return Failure{Errc::badarg, atom("badarg"), "pg::join: " + to_string(pid) + " is not a live local process"};
  }
  st->add(group, {pid}, true);
  send(*proc, LocalJoin{group, pid});
  return Term(atom("ok"));
}
Expected<Term> join(const Term& group, const Pid& pid) { return join(default_scope(), group, pid); }

Expected<Term> leave(Atom scope, const Term& group, const Pid& pid) {
  auto st = scope_state(scope);
  const auto proc = whereis(scope);
  if (!st || !proc) return no_scope(scope);
  if (st->remove(group, {pid}, true) == 0) return Term(atom("not_joined"));
  send(*proc, LocalLeave{group, pid});
  return Term(atom("ok"));
}
Expected<Term> leave(const Term& group, const Pid& pid) { return leave(default_scope(), group, pid); }

namespace {
std::vector<Pid> members_of(Atom scope, const Term& group, bool local) {
  auto st = scope_state(scope);
  if (!st) return {};
  std::lock_guard lock(st->mu);
  const Members& m = local ? st->local : st->all;
  auto it = m.find(group);
  return it == m.end() ? std::vector<Pid>{} : it->second;
}
}  // namespace

std::vector<Pid> get_members(Atom scope, const Term& group) { return members_of(scope, group, false); }
std::vector<Pid> get_members(const Term& group) { return members_of(default_scope(), group, false); }
std::vector<Pid> get_local_members(Atom scope, const Term& group) { return members_of(scope, group, true); }
std::vector<Pid> get_local_members(const Term& group) { return members_of(default_scope(), group, true); }

std::vector<Term> which_groups(Atom scope) {
  auto st = scope_state(scope);
  if (!st) return {};
  std::lock_guard lock(st->mu);
  std::vector<Term> out;
  for (const auto& [g, _] : st->all) out.push_back(g);
  return out;
}

std::pair<Ref, Term> monitor_scope(Atom scope) {
  const Pid me = self();
  if (me.is_null()) throw std::logic_error("pg::monitor_scope needs a calling process");
  const Ref ref = make_ref();
  auto st = scope_state(scope);
  if (!st) return {ref, Term::map({})};
  std::lock_guard lock(st->mu);
  st->subscribers.emplace_back(ref, me);
  std::vector<std::pair<Term, Term>> now;
  for (const auto& [g, ps] : st->all) now.emplace_back(g, Term::list(std::vector<Term>(ps.begin(), ps.end())));
  return {ref, Term::map(std::move(now))};
}

void demonitor_scope(const Ref& ref, Atom scope) {
  auto st = scope_state(scope);
  if (!st) return;
  std::lock_guard lock(st->mu);
  std::erase_if(st->subscribers, [&](const auto& e) { return e.first == ref; });
}

}  // namespace nodus::pg
