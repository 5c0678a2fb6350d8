// What each frame means: handshake (both sides), sends, spawns, links and monitors.
#include "node_impl.hpp"
#include "../runtime/trace.hpp"
#include "json.hpp"
#include "wire_types.hpp"

#include <sys/epoll.h>

namespace nodus::dist {

// ------------------------------------------------------------------------------ encoding

std::string control(Op op, std::initializer_list<Term> terms, int flag) {
  std::string f;
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(op));
  auto it = terms.begin();
  encode_term(w, *it++);
  encode_term(w, *it++);
  if (flag >= 0) w.u8(static_cast<std::uint8_t>(flag));
  for (; it != terms.end(); ++it) encode_term(w, *it);
  if (!w.ok()) {
    warn_bad("frame", "not sent: a name longer than 255 bytes cannot travel");
    return {};
  }
  return f;
}

// The payload of a node that can travel (Term or io::Request); false for other types.
bool encode_payload(Writer& w, detail::MsgNode* n, bool json) {
  if (json && n->type == &detail::type_info_v<Term>) {
    w.u8(static_cast<std::uint8_t>(Payload::json));
    w.bytes(term_to_json(static_cast<detail::TypedNode<Term>*>(n)->value));
    return true;
  }
  if (n->type == &detail::type_info_v<Term>) {
    w.u8(static_cast<std::uint8_t>(Payload::term));
    encode_term(w, static_cast<detail::TypedNode<Term>*>(n)->value);
    return true;
  }
  if (n->type == &detail::type_info_v<io::Request>) {
    w.u8(static_cast<std::uint8_t>(Payload::io_request));
    w.str32(static_cast<detail::TypedNode<io::Request>*>(n)->value.text);
    return true;
  }
  if (const WireEntry* wt = wire_type_of(n->type)) {
    w.u8(static_cast<std::uint8_t>(Payload::typed));
    w.str8(wt->name);
    wt->type.encode(w.out(), n);
    return true;
  }
  return false;
}

bool can_travel(detail::MsgNode* n) {
  return n->type == &detail::type_info_v<Term> || n->type == &detail::type_info_v<io::Request> ||
         wire_type_of(n->type) != nullptr;
}

void NodeImpl::post_send(const Pid& to, detail::MsgNode* n) {
  const bool json = wants_json(to.node);
  emit(to.node, [&](Writer& w) {
    w.u8(kWireVersion);
    w.u8(static_cast<std::uint8_t>(Op::send_pid));
    w.u32(to.creation);
    w.u32(to.id);
    w.u32(to.serial);
    encode_payload(w, n, json);
  });
}

void NodeImpl::post_send_name(Atom name, Atom node, detail::MsgNode* n) {
  const bool json = wants_json(node);
  emit(node, [&](Writer& w) {
    w.u8(kWireVersion);
    w.u8(static_cast<std::uint8_t>(Op::send_name));
    w.str8(name.name());
    encode_payload(w, n, json);
  });
}

namespace {
// A Term payload, decoded by the process that receives it.
detail::MsgNode* decode_wire_term(const detail::EncodedNode* e) {
  Reader r(std::string_view(e->bytes(), e->size));
  auto term = decode_term(r);
  if (!term || !r.at_end()) {
    warn_bad("message", "malformed term from another node (" + std::to_string(e->size) + " bytes)");
    return nullptr;
  }
  return detail::make_node(std::move(*term));
}
// A typed payload (str8 wire name, cereal bytes), decoded by the process that receives it.
detail::MsgNode* decode_wire_typed(const detail::EncodedNode* e) {
  Reader r(std::string_view(e->bytes(), e->size));
  const std::string_view name = r.str8();
  if (!r.ok()) {
    warn_bad("message", "truncated typed message from another node");
    return nullptr;
  }
  const WireEntry* wt = wire_type_named(name);
  if (wt == nullptr) {
    warn_bad("message", "unknown type '" + std::string(name) +
                            "' from another node: register it here with nodus::register_type");
    return nullptr;
  }
  try {
    return wt->type.decode(r.rest());
  } catch (const std::exception& ex) {
    warn_bad("message", "malformed '" + std::string(name) + "' from another node: " + ex.what());
    return nullptr;
  }
}
// A JSON payload (a foreign tool's), decoded by the process that receives it.
detail::MsgNode* decode_wire_json(const detail::EncodedNode* e) {
  std::string why;
  auto term = json_to_term(std::string_view(e->bytes(), e->size), &why);
  if (!term) {
    warn_bad("message", "malformed JSON payload from another node: " + why);
    return nullptr;
  }
  return detail::make_node(std::move(*term));
}
std::string print_encoded(const detail::MsgNode*) { return "#encoded<>"; }
constexpr detail::TypeInfo kEncodedTerm{"nodus::Term (encoded)", detail::NodeKind::encoded,
                                        &detail::EncodedNode::destroy, &print_encoded};
constexpr detail::TypeInfo kEncodedJson{"nodus::Term (JSON)", detail::NodeKind::encoded,
                                        &detail::EncodedNode::destroy, &print_encoded};
constexpr detail::TypeInfo kEncodedTyped{"typed message (encoded)", detail::NodeKind::encoded,
                                         &detail::EncodedNode::destroy, &print_encoded};
}  // namespace

// ------------------------------------------------------------------------------ fuzzing

void NodeImpl::start_offline() {
  name_ = Atom(opts_.name);
  cookie_ = opts_.cookie;
  creation_ = 1;
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  detail::set_local_node(name_, creation_);
}

void NodeImpl::fuzz_feed(std::string_view message, bool authenticated) {
  std::lock_guard io(io_mu_);
  if (!fuzz_conn_ || fuzz_conn_->closed || authenticated != fuzz_conn_->up) {
    fuzz_conn_ = std::make_unique<Conn>(Handshake(Handshake::Role::acceptor, std::string(name_.name()), creation_,
                                                  cookie_, 0));
    fuzz_conn_->addr = "fuzz";
    if (authenticated) {
      fuzz_conn_->up = true;
      fuzz_conn_->peer = Atom("fuzz@localhost");
    }
  }
  (void)on_message(*fuzz_conn_, message);
}

void NodeImpl::fuzz_reset() {
  std::lock_guard io(io_mu_);
  fuzz_conn_.reset();
  spawns_.clear();
  peers_.clear();
  graveyard_.clear();
  {
    std::lock_guard lock(qmu_);
    queue_.clear();
  }
  std::lock_guard lock(chan_mu_);
  for (auto& [id, ch] : channels_) {
    std::lock_guard l(ch->mu);
    ch->pending.clear();
    ch->pending_bytes = 0;
  }
  channels_.clear();
}

void NodeImpl::deliver_frame(const PeerRef& in, std::string_view frame) {
  Reader r(frame);
  r.u8();
  const auto op = static_cast<Op>(r.u8());
  Pid to;
  Atom to_name;
  if (op == Op::send_pid) {
    to.creation = r.u32();
    to.id = r.u32();
    to.serial = r.u32();
  } else if (op == Op::send_name) {
    auto n = r.str8();
    if (r.ok()) to_name = Atom(n);
  } else if (op == Op::spawn_request) {
    on_spawn_request(in, r);
    return;
  } else if (op == Op::spawn_reply) {
    on_spawn_reply(in, r);
    return;
  } else if (op >= Op::link && op <= Op::down) {
    on_control(in, op, r);
    return;
  } else {
    warn_bad("frame", "unknown operation " + std::to_string(static_cast<int>(op)) + " from " + std::string(in.name()));
    return;
  }
  const auto enc = static_cast<Payload>(r.u8());
  detail::MsgNode* n = nullptr;
  if (r.ok() && enc == Payload::term) {
    // decoded by the receiving process (decode_wire_term), on its own thread
    const std::string_view body = r.rest();
    n = detail::EncodedNode::make(&kEncodedTerm, &decode_wire_term, body.data(),
                                  static_cast<std::uint32_t>(body.size()));
  } else if (r.ok() && enc == Payload::json) {
    const std::string_view body = r.rest();
    n = detail::EncodedNode::make(&kEncodedJson, &decode_wire_json, body.data(),
                                  static_cast<std::uint32_t>(body.size()));
  } else if (r.ok() && enc == Payload::typed) {
    const std::string_view body = r.rest();
    n = detail::EncodedNode::make(&kEncodedTyped, &decode_wire_typed, body.data(),
                                  static_cast<std::uint32_t>(body.size()));
  } else if (r.ok() && enc == Payload::io_request) {
    auto text = r.str32();
    if (!r.ok() || !r.at_end()) {
      warn_bad("message", "malformed io request from " + std::string(in.name()));
      return;
    }
    n = detail::make_node(io::Request{std::string(text)});
  } else {
    warn_bad("message", "unknown payload encoding from " + std::string(in.name()));
    return;
  }
  if (op == Op::send_pid) {
    if (to.creation != creation_) {  // a pid of an earlier incarnation of this node
      n->type->destroy(n);
      return;
    }
    runtime::deliver_local(to, n);
  } else {
    detail::deliver_named(to_name, n);
  }
}

void NodeImpl::on_control(const PeerRef& in, Op op, Reader& r) {
  auto a = decode_term(r);  // from / watcher
  auto b = decode_term(r);  // to / target
  const std::uint8_t flag = op == Op::exit ? r.u8() : 0;
  std::optional<Term> c, d;
  if (op == Op::exit) c = decode_term(r);
  if (op == Op::monitor || op == Op::demonitor || op == Op::down) c = decode_term(r);
  if (op == Op::down) d = decode_term(r);
  // MONITOR, DEMONITOR and DOWN may name the target by its registered name (an atom)
  const bool by_name_ok = op == Op::monitor || op == Op::demonitor || op == Op::down;
  const bool shape = a && b && a->is_pid() && (b->is_pid() || (by_name_ok && b->is_atom())) &&
                     (op != Op::exit || c) && (op != Op::monitor || (c && c->is_ref())) &&
                     (op != Op::demonitor || (c && c->is_ref())) && (op != Op::down || (c && c->is_ref() && d));
  if (!r.ok() || !r.at_end() || !shape) {
    warn_bad("frame", "malformed link/monitor frame from " + std::string(in.name()));
    return;
  }
  const Pid& x = a->as_pid();
  if (op == Op::down) {  // remote target went away (a pid, or a name nothing was registered under)
    const Ref& ref = c->as_ref();
    const Pid target = b->is_pid() ? b->as_pid() : Pid{in.node, in.creation, 0, 0};
    untrack_monitor(ref);
    // a DOWN that crossed the watcher's demonitor is dropped, as Erlang does (otherwise every
    // call's late DOWN would pile up in the caller's mailbox)
    if (runtime::remove_monitoring(x, ref)) {
      runtime::deliver_local(x, detail::make_node(Down{ref, target, std::move(*d)}));
    }
    return;
  }
  // the local target: a pid, or (MONITOR, DEMONITOR: Erlang's monitor(process, {Name, Node}))
  // whatever is registered under a name
  std::optional<Pid> target = b->is_pid() ? std::optional<Pid>(b->as_pid()) : whereis(b->as_atom());
  if (!target) {
    if (op == Op::monitor) send_control(x.node, control(Op::down, {Term(x), *b, *c, Term(atoms::noproc())}));
    return;
  }
  const Pid& y = *target;
  switch (op) {
    case Op::link:  // remote x links to local y
      if (runtime::add_remote_link(y, x)) {
        track_link(y, x);
      } else {
        send_control(x.node, control(Op::exit, {Term(y), Term(x), Term(atoms::noproc())}, 1));
      }
      break;
    case Op::unlink:
      runtime::remove_remote_link(y, x);
      untrack_link(y, x);
      break;
    case Op::exit:  // remote x's exit signal to local y
      if (flag) untrack_link(y, x);
      runtime::send_exit_signal(y, x, std::move(*c), flag != 0);
      break;
    case Op::monitor:  // remote watcher x monitors local y (the DOWN names it as the MONITOR did)
      if (!runtime::add_remote_watcher(y, c->as_ref(), x)) {
        send_control(x.node, control(Op::down, {Term(x), *b, *c, Term(atoms::noproc())}));
      }
      break;
    case Op::demonitor: runtime::remove_watcher(y, c->as_ref()); break;
    default: break;
  }
}

void NodeImpl::on_spawn_request(const PeerRef& in, Reader& r) {
  const std::uint64_t req = r.u64();
  const std::uint32_t from_id = r.u32(), from_serial = r.u32();
  const std::uint8_t flags = r.u8();
  auto gl = decode_term(r);
  auto fname = r.str8();
  auto args = decode_term(r);
  std::optional<Term> ref;
  if (flags & kSpawnMonitor) ref = decode_term(r);
  if (!r.ok() || !r.at_end() || !gl || !gl->is_pid() || !args || ((flags & kSpawnMonitor) && !(ref && ref->is_ref()))) {
    warn_bad("frame", "malformed spawn request from " + std::string(in.name()));
    return;
  }
  std::string reply;
  Writer w(reply);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::spawn_reply));
  w.u64(req);
  auto f = find_function(fname);
  std::string error;
  Pid pid;
  if (!f) {
    error = "no function " + std::string(fname) + " on " + std::string(name_.name());
  } else {
    try {
      Proc p = (*f)(std::move(*args));
      const Pid caller{in.node, in.creation, from_id, from_serial};
      const bool link = flags & kSpawnLink, mon = flags & kSpawnMonitor;
      pid = detail::spawn_frame(p.release(), {.group_leader = gl->as_pid()}, {}, nullptr,
                                link ? caller : Pid{}, mon ? caller : Pid{}, mon ? ref->as_ref() : Ref{});
      if (link) track_link(pid, caller);
    } catch (const std::exception& e) {
      error = std::string("cannot start ") + std::string(fname) + ": " + e.what();
    }
  }
  if (error.empty()) {
    w.u8(0);
    w.u32(pid.id);
    w.u32(pid.serial);
  } else {
    logger().warn("spawn request from {} failed: {}", in.name(), error);
    w.u8(1);
    w.str8(error.size() > 255 ? error.substr(0, 252) + "..." : error);  // a text, shortened on purpose
  }
  send_control(in.node, reply);
}

void NodeImpl::on_spawn_reply(const PeerRef& from, Reader& r) {
  const std::uint64_t req = r.u64();
  const std::uint8_t status = r.u8();
  auto it = spawns_.find(req);
  if (!r.ok() || it == spawns_.end()) {
    warn_bad("frame", "unexpected spawn reply");
    return;
  }
  const PendingSpawn ps = std::move(it->second);
  spawns_.erase(it);
  if (status == 0) {
    const std::uint32_t id = r.u32(), serial = r.u32();
    const std::uint32_t creation = from.creation;
    if (!r.ok() || !(from.node == ps.node)) {
      finish_spawn(req, ps, {}, "malformed spawn reply");
      return;
    }
    finish_spawn(req, ps, Pid{ps.node, creation, id, serial}, {});
  } else {
    auto why = r.str8();
    finish_spawn(req, ps, {}, r.ok() ? std::string(why) : std::string("malformed spawn reply"));
  }
}

void NodeImpl::finish_spawn(std::uint64_t req, const PendingSpawn& ps, const Pid& pid, const std::string& error) {
  if (error.empty()) {
    // before any later frame from that node (its exit, say) is handled
    if (ps.flags & kSpawnLink) {
      if (runtime::add_remote_link(ps.caller, pid)) {
        track_link(ps.caller, pid);
      } else {  // the caller is gone: the new process gets its exit
        send_control(ps.node, control(Op::exit, {Term(ps.caller), Term(pid), Term(atoms::noproc())}, 1));
      }
    }
    if (ps.flags & kSpawnMonitor) {
      // the caller registered its side (target: the node only) before sending the request
      untrack_monitor(ps.ref);
      if (runtime::remove_monitoring(ps.caller, ps.ref) && runtime::add_monitoring(ps.caller, ps.ref, pid)) {
        track_monitor(ps.caller, pid, ps.ref);
      } else if (!is_process_alive(ps.caller)) {
        send_control(ps.node, control(Op::demonitor, {Term(ps.caller), Term(pid), Term(ps.ref)}));
      }
    }
  }
  if (!error.empty() && (ps.flags & kSpawnMonitor)) {
    untrack_monitor(ps.ref);
    runtime::remove_monitoring(ps.caller, ps.ref);
  }
  if (ps.flags & kSpawnAsync) {
    runtime::deliver_local(ps.caller, detail::make_node(detail::SpawnReply{req, pid, error}));
  } else if (error.empty()) {
    ps.waiter->finish_spawn(pid);
  } else {
    ps.waiter->finish(false, error);
  }
}

}  // namespace nodus::dist
