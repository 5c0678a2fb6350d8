// The implementation hooks of nodus/wire_type.hpp (its namespace detail): what its templates and
// inline functions call into the library. Included by nodus/wire_type.hpp at the point they are
// needed; not an interface of its own: include nodus/wire_type.hpp instead.
#pragma once

#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

namespace detail {

/// How one registered type crosses the wire (see register_type).
struct WireType {
  const TypeInfo* type;
  /// Appends the value of `n` (a TypedNode of the type) to `out`.
  void (*encode)(std::string& out, const MsgNode* n);
  /// A new node holding the decoded value; throws on malformed bytes.
  MsgNode* (*decode)(std::string_view bytes);
};
/// Registers `t` under `name`; std::invalid_argument if the name (1-255 bytes) is taken by
/// another type or the type already has another name.
void register_wire_type(std::string_view name, const WireType& t);

template <class T>
void wire_encode(std::string& out, const MsgNode* n) {
  wire::OutputArchive ar(out);
  ar(static_cast<const TypedNode<T>*>(n)->value);
}
template <class T>
MsgNode* wire_decode(std::string_view bytes) {
  wire::InputArchive ar(bytes);
  T value{};
  ar(value);
  if (ar.remaining() != 0) throw cereal::Exception("bytes left after the value");
  return make_node(std::move(value));
}

}  // namespace detail

}  // namespace nodus

NODUS_API_END
