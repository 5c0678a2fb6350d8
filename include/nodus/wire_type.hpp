// Typed messages between nodes: a C++ type serialized with cereal under a stable wire name.
//
//   struct Greeting { std::string text; int n = 0;
//                     template <class A> void serialize(A& a) { a(text, n); } };
//   nodus::register_type<Greeting>("chat.Greeting");   // on every node, before sending
//   nodus::send(pid_on_other_node, Greeting{"hi", 1});  // receive<Greeting>() over there
//
// Local sends still move the value (no serialization). A type sent to another node without a
// wire name is dropped with a log line on the sender; a wire name the receiver does not know,
// or bytes that do not decode, are dropped with a log line on the receiver. The type must be
// default-constructible and have a cereal serialize (or save/load) function.
#pragma once

#include <bit>
#include <cereal/cereal.hpp>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "nodus/atom.hpp"
#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus::wire {

/// cereal's portable binary layout (little-endian; sizes and counts as u64) without its
/// leading endianness byte. docs/PROTOCOL.md describes it for foreign peers.
class OutputArchive : public cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit OutputArchive(std::string& out)
      : cereal::OutputArchive<OutputArchive, cereal::AllowEmptyClassElision>(this), out_(out) {}

  template <std::size_t N>
  void save_bytes(const void* p, std::size_t size) {
    if (size == 0) return;  // an empty container may hand over a null pointer
    const auto* b = static_cast<const char*>(p);
    if constexpr (std::endian::native == std::endian::little || N == 1) {
      out_.append(b, size);
    } else {
      for (std::size_t i = 0; i < size; i += N) {
        for (std::size_t j = N; j-- > 0;) out_.push_back(b[i + j]);
      }
    }
  }

 private:
  std::string& out_;
};

/// The reading side, for untrusted bytes: every read is bounds-checked, and a size or element
/// count larger than the bytes left is refused before the container is allocated (so a
/// message never makes the receiver allocate much more than its own length).
class InputArchive : public cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit InputArchive(std::string_view in)
      : cereal::InputArchive<InputArchive, cereal::AllowEmptyClassElision>(this), in_(in) {}

  template <std::size_t N>
  void load_bytes(void* p, std::size_t size) {
    if (size > remaining()) throw cereal::Exception("truncated typed message");
    if (size == 0) return;  // an empty container may hand over a null pointer
    auto* b = static_cast<char*>(p);
    if constexpr (std::endian::native == std::endian::little || N == 1) {
      std::memcpy(b, in_.data() + pos_, size);
    } else {
      for (std::size_t i = 0; i < size; i += N) {
        for (std::size_t j = 0; j < N; ++j) b[i + j] = in_[pos_ + i + N - 1 - j];
      }
    }
    pos_ += size;
  }
  std::size_t remaining() const { return in_.size() - pos_; }
  /// The bytes not read yet, and consuming `n` of them (for nodus's own types).
  std::string_view rest() const { return in_.substr(pos_); }
  void skip(std::size_t n) { pos_ += n <= remaining() ? n : remaining(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const T& t) {
  static_assert(!std::is_floating_point_v<T> || std::numeric_limits<T>::is_iec559);
  ar.template save_bytes<sizeof(T)>(std::addressof(t), sizeof(T));
}
template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, T& t) {
  ar.template load_bytes<sizeof(T)>(std::addressof(t), sizeof(T));
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(InputArchive, OutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::SizeTag<T>& t) {
  ar(static_cast<std::uint64_t>(t.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::SizeTag<T>& t) {
  std::uint64_t n = 0;
  ar(n);
  // every element takes at least one byte on the wire
  if (n > ar.remaining()) throw cereal::Exception("size larger than the rest of the message");
  t.size = static_cast<std::remove_reference_t<T>>(n);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(OutputArchive& ar, const cereal::BinaryData<T>& bd) {
  using E = std::remove_cv_t<std::remove_pointer_t<T>>;
  ar.template save_bytes<sizeof(E)>(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(InputArchive& ar, cereal::BinaryData<T>& bd) {
  using E = std::remove_cv_t<std::remove_pointer_t<T>>;
  ar.template load_bytes<sizeof(E)>(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace nodus::wire

namespace nodus {
// nodus's own values inside typed messages, in the Term encoding (so pids keep naming their
// node, as in any message): a struct can hold a Pid to reply to, an Atom, a Ref or a Term.
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Term& t);
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Term& t);
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Pid& p);
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Pid& p);
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Ref& r);
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Ref& r);
void CEREAL_SAVE_FUNCTION_NAME(wire::OutputArchive& ar, const Atom& a);
void CEREAL_LOAD_FUNCTION_NAME(wire::InputArchive& ar, Atom& a);
}  // namespace nodus

CEREAL_REGISTER_ARCHIVE(nodus::wire::OutputArchive)
CEREAL_REGISTER_ARCHIVE(nodus::wire::InputArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(nodus::wire::InputArchive, nodus::wire::OutputArchive)

namespace nodus {
}  // namespace nodus
#include "nodus/detail/wire_type.hpp"  // the hooks this header's templates use
namespace nodus {

/// Gives `T` a stable wire name so it can be sent to other nodes (which must register it
/// under the same name). Call it at start-up, before sending; registering the same type
/// under the same name again is harmless.
template <class T>
void register_type(std::string_view wire_name) {
  static_assert(!std::is_same_v<T, Term>, "Terms travel without registration");
  static_assert(std::is_default_constructible_v<T>, "a wire type must be default-constructible");
  detail::register_wire_type(wire_name, {&detail::type_info_v<T>, &detail::wire_encode<T>, &detail::wire_decode<T>});
}

}  // namespace nodus

NODUS_API_END
