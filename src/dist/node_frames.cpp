// What each frame means: handshake (both sides), sends, spawns, links and monitors.
#include "node_impl.hpp"
#include "runtime/trace.hpp"
#include "frames.hpp"
#include "json.hpp"
#include "wire_types.hpp"

#include <sys/epoll.h>

namespace nodus::dist {

// ------------------------------------------------------------------------------ encoding

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
    frames::SendPid{to.creation, to.id, to.serial}.write(w);
    encode_payload(w, n, json);
  }, !tl_nosuspend);
}

void NodeImpl::post_send_name(Atom name, Atom node, detail::MsgNode* n) {
  const bool json = wants_json(node);
  emit(node, [&](Writer& w) {
    frames::SendName{name.name()}.write(w);
    encode_payload(w, n, json);
  }, true);
}

bool atom_budget_spent(Atom node) {
  if (!detail::take_atom_budget_hit()) return false;
  const NodeUse self;
  if (!self || node == Atom()) return true;
  const std::string why = "it sent more new atoms than this node takes from the network (" +
                          std::to_string(detail::network_atom_budget()) + ", max_network_atoms)";
  warn_bad("atoms", "a message from " + std::string(node.name()) + ": " + why + "; disconnecting it");
  Command c{Command::disconnect, node};
  c.error = why;
  self->enqueue(std::move(c));
  return true;
}

namespace {
// A Term payload, decoded by the process that receives it.
detail::MsgNode* decode_wire_term(const detail::EncodedNode* e) {
  Reader r(std::string_view(e->bytes(), e->size));
  auto term = decode_term(r);
  if (!term || !r.at_end()) {
    if (!atom_budget_spent(Atom::from_id(e->from))) {
      warn_bad("message", "malformed term from " + std::string(Atom::from_id(e->from).name()) + " (" +
                              std::to_string(e->size) + " bytes)");
    }
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
    if (atom_budget_spent(Atom::from_id(e->from))) return nullptr;
    warn_bad("message", "malformed '" + std::string(name) + "' from another node: " + ex.what());
    return nullptr;
  }
}
// A JSON payload (a foreign tool's), decoded by the process that receives it.
detail::MsgNode* decode_wire_json(const detail::EncodedNode* e) {
  std::string why;
  auto term = json_to_term(std::string_view(e->bytes(), e->size), &why);
  if (!term) {
    if (atom_budget_spent(Atom::from_id(e->from))) return nullptr;
    warn_bad("message", "malformed JSON payload from " + std::string(Atom::from_id(e->from).name()) + ": " + why);
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
    if (fuzz_conn_) close_conn(*fuzz_conn_);  // (forgets it wherever it is known: unnamed_)
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
  if (fuzz_conn_) close_conn(*fuzz_conn_);
  fuzz_conn_.reset();
  unnamed_.clear();
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
    auto h = frames::SendPid::read(r);
    if (!h) {
      warn_bad("frame", "truncated SEND_PID from " + std::string(in.name()));
      return;
    }
    to.creation = h->creation;
    to.id = h->id;
    to.serial = h->serial;
  } else if (op == Op::send_name) {
    auto h = frames::SendName::read(r);
    if (!h) {
      warn_bad("frame", "truncated SEND_NAME from " + std::string(in.name()));
      return;
    }
    // a name nothing was ever registered under is not an atom: nothing to deliver to, and
    // nothing kept for it
    const std::optional<Atom> known = Atom::find(h->name);
    if (!known) {
      warn_bad("message", "to " + std::string(h->name.substr(0, 64)) + " (no process is registered under that "
                          "name) from " + std::string(in.name()));
      return;
    }
    to_name = *known;
  } else if (op == Op::spawn_request) {
    on_spawn_request(in, r);
    (void)atom_budget_spent(in.node);
    return;
  } else if (op == Op::spawn_reply) {
    on_spawn_reply(in, r);
    (void)atom_budget_spent(in.node);
    return;
  } else if (op >= Op::link && op <= Op::down) {
    on_control(in, op, r);
    (void)atom_budget_spent(in.node);
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
                                  static_cast<std::uint32_t>(body.size()), in.node.id());
  } else if (r.ok() && enc == Payload::json) {
    const std::string_view body = r.rest();
    n = detail::EncodedNode::make(&kEncodedJson, &decode_wire_json, body.data(),
                                  static_cast<std::uint32_t>(body.size()), in.node.id());
  } else if (r.ok() && enc == Payload::typed) {
    const std::string_view body = r.rest();
    n = detail::EncodedNode::make(&kEncodedTyped, &decode_wire_typed, body.data(),
                                  static_cast<std::uint32_t>(body.size()), in.node.id());
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
  const auto bad = [&] { warn_bad("frame", "malformed link/monitor frame from " + std::string(in.name())); };
  if (op == Op::down) {  // remote target went away (a pid, or a name nothing was registered under)
    auto f = frames::Down::decode(r);
    if (!f) return bad();
    const Pid target = f->target.is_pid() ? f->target.as_pid() : Pid{in.node, in.creation, 0, 0};
    untrack_monitor(f->ref);
    // a DOWN that crossed the watcher's demonitor is dropped, as Erlang does (otherwise every
    // call's late DOWN would pile up in the caller's mailbox)
    runtime::deliver_down(f->watcher, f->ref, detail::make_node(Down{f->ref, target, std::move(f->reason)}));
    return;
  }
  if (op == Op::monitor || op == Op::demonitor) {
    auto f = frames::Monitor::decode(op, r);
    if (!f) return bad();
    // the local target: a pid, or (Erlang's monitor(process, {Name, Node})) whatever is
    // registered under a name
    std::optional<Pid> target = f->target.is_pid() ? std::optional<Pid>(f->target.as_pid()) : whereis(f->target.as_atom());
    if (f->demonitor) {
      if (target) runtime::remove_watcher(*target, f->ref);
      return;
    }
    // remote watcher monitors local target (the DOWN names it as the MONITOR did)
    if (!target || !runtime::add_remote_watcher(*target, f->ref, f->watcher)) {
      send_control(f->watcher.node, frames::Down{f->watcher, f->target, f->ref, Term(atoms::noproc())}.encode());
    }
    return;
  }
  if (op == Op::exit) {  // remote from's exit signal to local to
    auto f = frames::Exit::decode(r);
    if (!f) return bad();
    if (f->from_link) untrack_link(f->to, f->from);
    runtime::send_exit_signal(f->to, f->from, std::move(f->reason), f->from_link);
    return;
  }
  auto f = frames::Link::decode(op, r);  // LINK, UNLINK
  if (!f) return bad();
  if (f->unlink) {
    runtime::remove_remote_link(f->to, f->from);
    untrack_link(f->to, f->from);
  } else if (runtime::add_remote_link(f->to, f->from)) {  // remote from links to local to
    track_link(f->to, f->from);
  } else {
    send_control(f->from.node, frames::Exit{f->to, f->from, true, Term(atoms::noproc())}.encode());
  }
}

void NodeImpl::on_spawn_request(const PeerRef& in, Reader& r) {
  auto req = frames::SpawnRequest::decode(r);
  if (!req) {
    warn_bad("frame", "malformed spawn request from " + std::string(in.name()));
    return;
  }
  auto f = find_function(req->function);
  std::string error;
  Pid pid;
  if (!f) {
    error = "no function " + std::string(req->function) + " on " + std::string(name_.name());
  } else {
    try {
      Proc p = (*f)(std::move(req->args));
      const Pid caller{in.node, in.creation, req->from_id, req->from_serial};
      const bool link = req->flags & kSpawnLink, mon = req->flags & kSpawnMonitor;
      pid = detail::spawn_frame(p.release(), {.group_leader = req->group_leader}, {}, nullptr,
                                link ? caller : Pid{}, mon ? caller : Pid{}, mon ? req->ref : Ref{});
      if (link) track_link(pid, caller);
    } catch (const std::exception& e) {
      error = std::string("cannot start ") + std::string(req->function) + ": " + e.what();
    }
  }
  frames::SpawnReply reply{req->request, error.empty(), pid.id, pid.serial, {}};
  if (!error.empty()) {
    log_limited(spdlog::level::warn, "spawn-request", "spawn request from " + std::string(in.name()) + " failed: " + error);
    if (error.size() > 255) error = error.substr(0, 252) + "...";  // a text, shortened on purpose
    reply.error = error;
  }
  send_control(in.node, reply.encode());
}

void NodeImpl::on_spawn_reply(const PeerRef& from, Reader& r) {
  auto reply = frames::SpawnReply::decode(r);
  auto it = reply ? spawns_.find(reply->request) : spawns_.end();
  if (it == spawns_.end() || !(it->second.node == from.node)) {
    warn_bad("frame", "unexpected or malformed spawn reply from " + std::string(from.name()));
    return;
  }
  const PendingSpawn ps = std::move(it->second);
  spawns_.erase(it);
  if (reply->ok) {
    finish_spawn(reply->request, ps, Pid{ps.node, from.creation, reply->id, reply->serial}, {});
  } else {
    finish_spawn(reply->request, ps, {}, std::string(reply->error));
  }
}

void NodeImpl::finish_spawn(std::uint64_t req, const PendingSpawn& ps, const Pid& pid, const std::string& error) {
  if (error.empty()) {
    // before any later frame from that node (its exit, say) is handled
    if (ps.flags & kSpawnLink) {
      if (runtime::add_remote_link(ps.caller, pid)) {
        track_link(ps.caller, pid);
      } else {  // the caller is gone: the new process gets its exit
        send_control(ps.node, frames::Exit{ps.caller, pid, true, Term(atoms::noproc())}.encode());
      }
    }
    if (ps.flags & kSpawnMonitor) {
      // the caller registered its side (target: the node only) before sending the request
      untrack_monitor(ps.ref);
      if (runtime::remove_monitoring(ps.caller, ps.ref) && runtime::add_monitoring(ps.caller, ps.ref, pid)) {
        track_monitor(ps.caller, pid, ps.ref);
      } else if (!is_process_alive(ps.caller)) {
        send_control(ps.node, frames::Monitor{true, ps.caller, Term(pid), ps.ref}.encode());
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

// ------------------------------------------------------------------------------ JSON peers

namespace nodus::dist {
namespace {
// One record (no length prefix) as a JSON peer reads it, into `out`; false if it is already
// so (or carries nothing to rewrite).
bool json_record(std::string_view rec, std::string& out) {
  Reader r(rec);
  const std::uint8_t ver = r.u8();
  const auto op = static_cast<Op>(r.u8());
  if (!r.ok() || ver != kWireVersion) return false;
  const auto frame_from = [&](std::string f) {
    if (f.empty()) return false;
    out = std::move(f);
    return true;
  };
  switch (op) {
    case Op::send_pid:
    case Op::send_name: {
      if (op == Op::send_pid) {
        (void)r.bytes(12);
      } else {
        (void)r.str8();
      }
      if (!r.ok()) return false;
      const std::size_t head_end = rec.size() - r.remaining();
      if (static_cast<Payload>(r.u8()) != Payload::term) return false;
      auto t = decode_term(r);
      if (!t || !r.at_end()) return false;
      out.assign(rec.substr(0, head_end));
      Writer w(out);
      w.u8(static_cast<std::uint8_t>(Payload::json));
      w.bytes(term_to_json(*t));
      return true;
    }
    case Op::link:
    case Op::unlink:
      if (auto f = frames::Link::decode(op, r)) return frame_from(f->encode(true));
      return false;
    case Op::exit:
      if (auto f = frames::Exit::decode(r)) return frame_from(f->encode(true));
      return false;
    case Op::monitor:
    case Op::demonitor:
      if (auto f = frames::Monitor::decode(op, r)) return frame_from(f->encode(true));
      return false;
    case Op::down:
      if (auto f = frames::Down::decode(r)) return frame_from(f->encode(true));
      return false;
    default: return false;
  }
}

void put_record(std::string& batch, std::string_view rec) {
  const auto len = static_cast<std::uint32_t>(rec.size());
  for (int i = 0; i < 4; ++i) batch.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  batch.append(rec);
}
}  // namespace

bool to_json_record(std::string& record) {
  std::string out;
  if (!json_record(record, out)) return false;
  record.swap(out);
  return true;
}

bool to_json_records(std::string& batch) {
  std::string out;
  bool changed = false;
  std::size_t pos = 0;
  std::string one;
  while (pos + 4 <= batch.size()) {
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<std::uint32_t>(static_cast<unsigned char>(batch[pos + i])) << (8 * i);
    if (pos + 4 + len > batch.size()) break;  // (cannot happen: batches hold whole records)
    const std::string_view rec(batch.data() + pos + 4, len);
    if (json_record(rec, one)) {
      if (!changed) out.assign(batch, 0, pos);  // everything before it is as it was
      changed = true;
      put_record(out, one);
    } else if (changed) {
      put_record(out, rec);
    }
    pos += 4 + len;
  }
  if (!changed) return false;
  out.append(batch, pos, std::string::npos);
  batch.swap(out);
  return true;
}

}  // namespace nodus::dist
