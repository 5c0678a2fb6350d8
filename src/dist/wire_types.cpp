// The registry of typed messages (nodus/wire_type.hpp): wire name <-> C++ type.
#include "wire_types.hpp"

#include "codec.hpp"

#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <unordered_map>

namespace nodus {
namespace {
struct Registry {
  std::shared_mutex mu;
  std::map<std::string, dist::WireEntry, std::less<>> by_name;  // owns the entries
  std::unordered_map<const detail::TypeInfo*, const dist::WireEntry*> by_type;
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
    if (it->second->name == name) return;
    throw std::invalid_argument("type " + std::string(t.type->name) + " is already registered as '" +
                                it->second->name + "'");
  }
  if (r.by_name.find(name) != r.by_name.end()) {
    throw std::invalid_argument("wire name '" + std::string(name) + "' is already taken by another type");
  }
  auto [it, ok] = r.by_name.emplace(std::string(name), dist::WireEntry{std::string(name), t});
  r.by_type.emplace(t.type, &it->second);
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

const WireEntry* wire_type_of(const detail::TypeInfo* t) {
  Registry& r = registry();
  std::shared_lock lock(r.mu);
  auto it = r.by_type.find(t);
  return it == r.by_type.end() ? nullptr : it->second;
}

const WireEntry* wire_type_named(std::string_view name) {
  Registry& r = registry();
  std::shared_lock lock(r.mu);
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : &it->second;
}

}  // namespace dist
}  // namespace nodus
