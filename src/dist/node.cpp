// The public distribution API (nodus/node.hpp) and the runtime hooks for remote pids.
#include "node_impl.hpp"
#include "start.hpp"

namespace nodus {
namespace dist {

std::mutex g_functions_mu;
std::map<std::string, RemoteFunction, std::less<>> g_functions;  // register_function
std::map<std::string, RemoteFunction, std::less<>> g_builtins;   // add_builtin_function

std::optional<RemoteFunction> find_function(std::string_view name) {
  std::lock_guard lock(g_functions_mu);
  auto it = g_functions.find(name);
  if (it != g_functions.end()) return it->second;
  it = g_builtins.find(name);
  if (it != g_builtins.end()) return it->second;
  return std::nullopt;
}

void add_builtin_function(std::string name, RemoteFunction f) {
  std::lock_guard lock(g_functions_mu);
  g_builtins.insert_or_assign(std::move(name), std::move(f));
}

void deliver_remote(const Pid& to, detail::MsgNode* n) {
  const NodeUse node;
  if (node && n->type == &detail::type_info_v<runtime::ExitSignal, detail::NodeKind::exit_signal>) {
    auto& sig = static_cast<detail::TypedNode<runtime::ExitSignal>*>(n)->value;
    if (sig.from_link) node->untrack_link(sig.from, to);
    node->send_control(to.node, frames::Exit{sig.from, to, sig.from_link, sig.reason}.encode());
    n->type->destroy(n);
    return;
  }
  if (node && n->type == &detail::type_info_v<Down>) {
    auto& d = static_cast<detail::TypedNode<Down>*>(n)->value;
    node->send_control(to.node, frames::Down{to, Term(d.pid), d.ref, d.reason}.encode());
    n->type->destroy(n);
    return;
  }
  if (!node || !can_travel(n)) {
    if (node) warn_bad("message", "type " + std::string(n->type->name) + " has no wire name (nodus::register_type) and cannot go to another node");
    n->type->destroy(n);
    return;
  }
  node->post_send(to, n);
  n->type->destroy(n);
}

void hook_link(const Pid& local, const Pid& remote) {
  if (const NodeUse node; node) {
    node->track_link(local, remote);
    node->send_control(remote.node, frames::Link{false, local, remote}.encode());
  }
}
void hook_unlink(const Pid& local, const Pid& remote) {
  if (const NodeUse node; node) {
    node->untrack_link(local, remote);
    node->send_control(remote.node, frames::Link{true, local, remote}.encode());
  }
}
void hook_monitor(const Pid& watcher, const Pid& target, const Ref& ref) {
  if (const NodeUse node; node) {
    node->track_monitor(watcher, target, ref);
    node->send_control(target.node, frames::Monitor{false, watcher, Term(target), ref}.encode());
  }
}
void hook_demonitor(const Pid& watcher, const Pid& target, const Ref& ref) {
  if (const NodeUse node; node) {
    const auto name = node->name_monitor(ref);
    node->untrack_monitor(ref);
    const Term what = name ? Term(*name) : Term(target);
    node->send_control(target.node, frames::Monitor{true, watcher, what, ref}.encode());
  }
}

void hook_flush() { NodeImpl::flush_outbox(); }
void hook_flush_staged() {
  if (const NodeUse node; node) {
    node->flush_staged();
  } else {
    runtime::g_remote_staged.store(false, std::memory_order_relaxed);
  }
}

// Workers inside poll_inbound: ~Node waits for them before the node goes.
std::atomic<int> g_pollers{0};
bool hook_poll_inbound() {
  g_pollers.fetch_add(1, std::memory_order_seq_cst);
  const NodeUse node;
  const bool got = node && node->poll_inbound();
  g_pollers.fetch_sub(1, std::memory_order_seq_cst);
  return got;
}

bool hook_deliver_nosuspend(const Pid& to, detail::MsgNode* n) {
  const NodeUse node;
  if (node && node->busy(to.node)) {
    n->type->destroy(n);
    return false;
  }
  tl_nosuspend = true;  // what this puts in the outbox does not hold the sender
  deliver_remote(to, n);
  tl_nosuspend = false;
  return true;
}

void hook_pollers_gone() {
  const NodeUse node;
  if (node) node->pollers_gone();
}

const runtime::RemoteHooks kHooks{&deliver_remote,    &hook_link,         &hook_unlink,
                                  &hook_monitor,      &hook_demonitor,    &hook_flush,
                                  &hook_flush_staged, &hook_poll_inbound, &hook_deliver_nosuspend,
                                  &hook_pollers_gone};

}  // namespace dist

// ------------------------------------------------------------------------------ public API

namespace {
dist::NodeImpl* impl() { return dist::g_node.load(std::memory_order_acquire); }  // (Node's own methods)
}  // namespace

namespace dist {

void start_node(NodeOptions opts) {
  runtime::ctx();  // throws if no Runtime
  auto* n = new NodeImpl(std::move(opts));
  // claimed before it starts: its I/O thread may accept a peer and answer it (a spawn reply)
  // before start() returns, and what it sends goes through g_node
  NodeImpl* expected = nullptr;
  if (!g_node.compare_exchange_strong(expected, n)) {
    delete n;
    throw std::logic_error("a Node is already running in this OS process");
  }
  try {
    n->start();
  } catch (...) {
    g_node.store(nullptr, std::memory_order_seq_cst);
    delete n;
    throw;
  }
  runtime::set_remote_hooks(&kHooks);
}

void stop_node() {
  runtime::set_remote_hooks(nullptr);
  NodeImpl* n = g_node.exchange(nullptr, std::memory_order_seq_cst);
  while (g_pollers.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  // stopped first (the sockets close, held senders and waiting callers are let go), freed once
  // no thread is inside it any more: processes may still be sending as the Node goes
  n->stop();
  wait_node_unused();
  delete n;
}

std::string node_cookie() {
  const NodeUse node;
  return node ? node->cookie() : std::string();
}

std::shared_ptr<const zmtp::Curve> node_curve_server() {
  const NodeUse node;
  return node ? node->curve_server() : nullptr;
}

}  // namespace dist

Atom Node::name() const { return impl()->name(); }
std::uint16_t Node::port() const { return impl()->port(); }

namespace node {

Atom self() { return detail::local_node().name; }
bool alive() { return impl() != nullptr; }

std::vector<Atom> list() {
  const dist::NodeUse node;
  return node ? node->connected() : std::vector<Atom>{};
}

Expected<Atom> connect(Atom n, std::chrono::milliseconds timeout) {
  auto w = std::make_shared<dist::Waiter>();
  {
    const dist::NodeUse node;
    if (!node) return Failure{Errc::not_alive, atom("not_alive"), "this node is not alive (no Node)"};
    node->enqueue({dist::Command::connect, n, {}, w});
  }
  std::unique_lock lock(w->mu);  // (outside the NodeUse: a stopping node finishes the waiter)
  if (!w->cv.wait_for(lock, timeout, [&] { return w->done; })) {
    return Failure{Errc::timeout, atom("timeout"), "timeout"};
  }
  if (w->ok) return n;
  const std::string& why = w->error;
  if (why == "bad node name" || why == "that is this node") return Failure{Errc::badarg, atom("badarg"), why};
  if (why.starts_with("refused") || why.find("(refused: ") != std::string::npos) {
    return Failure{Errc::refused, atom("refused"), why};
  }
  return Failure{Errc::noconnection, atom("noconnection"), why};
}

void disconnect(Atom n) {
  if (const dist::NodeUse node; node) node->enqueue({dist::Command::disconnect, n, {}, nullptr});
}

bool ping(Atom n, std::chrono::milliseconds timeout) { return connect(n, timeout).ok(); }

void monitor_nodes(bool on) {
  const Pid me = nodus::self();
  if (me.is_null()) throw std::logic_error("node::monitor_nodes needs a calling process");
  std::lock_guard lock(dist::g_node_watchers_mu);
  std::erase(dist::g_node_watchers, me);
  if (on) dist::g_node_watchers.push_back(me);
}

void monitor(Atom n, bool on) {
  const Pid me = nodus::self();
  if (me.is_null()) throw std::logic_error("node::monitor needs a calling process");
  const dist::NodeUse node;
  if (!node) {
    if (on) send(me, tuple(atom("nodedown"), n));
    return;
  }
  node->monitor_node(n, me, on);
}

}  // namespace node

void register_function(std::string name, RemoteFunction f) {
  std::lock_guard lock(dist::g_functions_mu);
  dist::g_functions[std::move(name)] = std::move(f);
}

namespace {

// What a failed spawn's text says: the function is not there, or the node could not be reached.
Errc spawn_errc(const std::string& error) {
  if (error.starts_with("no function ")) return Errc::not_found;
  if (error.starts_with("cannot start ")) return Errc::exception;
  return Errc::noconnection;
}

// Erlang's answer to a spawn that did not happen there: a pid of that node that is already
// gone, and what a dead process gives its caller's link (an exit signal) and monitor (a Down):
// noconnection when the node could not be reached, undef when it has no such function.
Pid spawn_failed(Atom node_name, const SpawnError& e, const SpawnOptions& opts, const Ref& ref) {
  if (e.code != Errc::noconnection && e.code != Errc::not_found) throw e;
  const Pid gone{node_name, 0, 0, 1};
  const Term why = e.code == Errc::noconnection ? atoms::noconnection() : atom("undef");
  // (not as a link's signal: there is no link to a pid that never lived; the effect is the same)
  if (opts.link) runtime::send_exit_signal(self(), gone, why, false);
  if (opts.monitor) runtime::deliver_local(self(), detail::make_node(Down{ref, gone, why}));
  return gone;
}

// Starts a registered function on this node.
Pid spawn_here(const std::string& function, Term args, const SpawnOptions& opts, Ref* mref) {
  auto f = dist::find_function(function);
  if (!f) throw SpawnError("no function " + function + " on " + std::string(node::self().name()), Errc::not_found);
  Proc p = (*f)(std::move(args));
  return detail::spawn_frame(p.release(), opts, {}, mref);
}

// Sends a spawn request to `node_name`; its answer goes to `waiter` or, with kSpawnAsync, to
// the calling process as a SpawnReply. Returns the request id.
std::uint64_t request_spawn(dist::NodeImpl* node, Atom node_name, const std::string& function,
                            const Term& args, const SpawnOptions& opts, std::uint8_t flags,
                            const Ref& ref, std::shared_ptr<dist::Waiter> waiter) {
  const Pid me = self();
  if ((opts.link || opts.monitor || (flags & dist::kSpawnAsync)) && me.is_null()) {
    throw SpawnError("spawn with link or monitor needs a calling process", Errc::badarg);
  }
  if (function.size() > 255) throw SpawnError("function name longer than 255 bytes", Errc::system_limit);
  const Pid gl = opts.group_leader.is_null() ? group_leader() : opts.group_leader;
  if (opts.link) flags |= dist::kSpawnLink;
  if (opts.monitor) flags |= dist::kSpawnMonitor;
  const std::uint64_t req = node->next_request();
  std::string f = dist::frames::SpawnRequest{req, me.id, me.serial, flags, gl, function, args, ref}.encode();
  if (f.empty()) throw SpawnError("spawn request does not fit the wire (a name longer than 255 bytes)", Errc::system_limit);
  if (opts.monitor) {
    // the caller's side exists before the request leaves: a DOWN that beats the reply is kept
    detail::adopt_monitor(Pid{node_name, 0, 0, 0}, ref);
  }
  dist::Command c{dist::Command::spawn, node_name, std::move(f), std::move(waiter), req, me};
  c.flags = flags;
  c.ref = ref;
  node->send_spawn(std::move(c));
  return req;
}

// Blocks for the answer to a spawn request.
Pid await_spawn(dist::Waiter& w, Atom node_name, std::chrono::milliseconds timeout) {
  std::unique_lock lock(w.mu);
  if (!w.cv.wait_for(lock, timeout, [&] { return w.done; })) {
    throw SpawnError("timeout waiting for " + std::string(node_name.name()), Errc::timeout);
  }
  if (!w.ok) throw SpawnError(w.error, spawn_errc(w.error));
  return w.pid;
}

}  // namespace

Pid spawn_or_throw(Atom node_name, const std::string& function, Term args, const SpawnOptions& opts,
                   std::chrono::milliseconds timeout) {
  if (opts.monitor) throw SpawnError("spawn with monitor: use spawn_monitor(node, ...), which returns the ref", Errc::badarg);
  auto waiter = std::make_shared<dist::Waiter>();
  {
    const dist::NodeUse node;
    if (!node || node_name == node::self()) return spawn_here(function, std::move(args), opts, nullptr);
    request_spawn(node.get(), node_name, function, args, opts, 0, {}, waiter);
  }
  return await_spawn(*waiter, node_name, timeout);
}

namespace {

std::pair<Pid, Ref> spawn_monitor_with(const Ref& ref, Atom node_name, const std::string& function, Term args,
                                       SpawnOptions opts, std::chrono::milliseconds timeout) {
  opts.monitor = true;
  auto waiter = std::make_shared<dist::Waiter>();
  {
    const dist::NodeUse node;
    if (!node || node_name == node::self()) {
      Ref local;
      Pid pid = spawn_here(function, std::move(args), opts, &local);
      return {pid, local};
    }
    request_spawn(node.get(), node_name, function, args, opts, 0, ref, waiter);
  }
  try {
    return {await_spawn(*waiter, node_name, timeout), ref};
  } catch (const SpawnError&) {
    // the request's monitor may have fired already (an earlier attempt's connection failed
    // while this request was on its way): the caller never sees a Down for a ref it was not given
    demonitor(ref, true);
    throw;
  }
}

}  // namespace

std::pair<Pid, Ref> spawn_monitor_or_throw(Atom node_name, const std::string& function, Term args,
                                           SpawnOptions opts, std::chrono::milliseconds timeout) {
  return spawn_monitor_with(make_ref(), node_name, function, std::move(args), opts, timeout);
}

Pid spawn(Atom node_name, const std::string& function, Term args, const SpawnOptions& opts,
          std::chrono::milliseconds timeout) {
  try {
    return spawn_or_throw(node_name, function, std::move(args), opts, timeout);
  } catch (const SpawnError& e) {
    if (opts.monitor) throw;
    return spawn_failed(node_name, e, opts, {});
  }
}

std::pair<Pid, Ref> spawn_monitor(Atom node_name, const std::string& function, Term args, SpawnOptions opts,
                                  std::chrono::milliseconds timeout) {
  opts.monitor = true;
  const Ref ref = make_ref();
  try {
    return spawn_monitor_with(ref, node_name, function, std::move(args), opts, timeout);
  } catch (const SpawnError& e) {
    if (e.code != Errc::noconnection && e.code != Errc::not_found) throw;
    // one Down, with the ref and the pid the caller is given
    return {spawn_failed(node_name, e, opts, ref), ref};
  }
}

Async<Spawned> spawn_request(Atom node_name, std::string function, Term args, SpawnOptions opts,
                             std::chrono::milliseconds timeout) {
  const Ref ref = opts.monitor ? make_ref() : Ref{};
  std::uint64_t req = 0;
  {
    const dist::NodeUse node;  // (not across the co_await: the process may move threads)
    if (node && !(node_name == node::self())) {
      req = request_spawn(node.get(), node_name, function, args, opts, dist::kSpawnAsync, ref, nullptr);
    }
  }
  if (req == 0) {
    Spawned s;
    s.pid = spawn_here(function, std::move(args), opts, &s.monitor);
    co_return s;
  }
  auto reply = co_await receive<detail::SpawnReply>(
      [req](const detail::SpawnReply& r) { return r.request == req; }, timeout);
  if (!reply || !reply->error.empty()) {
    // the request's monitor may have fired (see spawn_monitor): no Down for a ref never given
    if (opts.monitor) demonitor(ref, true);
    if (!reply) throw SpawnError("timeout waiting for " + std::string(node_name.name()), Errc::timeout);
    throw SpawnError(reply->error, spawn_errc(reply->error));
  }
  co_return Spawned{reply->pid, ref};
}

namespace detail {
void adopt_monitor(const Pid& target, const Ref& ref) {
  const Pid me = self();
  if (!runtime::add_monitoring(me, ref, target)) return;
  if (const dist::NodeUse node; node && !(target.node == Atom()) && !(target.node == node::self())) {
    node->track_monitor(me, target, ref);
  }
}
Ref monitor_name(Atom name, Atom node_name) {
  const Ref ref = make_ref();
  monitor_name_as(name, node_name, ref);
  return ref;
}
void monitor_name_as(Atom name, Atom node_name, const Ref& ref) {
  const dist::NodeUse node;
  if (!node || node_name == node::self()) {
    if (auto pid = whereis(name)) {
      monitor_as(*pid, ref);
    } else {
      nodus::send(self(), Down{ref, Pid{}, atoms::noproc()});
    }
    return;
  }
  const Pid me = self();
  adopt_monitor(Pid{node_name, 0, 0, 0}, ref);  // fires with noconnection if the node goes
  node->track_name_monitor(ref, name);
  node->send_control(node_name, dist::frames::Monitor{false, me, Term(name), ref}.encode());
}

void remove_monitor(const Ref& ref) {
  runtime::Process* me = runtime::current();
  if (me == nullptr) throw std::logic_error("remove_monitor needs a calling process");
  runtime::remove_monitoring(me->pid(), ref);
  if (const dist::NodeUse node; node) node->untrack_monitor(ref);
  runtime::remove_down(me, ref);
}
void retarget_monitor(const Ref& ref, const Pid& target) {
  // in place, and only if it is still there: a DOWN (or noconnection) may have taken it
  // already. (Removing and adding it again lost a DOWN that the I/O thread handled in between,
  // the crash of a task whose answer had just woken its owner.)
  if (!runtime::retarget_monitoring(self(), ref, target)) return;
  if (const dist::NodeUse node; node) node->retrack_monitor(ref, target);
}

void deliver_remote_name(Atom name, Atom node_name, MsgNode* n) {
  const dist::NodeUse node;
  if (node_name == node::self() || !node) {
    deliver_named(name, n);
    return;
  }
  if (!dist::can_travel(n)) {
    dist::warn_bad("message", "type " + std::string(n->type->name) + " has no wire name (nodus::register_type) and cannot go to another node");
    n->type->destroy(n);
    return;
  }
  node->post_send_name(name, node_name, n);
  n->type->destroy(n);
}
}  // namespace detail

}  // namespace nodus

namespace nodus::dist {
void NodeImpl::fill_stats(observe::Stats& s) {
  s.node = name_;
  s.connections_up = conns_up_.load(std::memory_order_relaxed);
  s.connections_down = conns_down_.load(std::memory_order_relaxed);
  s.handshakes_refused = refused_.load(std::memory_order_relaxed);
  s.senders_held = held_total_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(reasons_mu_);
    s.down_reasons = down_reasons_;
  }
  std::vector<std::pair<std::uint32_t, std::shared_ptr<PeerCounters>>> peers;
  std::unordered_map<std::uint32_t, std::shared_ptr<Channel>> chans;
  {
    std::lock_guard lock(chan_mu_);
    peers.assign(peer_counters_.begin(), peer_counters_.end());
    chans = channels_;
  }
  std::set<std::uint32_t> up;
  {
    std::lock_guard lock(list_mu_);
    for (Atom a : up_) up.insert(a.id());
  }
  const std::int64_t now = steady_now_ns();
  for (const auto& [id, k] : peers) {
    observe::PeerStats p;
    p.node = Atom::from_id(id);
    p.up = up.count(id) != 0;
    p.msgs_out = k->msgs_out.load(std::memory_order_relaxed);
    p.bytes_out = k->bytes_out.load(std::memory_order_relaxed);
    p.msgs_in = k->msgs_in.load(std::memory_order_relaxed);
    p.bytes_in = k->bytes_in.load(std::memory_order_relaxed);
    p.busy_episodes = k->busy_episodes.load(std::memory_order_relaxed);
    p.busy_ns = k->busy_ns.load(std::memory_order_relaxed);
    if (const std::int64_t since = k->busy_since.load(std::memory_order_relaxed); since != 0) p.busy_ns += now - since;
    p.connections_up = k->ups.load(std::memory_order_relaxed);
    p.connections_down = k->downs.load(std::memory_order_relaxed);
    if (auto c = chans.find(id); c != chans.end()) {
      std::lock_guard lock(c->second->mu);
      p.queued_bytes = c->second->queued();
    }
    s.peers.push_back(p);
  }
  std::sort(s.peers.begin(), s.peers.end(),
            [](const observe::PeerStats& a, const observe::PeerStats& b) { return a.node.name() < b.node.name(); });
}
}  // namespace nodus::dist

namespace nodus::observe::parts {
void fill_dist(Stats& s) {
  if (const dist::NodeUse node; node) {
    node->fill_stats(s);
  } else {
    s.node = atom("nonode@nohost");
  }
}
}  // namespace nodus::observe::parts
