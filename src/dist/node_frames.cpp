// What each frame means: handshake (both sides), sends, spawns, links and monitors.
#include "node_impl.hpp"
#include "../runtime/trace.hpp"
#include "json.hpp"
#include "wire_types.hpp"

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

// Splits a ZeroMQ message into its records; false (and a log line) if it is malformed.
template <class F>
bool for_each_record(std::string_view msg, const std::string& from, F&& f) {
  Reader r(msg);
  while (!r.at_end()) {
    const std::uint32_t len = r.u32();
    auto rec = r.bytes(len);
    if (!r.ok()) {
      warn_bad("frame", "truncated record (" + std::to_string(msg.size()) + " bytes) from " + from);
      return false;
    }
    if (!f(rec)) return false;
  }
  return true;
}

void NodeImpl::on_dealer(Peer& p) {
  for (;;) {
    zmq::message_t m;
    if (!p.dealer->recv(m, zmq::recv_flags::dontwait)) return;
    if (!on_dealer_message(p, m.to_string_view())) return;
  }
}

bool NodeImpl::on_dealer_message(Peer& p, std::string_view m) {
  std::string_view rec;
  {
    Reader outer(m);
    rec = outer.bytes(outer.u32());
    if (!outer.ok() || !outer.at_end()) {
      warn_bad("frame", "malformed handshake message from " + p.name);
      return true;
    }
  }
  Reader r(rec);
  const auto ver = r.u8();
  const auto op = static_cast<Op>(r.u8());
  if (!r.ok() || ver != kWireVersion) {
    warn_bad("frame", "bad version from " + p.name);
    return true;
  }
  if (op == Op::challenge && p.state == Peer::connecting) {
    auto their_name = r.str8();
    const auto their_creation = r.u32();
    auto nonce_bytes = r.bytes(16);
    auto mac = r.bytes(32);
    const std::uint8_t flags = r.ok() && !r.at_end() ? r.u8() : 0;  // like HELLO's
    if (!r.ok() || !r.at_end()) {
      warn_bad("frame", "malformed challenge from " + p.name);
      return true;
    }
    Nonce theirs;
    std::memcpy(theirs.data(), nonce_bytes.data(), 16);
    const bool genuine = their_name == p.name &&
                         mac_equal(acceptor_mac(cookie_, p.nonce, theirs, name_.name(), p.name), mac);
    // answer even when their proof fails, so the other side logs the refusal too
    const Mac ours = connector_mac(cookie_, p.nonce, theirs, name_.name(), p.name);
    std::string reply;
    Writer w(reply);
    w.u8(kWireVersion);
    w.u8(static_cast<std::uint8_t>(Op::reply));
    w.bytes(std::string_view(reinterpret_cast<const char*>(ours.data()), ours.size()));
    send_peer(p, reply);
    if (!genuine) {
      logger().error("** Connection to node {} refused: it does not share our cookie **", p.name);
      peer_down(Atom(p.name), "cookie mismatch");
      return false;
    }
    p.creation = their_creation;
    p.state = Peer::challenged;
    // a foreign peer we called first asks for JSON here, before anything queued for it leaves
    if (flags & kHelloJson) set_json_peer(Atom(p.name), true);
  } else if (op == Op::accept && p.state == Peer::challenged) {
    p.state = Peer::up;
    mark_up(Atom(p.name), true);
    logger().info("connected to {}", p.name);
    for (auto& w : p.waiters) w->finish(true);
    p.waiters.clear();
    flush(p);
  } else if (op == Op::refuse) {
    const std::string why(r.str8());
    logger().error("** Connection to node {} refused: {} **", p.name, why);
    peer_down(Atom(p.name), "refused: " + why);
    return false;
  } else {
    warn_bad("frame", "unexpected frame from " + p.name);
  }
  return true;
}

void NodeImpl::on_monitor(Peer& p) {
  std::uint16_t event;
  std::uint32_t value;
  while (read_event(*p.monitor, &event, &value, nullptr)) {
    if ((event & kLostEvents) == 0) continue;
    connection_lost(p, event, value);
    return;  // `p` is gone
  }
}

void NodeImpl::connection_lost(Peer& p, std::uint16_t event, std::uint32_t value) {
  const bool handshake_failed = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                                event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                                event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
  // a connection that closes before it was up with a known likely cause (a mode mismatch)
  // failed its handshake too
  if (handshake_failed || (p.state != Peer::up && !p.hint.empty())) {
    logger().debug("handshake event {:#x} value {:#x} on connection to {}", event, value, p.name);
    const std::string why =
        p.hint.empty() ? handshake_failure(event, value, p.name, opts_.curve.has_value()) : p.hint;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && p.hint.empty()) {
      logger().warn("cannot connect to node {}: {}", p.name, why);  // also: it just stopped
    } else {
      logger().error("** Cannot connect to node {}: {} **", p.name, why);
    }
    peer_down(Atom(p.name), why);
  } else {
    peer_down(Atom(p.name), "connection closed");
  }
}

std::size_t NodeImpl::on_router() {
  if (native_) return on_native_inbound();
  for (std::size_t n = 0;; ++n) {
    zmq::message_t rid, frame;
    if (!router_->recv(rid, zmq::recv_flags::dontwait)) return n;
    NODUS_MARK(router_read);
    if (!rid.more()) continue;  // cannot happen on a ROUTER; be safe
    (void)router_->recv(frame, zmq::recv_flags::dontwait);
    while (frame.more()) {  // extra parts: not our protocol; drain them
      zmq::message_t extra;
      if (!router_->recv(extra, zmq::recv_flags::dontwait)) break;
      frame.move(extra);
      warn_bad("frame", "unexpected multipart message");
    }
    on_router_message(rid.to_string(), frame.to_string_view());
  }
}

void NodeImpl::on_router_message(const std::string& rid, std::string_view body) {
  Inbound* in = nullptr;  // once a data record of this message came from an accepted peer
  for_each_record(body, "a peer", [&](std::string_view rec) {
    if (in != nullptr) {
      deliver_frame(*in, rec);
      return true;
    }
    return handle_inbound_frame(rid, rec, &in);
  });
}

// ------------------------------------------------------------------------------ fuzzing

void NodeImpl::start_offline() {
  name_ = Atom(opts_.name);
  cookie_ = opts_.cookie;
  creation_ = 1;
  router_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::router);
  router_->set(zmq::sockopt::router_mandatory, 1);
  router_->set(zmq::sockopt::linger, 0);
  router_->bind("tcp://127.0.0.1:*");
  detail::set_local_node(name_, creation_);
}

void NodeImpl::fuzz_feed(std::string_view message, bool authenticated) {
  std::lock_guard io(io_mu_);
  static const std::string kRid("fuzz-peer", 9);
  if (authenticated) {
    Inbound& in = inbound_[kRid];
    in.name = "fuzz@localhost";
    in.creation = 7;
    in.authenticated = true;
  } else {
    inbound_.erase(kRid);
  }
  on_router_message(kRid, message);
}

void NodeImpl::fuzz_reset() {
  std::lock_guard io(io_mu_);
  inbound_.clear();
  spawns_.clear();
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

bool NodeImpl::handle_inbound_frame(const std::string& rid, std::string_view frame, Inbound** accepted) {
  Reader r(frame);
  const auto ver = r.u8();
  const auto op = static_cast<Op>(r.u8());
  if (!r.ok() || ver != kWireVersion) {
    warn_bad("frame", "unknown version or truncated header (" + std::to_string(frame.size()) + " bytes)");
    return false;
  }
  auto it = inbound_.find(rid);
  if (op == Op::hello) {
    auto their_name = r.str8();
    const auto their_creation = r.u32();
    auto nonce = r.bytes(16);
    const std::uint8_t flags = r.ok() && !r.at_end() ? r.u8() : 0;
    if (!r.ok() || !r.at_end() || !valid_node_name(their_name)) {
      warn_bad("frame", "malformed hello");
      return false;
    }
    Inbound in;
    in.name = std::string(their_name);
    in.creation = their_creation;
    in.flags = flags;
    std::memcpy(in.their_nonce.data(), nonce.data(), 16);
    in.our_nonce = make_nonce();
    in.since = Clock::now();
    const Mac mac = acceptor_mac(cookie_, in.their_nonce, in.our_nonce, in.name, name_.name());
    std::string ch;
    Writer w(ch);
    w.u8(kWireVersion);
    w.u8(static_cast<std::uint8_t>(Op::challenge));
    w.str8(name_.name());
    w.u32(creation_);
    w.bytes(std::string_view(reinterpret_cast<const char*>(in.our_nonce.data()), 16));
    w.bytes(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
    inbound_[rid] = std::move(in);
    send_router(rid, ch);
    return true;
  }
  if (it == inbound_.end()) {
    warn_bad("frame", "message from a peer that did not introduce itself");
    return false;
  }
  Inbound& in = it->second;
  if (op == Op::reply && !in.authenticated) {
    auto mac = r.bytes(32);
    const bool ok = r.ok() && r.at_end() &&
                    mac_equal(connector_mac(cookie_, in.their_nonce, in.our_nonce, in.name, name_.name()), mac);
    std::string answer;
    Writer w(answer);
    w.u8(kWireVersion);
    if (!ok) {
      logger().error("** Connection attempt from node {} rejected. Invalid challenge reply. **", in.name);
      w.u8(static_cast<std::uint8_t>(Op::refuse));
      w.str8("invalid challenge reply");
      send_router(rid, answer);
      inbound_.erase(it);
      return false;
    }
    in.authenticated = true;
    set_json_peer(Atom(in.name), (in.flags & kHelloJson) != 0);
    w.u8(static_cast<std::uint8_t>(Op::accept));
    send_router(rid, answer);
    logger().debug("accepted connection from {}", in.name);
    // connect back: our traffic to them goes on our own connection, and its loss tells us
    // at once when they go away
    std::string error;
    if (connect_peer(Atom(in.name), &error) == nullptr) {
      logger().warn("cannot connect back to {}: {}", in.name, error);
    }
    return true;
  }
  if (!in.authenticated) {
    warn_bad("frame", "message from unauthenticated peer " + in.name);
    return false;
  }
  *accepted = &in;
  deliver_frame(in, frame);
  return true;
}

void NodeImpl::deliver_frame(Inbound& in, std::string_view frame) {
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
    on_spawn_reply(r);
    return;
  } else if (op >= Op::link && op <= Op::down) {
    on_control(in, op, r);
    return;
  } else {
    warn_bad("frame", "unknown operation " + std::to_string(static_cast<int>(op)) + " from " + in.name);
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
      warn_bad("message", "malformed io request from " + in.name);
      return;
    }
    n = detail::make_node(io::Request{std::string(text)});
  } else {
    warn_bad("message", "unknown payload encoding from " + in.name);
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

void NodeImpl::on_control(Inbound& in, Op op, Reader& r) {
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
    warn_bad("frame", "malformed link/monitor frame from " + in.name);
    return;
  }
  const Pid& x = a->as_pid();
  if (op == Op::down) {  // remote target went away (a pid, or a name nothing was registered under)
    const Ref& ref = c->as_ref();
    const Pid target = b->is_pid() ? b->as_pid() : Pid{Atom(in.name), in.creation, 0, 0};
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

void NodeImpl::on_spawn_request(Inbound& in, Reader& r) {
  const std::uint64_t req = r.u64();
  const std::uint32_t from_id = r.u32(), from_serial = r.u32();
  const std::uint8_t flags = r.u8();
  auto gl = decode_term(r);
  auto fname = r.str8();
  auto args = decode_term(r);
  std::optional<Term> ref;
  if (flags & kSpawnMonitor) ref = decode_term(r);
  if (!r.ok() || !r.at_end() || !gl || !gl->is_pid() || !args || ((flags & kSpawnMonitor) && !(ref && ref->is_ref()))) {
    warn_bad("frame", "malformed spawn request from " + in.name);
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
      const Pid caller{Atom(in.name), in.creation, from_id, from_serial};
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
    logger().warn("spawn request from {} failed: {}", in.name, error);
    w.u8(1);
    w.str8(error);
  }
  send_control(Atom(in.name), reply);
}

void NodeImpl::on_spawn_reply(Reader& r) {
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
    auto peer = peers_.find(ps.node.id());
    const std::uint32_t creation = peer != peers_.end() ? peer->second.creation : 0;
    if (!r.ok()) {
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
