// Term <-> JSON (json.hpp). Parsing goes through nlohmann::json's SAX interface, so no JSON
// document is built and the nesting depth is bounded before anything deep is allocated.
#include "json.hpp"

#include <nlohmann/json.hpp>
#include <sodium.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <vector>

#include "codec.hpp"
#include "nodus/pid.hpp"

namespace nodus::dist {
namespace {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

void put_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string base64(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

void put(std::string& out, const Term& t) {
  switch (t.kind()) {
    case Term::Kind::integer: out += std::to_string(t.as_int()); break;
    case Term::Kind::floating: {
      const double d = t.as_double();
      if (!std::isfinite(d)) {
        out += std::isnan(d) ? R"({"$float":"nan"})" : d > 0 ? R"({"$float":"inf"})" : R"({"$float":"-inf"})";
        break;
      }
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", d);
      out += buf;
      if (std::strpbrk(buf, ".eE") == nullptr) out += ".0";  // stays a float when read back
      break;
    }
    case Term::Kind::atom: {
      const auto name = t.as_atom().name();
      if (name == "true" || name == "false") {
        out += name;
      } else if (name == "nil") {
        out += "null";
      } else {
        out += R"({"$atom":)";
        put_string(out, name);
        out += '}';
      }
      break;
    }
    case Term::Kind::binary: {
      const std::string& b = t.as_binary();
      if (valid_utf8(b)) {
        put_string(out, b);
      } else {
        out += R"({"$bin":")" + base64(b) + "\"}";
      }
      break;
    }
    case Term::Kind::tuple:
    case Term::Kind::list: {
      const bool tuple = t.is_tuple();
      out += tuple ? R"({"$tuple":[)" : "[";
      bool first = true;
      for (const auto& e : t.elems()) {
        if (!first) out += ',';
        first = false;
        put(out, e);
      }
      out += tuple ? "]}" : "]";
      break;
    }
    case Term::Kind::map: {
      bool plain = true;
      for (const auto& [k, v] : t.entries()) {
        if (!k.is_binary() || !valid_utf8(k.as_binary()) || (!k.as_binary().empty() && k.as_binary()[0] == '$')) {
          plain = false;
          break;
        }
      }
      bool first = true;
      out += plain ? "{" : R"({"$map":[)";
      for (const auto& [k, v] : t.entries()) {
        if (!first) out += ',';
        first = false;
        if (plain) {
          put_string(out, k.as_binary());
          out += ':';
          put(out, v);
        } else {
          out += '[';
          put(out, k);
          out += ',';
          put(out, v);
          out += ']';
        }
      }
      out += plain ? "}" : "]}";
      break;
    }
    case Term::Kind::pid: {
      const Pid& p = t.as_pid();
      const WireNode n = wire_node(p);
      out += R"({"$pid":{"node":)";
      put_string(out, n.name);
      out += ",\"creation\":" + std::to_string(n.creation) + ",\"id\":" + std::to_string(p.id) +
             ",\"serial\":" + std::to_string(p.serial) + "}}";
      break;
    }
    case Term::Kind::ref: {
      const Ref& r = t.as_ref();
      const WireNode n = wire_node(r);
      out += R"({"$ref":{"node":)";
      put_string(out, n.name);
      out += ",\"creation\":" + std::to_string(n.creation) + ",\"id\":" + std::to_string(r.id) + "}}";
      break;
    }
  }
}

// Builds Terms from SAX events. Objects are collected as (key, value) pairs and turned into
// their Term when they end; `$` keys mark the non-JSON kinds.
class Builder {
 public:
  using json = nlohmann::json;
  std::string error;
  std::optional<Term> result;

  bool null() { return value(Term(Atom("nil"))); }
  bool boolean(bool b) { return value(Term(b)); }
  bool number_integer(json::number_integer_t v) { return value(Term(static_cast<std::int64_t>(v))); }
  bool number_unsigned(json::number_unsigned_t v) {
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return fail("integer out of range");
    return value(Term(static_cast<std::int64_t>(v)));
  }
  bool number_float(json::number_float_t v, const std::string&) { return value(Term(static_cast<double>(v))); }
  bool string(std::string& s) { return value(Term(std::move(s))); }
  bool binary(json::binary_t&) { return fail("binary values are not JSON"); }
  bool start_object(std::size_t) { return open(true); }
  bool key(std::string& k) {
    stack_.back().keys.push_back(std::move(k));
    return true;
  }
  bool end_object() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    auto t = object(f);
    if (!t) return false;
    return value(std::move(*t));
  }
  bool start_array(std::size_t) { return open(false); }
  bool end_array() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    return value(Term::list(std::move(f.items)));
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) {
    if (error.empty()) error = "malformed JSON at byte " + std::to_string(pos);
    return false;
  }

 private:
  struct Frame {
    bool object;
    std::vector<std::string> keys;
    std::vector<Term> items;
  };
  std::vector<Frame> stack_;

  bool fail(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }
  bool open(bool object) {
    if (stack_.size() >= static_cast<std::size_t>(kMaxTermDepth)) return fail("nested deeper than 100");
    stack_.push_back({object, {}, {}});
    return true;
  }
  bool value(Term t) {
    if (stack_.empty()) {
      result = std::move(t);
      return true;
    }
    stack_.back().items.push_back(std::move(t));
    return true;
  }
  static const Term* field(const Frame& f, std::string_view name) {
    for (std::size_t i = 0; i < f.keys.size(); ++i) {
      if (f.keys[i] == name) return &f.items[i];
    }
    return nullptr;
  }
  static std::optional<std::uint64_t> uint_field(const Term& obj, std::string_view name, std::uint64_t max) {
    const Term* v = obj.is_map() ? obj.find(Term(std::string(name))) : nullptr;
    if (v == nullptr || !v->is_integer() || v->as_int() < 0 || static_cast<std::uint64_t>(v->as_int()) > max) {
      return std::nullopt;
    }
    return static_cast<std::uint64_t>(v->as_int());
  }
  static std::optional<std::string> node_field(const Term& obj) {
    const Term* v = obj.is_map() ? obj.find(Term(std::string("node"))) : nullptr;
    if (v == nullptr || !v->is_binary()) return std::nullopt;
    const std::string& n = v->as_binary();
    if (n.empty() || n.size() > 255 || n.find('@') == std::string::npos) return std::nullopt;
    return n;
  }
  std::optional<Term> object(Frame& f) {
    bool reserved = false;
    for (const auto& k : f.keys) reserved = reserved || (!k.empty() && k[0] == '$');
    if (!reserved) {
      std::vector<std::pair<Term, Term>> kv;
      kv.reserve(f.keys.size());
      for (std::size_t i = 0; i < f.keys.size(); ++i) kv.emplace_back(Term(std::move(f.keys[i])), std::move(f.items[i]));
      return Term::map(std::move(kv));
    }
    if (f.keys.size() != 1) return bad("a \"$\" key must be the object's only key");
    const std::string& k = f.keys[0];
    Term& v = f.items[0];
    if (k == "$atom") {
      if (!v.is_binary() || v.as_binary().size() > 255) return bad("$atom needs a string of at most 255 bytes");
      auto a = detail::network_atom(v.as_binary());
      if (!a) return bad("too many new atoms from the network (the network atom budget)");
      return Term(*a);
    }
    if (k == "$tuple") {
      if (!v.is_list()) return bad("$tuple needs an array");
      return Term::tuple(std::move(v.elems()));
    }
    if (k == "$map") {
      if (!v.is_list()) return bad("$map needs an array of [key, value] pairs");
      std::vector<std::pair<Term, Term>> kv;
      for (auto& e : v.elems()) {
        if (!e.is_list() || e.size() != 2) return bad("$map needs an array of [key, value] pairs");
        kv.emplace_back(std::move(e.elems()[0]), std::move(e.elems()[1]));
      }
      return Term::map(std::move(kv));
    }
    if (k == "$bin") {
      if (!v.is_binary()) return bad("$bin needs a base64 string");
      auto bytes = unbase64(v.as_binary());
      if (!bytes) return bad("$bin needs a base64 string");
      return Term(std::move(*bytes));
    }
    if (k == "$float") {
      if (v.is_binary() && v.as_binary() == "inf") return Term(HUGE_VAL);
      if (v.is_binary() && v.as_binary() == "-inf") return Term(-HUGE_VAL);
      if (v.is_binary() && v.as_binary() == "nan") return Term(std::nan(""));
      return bad("$float needs \"inf\", \"-inf\" or \"nan\"");
    }
    if (k == "$pid") {
      auto node = node_field(v);
      auto creation = uint_field(v, "creation", UINT32_MAX);
      auto id = uint_field(v, "id", UINT32_MAX);
      auto serial = uint_field(v, "serial", UINT32_MAX);
      if (!node || !creation || !id || !serial) {
        return bad("$pid needs {\"node\": \"name@host\", \"creation\", \"id\", \"serial\": unsigned 32-bit}");
      }
      auto p = pid_from_wire(*node, static_cast<std::uint32_t>(*creation), static_cast<std::uint32_t>(*id),
                             static_cast<std::uint32_t>(*serial));
      if (!p) return bad("too many new atoms from the network (the network atom budget)");
      return Term(*p);
    }
    if (k == "$ref") {
      auto node = node_field(v);
      auto creation = uint_field(v, "creation", UINT32_MAX);
      auto id = uint_field(v, "id", static_cast<std::uint64_t>(INT64_MAX));
      if (!node || !creation || !id) return bad("$ref needs {\"node\": \"name@host\", \"creation\", \"id\"}");
      auto ref = ref_from_wire(*node, static_cast<std::uint32_t>(*creation), *id);
      if (!ref) return bad("too many new atoms from the network (the network atom budget)");
      return Term(*ref);
    }
    return bad("unknown reserved key " + k.substr(0, 32));
  }
  std::optional<Term> bad(std::string why) {
    fail(std::move(why));
    return std::nullopt;
  }
};

}  // namespace

std::string term_to_json(const Term& t) {
  std::string out;
  put(out, t);
  return out;
}

std::optional<Term> json_to_term(std::string_view json, std::string* error) {
  Builder b;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json.begin(), json.end(), &b, nlohmann::json::input_format_t::json, true);
  } catch (const std::exception& e) {
    ok = false;
    if (b.error.empty()) b.error = "malformed JSON";
  }
  if (!ok || !b.result) {
    if (error) *error = b.error.empty() ? "malformed JSON" : b.error;
    return std::nullopt;
  }
  return std::move(b.result);
}

}  // namespace nodus::dist
