// Term codec.
#include "codec.hpp"

#include "json.hpp"

#include <utility>
#include <vector>

namespace nodus::dist {
namespace {

enum Tag : std::uint8_t {
  kSmallInt = 0x01,  // i8
  kInt = 0x02,       // i64
  kFloat = 0x03,     // f64
  kAtom = 0x04,      // str8
  kBinary = 0x05,    // str32
  kTuple = 0x06,     // u32 arity, elements
  kList = 0x07,      // u32 length, elements
  kMap = 0x08,       // u32 pairs, key value ...
  kPid = 0x09,       // str8 node, u32 creation, u32 id, u32 serial
  kRef = 0x0A,       // str8 node, u32 creation, u64 id
  kJson = 0x0B,      // str32 JSON text (docs/PROTOCOL.md 5b): for foreign tools; written only to JSON peers
};

void encode_seq(Writer& w, std::uint8_t tag, const std::vector<Term>& v) {
  w.u8(tag);
  w.u32(static_cast<std::uint32_t>(v.size()));
  for (const auto& e : v) encode_term(w, e);
}

std::optional<Term> decode(Reader& r, int depth);

// A count of elements each needing at least one byte cannot exceed what is left.
bool plausible(Reader& r, std::uint64_t count, std::uint64_t min_bytes_each) {
  if (!r.ok() || count * min_bytes_each > r.remaining()) {
    r.fail();
    return false;
  }
  return true;
}

std::optional<std::vector<Term>> decode_seq(Reader& r, int depth) {
  const std::uint32_t n = r.u32();
  if (!plausible(r, n, 1)) return std::nullopt;
  std::vector<Term> v;
  v.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto e = decode(r, depth + 1);
    if (!e) return std::nullopt;
    v.push_back(std::move(*e));
  }
  return v;
}

std::optional<Term> decode(Reader& r, int depth) {
  if (depth > kMaxTermDepth) {
    r.fail();
    return std::nullopt;
  }
  switch (r.u8()) {
    case kSmallInt: {
      auto v = static_cast<std::int8_t>(r.u8());
      if (!r.ok()) return std::nullopt;
      return Term(static_cast<std::int64_t>(v));
    }
    case kInt: {
      auto v = static_cast<std::int64_t>(r.u64());
      if (!r.ok()) return std::nullopt;
      return Term(v);
    }
    case kFloat: {
      const std::uint64_t bits = r.u64();
      if (!r.ok()) return std::nullopt;
      double d;
      std::memcpy(&d, &bits, 8);
      return Term(d);
    }
    case kAtom: {
      auto s = r.str8();
      if (!r.ok()) return std::nullopt;
      auto a = detail::network_atom(s);  // (past the network atom budget: refused)
      if (!a) {
        r.fail();
        return std::nullopt;
      }
      return Term(*a);
    }
    case kJson: {
      auto text = r.str32();
      if (!r.ok()) return std::nullopt;
      auto t = json_to_term(text, nullptr);
      if (!t) r.fail();
      return t;
    }
    case kBinary: {
      auto s = r.str32();
      if (!r.ok()) return std::nullopt;
      return Term(std::string(s));
    }
    case kTuple: {
      auto v = decode_seq(r, depth);
      if (!v) return std::nullopt;
      return Term::tuple(std::move(*v));
    }
    case kList: {
      auto v = decode_seq(r, depth);
      if (!v) return std::nullopt;
      return Term::list(std::move(*v));
    }
    case kMap: {
      const std::uint32_t n = r.u32();
      if (!plausible(r, n, 2)) return std::nullopt;
      std::vector<std::pair<Term, Term>> kv;
      kv.reserve(n);
      for (std::uint32_t i = 0; i < n; ++i) {
        auto k = decode(r, depth + 1);
        if (!k) return std::nullopt;
        auto v = decode(r, depth + 1);
        if (!v) return std::nullopt;
        kv.emplace_back(std::move(*k), std::move(*v));
      }
      return Term::map(std::move(kv));
    }
    case kPid: {
      auto node = r.str8();
      const auto creation = r.u32(), id = r.u32(), serial = r.u32();
      if (!r.ok() || node.empty()) return std::nullopt;
      auto p = pid_from_wire(node, creation, id, serial);
      if (!p) r.fail();
      return p ? std::optional<Term>(Term(*p)) : std::nullopt;
    }
    case kRef: {
      auto node = r.str8();
      const auto creation = r.u32();
      const auto id = r.u64();
      if (!r.ok() || node.empty()) return std::nullopt;
      auto ref = ref_from_wire(node, creation, id);
      if (!ref) r.fail();
      return ref ? std::optional<Term>(Term(*ref)) : std::nullopt;
    }
    default: r.fail(); return std::nullopt;
  }
}

}  // namespace

void encode_json_term(Writer& w, const Term& t) {
  w.u8(kJson);
  w.str32(term_to_json(t));
}

void encode_term(Writer& w, const Term& t) {
  switch (t.kind()) {
    case Term::Kind::integer: {
      const auto v = t.as_int();
      if (v >= -128 && v <= 127) {
        w.u8(kSmallInt);
        w.u8(static_cast<std::uint8_t>(static_cast<std::int8_t>(v)));
      } else {
        w.u8(kInt);
        w.u64(static_cast<std::uint64_t>(v));
      }
      break;
    }
    case Term::Kind::floating: {
      const double d = t.as_double();
      std::uint64_t bits;
      std::memcpy(&bits, &d, 8);
      w.u8(kFloat);
      w.u64(bits);
      break;
    }
    case Term::Kind::atom:
      w.u8(kAtom);
      w.str8(t.as_atom().name());
      break;
    case Term::Kind::binary:
      w.u8(kBinary);
      w.str32(t.as_binary());
      break;
    case Term::Kind::tuple: encode_seq(w, kTuple, t.elems()); break;
    case Term::Kind::list: encode_seq(w, kList, t.elems()); break;
    case Term::Kind::map:
      w.u8(kMap);
      w.u32(static_cast<std::uint32_t>(t.entries().size()));
      for (const auto& [k, v] : t.entries()) {
        encode_term(w, k);
        encode_term(w, v);
      }
      break;
    case Term::Kind::pid: {
      const Pid& p = t.as_pid();
      const WireNode n = wire_node(p);
      w.u8(kPid);
      w.str8(n.name);
      w.u32(n.creation);
      w.u32(p.id);
      w.u32(p.serial);
      break;
    }
    case Term::Kind::ref: {
      const Ref& r = t.as_ref();
      const WireNode n = wire_node(r);
      w.u8(kRef);
      w.str8(n.name);
      w.u32(n.creation);
      w.u64(r.id);
      break;
    }
  }
}

std::optional<Term> decode_term(Reader& r) { return decode(r, 0); }

WireNode wire_node(const Pid& p) {
  if (!p.is_local()) return {p.node.name(), p.creation};
  const auto me = detail::local_node();
  return {me.name.name(), me.creation};
}

WireNode wire_node(const Ref& r) {
  if (r.node.id() != 0) return {r.node.name(), r.creation};
  const auto me = detail::local_node();
  return {me.name.name(), me.creation};
}

std::optional<Pid> pid_from_wire(std::string_view node, std::uint32_t creation, std::uint32_t id, std::uint32_t serial) {
  const auto me = detail::local_node();
  if (node == me.name.name() && creation == me.creation) return Pid{Atom(), 0, id, serial};  // one of ours
  auto n = detail::network_atom(node);
  if (!n) return std::nullopt;
  return Pid{*n, creation, id, serial};
}

std::optional<Ref> ref_from_wire(std::string_view node, std::uint32_t creation, std::uint64_t id) {
  const auto me = detail::local_node();
  if (node == me.name.name() && creation == me.creation) return Ref{Atom(), 0, id};
  auto n = detail::network_atom(node);
  if (!n) return std::nullopt;
  return Ref{*n, creation, id};
}

}  // namespace nodus::dist
