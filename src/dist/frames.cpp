// Typed frames (frames.hpp).
#include "frames.hpp"

namespace nodus::dist::frames {

namespace {

Writer head(std::string& f, Op op) {
  Writer w(f);
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(op));
  return w;
}
std::string done(std::string& f, const Writer& w) { return w.ok() ? std::move(f) : std::string(); }

std::optional<Pid> read_pid(Reader& r) {
  auto t = decode_term(r);
  if (!t || !t->is_pid()) return std::nullopt;
  return t->as_pid();
}
std::optional<Ref> read_ref(Reader& r) {
  auto t = decode_term(r);
  if (!t || !t->is_ref()) return std::nullopt;
  return t->as_ref();
}
std::optional<Term> read_pid_or_name(Reader& r) {
  auto t = decode_term(r);
  if (!t || !(t->is_pid() || t->is_atom())) return std::nullopt;
  return t;
}
template <class T>
std::optional<T> whole(Reader& r, T v) {
  if (!r.ok() || !r.at_end()) return std::nullopt;
  return v;
}

}  // namespace

void SendPid::write(Writer& w) const {
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::send_pid));
  w.u32(creation);
  w.u32(id);
  w.u32(serial);
}
std::optional<SendPid> SendPid::read(Reader& r) {
  SendPid h;
  h.creation = r.u32();
  h.id = r.u32();
  h.serial = r.u32();
  if (!r.ok()) return std::nullopt;
  return h;
}

void SendName::write(Writer& w) const {
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(Op::send_name));
  w.str8(name);
}
std::optional<SendName> SendName::read(Reader& r) {
  SendName h;
  h.name = r.str8();
  if (!r.ok() || h.name.empty()) return std::nullopt;
  return h;
}

std::string SpawnRequest::encode() const {
  std::string f;
  Writer w = head(f, Op::spawn_request);
  w.u64(request);
  w.u32(from_id);
  w.u32(from_serial);
  w.u8(flags & (kLinkFlag | kMonitorFlag));
  encode_term(w, Term(group_leader));
  w.str8(function);
  encode_term(w, args);
  if (flags & kMonitorFlag) encode_term(w, Term(ref));
  return done(f, w);
}
std::optional<SpawnRequest> SpawnRequest::decode(Reader& r) {
  SpawnRequest s;
  s.request = r.u64();
  s.from_id = r.u32();
  s.from_serial = r.u32();
  s.flags = r.u8();
  auto gl = read_pid(r);
  s.function = r.str8();
  auto args = decode_term(r);
  if (!gl || !args || s.function.empty()) return std::nullopt;
  s.group_leader = *gl;
  s.args = std::move(*args);
  if (s.flags & kMonitorFlag) {
    auto m = read_ref(r);
    if (!m) return std::nullopt;
    s.ref = *m;
  }
  return whole(r, std::move(s));
}

std::string SpawnReply::encode() const {
  std::string f;
  Writer w = head(f, Op::spawn_reply);
  w.u64(request);
  w.u8(ok ? 0 : 1);
  if (ok) {
    w.u32(id);
    w.u32(serial);
  } else {
    w.str8(error);
  }
  return done(f, w);
}
std::optional<SpawnReply> SpawnReply::decode(Reader& r) {
  SpawnReply s;
  s.request = r.u64();
  s.ok = r.u8() == 0;
  if (s.ok) {
    s.id = r.u32();
    s.serial = r.u32();
  } else {
    s.error = r.str8();
  }
  return whole(r, s);
}

std::string Link::encode(bool json) const {
  std::string f;
  Writer w = head(f, unlink ? Op::unlink : Op::link);
  put_term(w, Term(from), json);
  put_term(w, Term(to), json);
  return done(f, w);
}
std::optional<Link> Link::decode(Op op, Reader& r) {
  auto from = read_pid(r), to = read_pid(r);
  if (!from || !to) return std::nullopt;
  return whole(r, Link{op == Op::unlink, *from, *to});
}

std::string Exit::encode(bool json) const {
  std::string f;
  Writer w = head(f, Op::exit);
  put_term(w, Term(from), json);
  put_term(w, Term(to), json);
  w.u8(from_link ? 1 : 0);
  put_term(w, reason, json);
  return done(f, w);
}
std::optional<Exit> Exit::decode(Reader& r) {
  auto from = read_pid(r), to = read_pid(r);
  const std::uint8_t flag = r.u8();
  auto reason = decode_term(r);
  if (!from || !to || !reason || flag > 1) return std::nullopt;
  return whole(r, Exit{*from, *to, flag == 1, std::move(*reason)});
}

std::string Monitor::encode(bool json) const {
  std::string f;
  Writer w = head(f, demonitor ? Op::demonitor : Op::monitor);
  put_term(w, Term(watcher), json);
  put_term(w, target, json);
  put_term(w, Term(ref), json);
  return done(f, w);
}
std::optional<Monitor> Monitor::decode(Op op, Reader& r) {
  auto watcher = read_pid(r);
  auto target = read_pid_or_name(r);
  auto m = read_ref(r);
  if (!watcher || !target || !m) return std::nullopt;
  return whole(r, Monitor{op == Op::demonitor, *watcher, std::move(*target), *m});
}

std::string Down::encode(bool json) const {
  std::string f;
  Writer w = head(f, Op::down);
  put_term(w, Term(watcher), json);
  put_term(w, target, json);
  put_term(w, Term(ref), json);
  put_term(w, reason, json);
  return done(f, w);
}
std::optional<Down> Down::decode(Reader& r) {
  auto watcher = read_pid(r);
  auto target = read_pid_or_name(r);
  auto m = read_ref(r);
  auto reason = decode_term(r);
  if (!watcher || !target || !m || !reason) return std::nullopt;
  return whole(r, Down{*watcher, std::move(*target), *m, std::move(*reason)});
}

}  // namespace nodus::dist::frames
