// The registry of typed messages (nodus/wire_type.hpp): wire name <-> C++ type.
#include "wire_types.hpp"

#include "codec.hpp"

#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <unordered_map>

namespace nodus {
namespace {
struct Registry {
  std::shared_mutex mu;
  std::unordered_map<const detail::TypeInfo*, std::pair<std::string, detail::WireType>> by_type;
  std::unordered_map<std::string, detail::WireType> by_name;
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

void detail::register_wire_type(std::string_view name, const WireType& t) {
  if (name.empty() || name.size() > 255) throw std::invalid_argument("a wire name has 1 to 255 bytes");
  Registry& r = registry();
  std::unique_lock lock(r.mu);
  if (auto it = r.by_type.find(t.type); it != r.by_type.end()) {
    if (it->second.first == name) return;
    throw std::invalid_argument("type " + std::string(t.type->name) + " is already registered as '" +
                                it->second.first + "'");
  }
  if (r.by_name.count(std::string(name))) {
    throw std::invalid_argument("wire name '" + std::string(name) + "' is already taken by another type");
  }
  r.by_type.emplace(t.type, std::make_pair(std::string(name), t));
  r.by_name.emplace(std::string(name), t);
}

// Term, Pid, Ref and Atom inside typed messages: the Term encoding (codec.hpp).
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Term& t) {
  std::string bytes;
  dist::Writer w(bytes);
  dist::encode_term(w, t);
  ar.save_bytes<1>(bytes.data(), bytes.size());
}
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Term& t) {
  dist::Reader r(ar.rest());
  auto term = dist::decode_term(r);
  if (!term) throw cereal::Exception("malformed term in a typed message");
  ar.skip(ar.remaining() - r.remaining());
  t = std::move(*term);
}
namespace {
template <class T>
T load_as(wire::InputArchive& ar, bool (Term::*is)() const, const T& (Term::*as)() const, const char* what) {
  Term t;
  CEREAL_LOAD_FUNCTION_NAME(ar, t);
  if (!(t.*is)()) throw cereal::Exception(std::string("expected ") + what + " in a typed message");
  return (t.*as)();
}
}  // namespace
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Pid& p) { CEREAL_SAVE_FUNCTION_NAME(ar, Term(p)); }
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Pid& p) { p = load_as<Pid>(ar, &Term::is_pid, &Term::as_pid, "a pid"); }
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Ref& r) { CEREAL_SAVE_FUNCTION_NAME(ar, Term(r)); }
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Ref& r) { r = load_as<Ref>(ar, &Term::is_ref, &Term::as_ref, "a ref"); }
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Atom& a) { CEREAL_SAVE_FUNCTION_NAME(ar, Term(a)); }
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Atom& a) {
  Term t;
  CEREAL_LOAD_FUNCTION_NAME(ar, t);
  if (!t.is_atom()) throw cereal::Exception("expected an atom in a typed message");
  a = t.as_atom();
}

namespace dist {

std::optional<std::pair<std::string, detail::WireType>> wire_type_of(const detail::TypeInfo* t) {
  Registry& r = registry();
  std::shared_lock lock(r.mu);
  auto it = r.by_type.find(t);
  if (it == r.by_type.end()) return std::nullopt;
  return it->second;
}

std::optional<detail::WireType> wire_type_named(std::string_view name) {
  Registry& r = registry();
  std::shared_lock lock(r.mu);
  auto it = r.by_name.find(std::string(name));
  if (it == r.by_name.end()) return std::nullopt;
  return it->second;
}

}  // namespace dist
}  // namespace nodus
