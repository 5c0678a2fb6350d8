// Byte-level encoding for the wire: little-endian writer, bounds-checked reader, Term codec.
// Every read of network bytes goes through Reader: out-of-range reads set a failure flag and
// return zeros; decoders check `ok()` before trusting anything.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "nodus/pid.hpp"
#include "nodus/term.hpp"

namespace nodus::dist {

/// Integers are little-endian on the wire whatever the host's byte order (docs/PROTOCOL.md).
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void bytes(std::string_view b) { out_.append(b); }
  /// A string of at most 255 bytes (names, atoms): length byte + bytes. A longer one is never
  /// cut: nothing is written and ok() turns false, and the sender drops the frame.
  void str8(std::string_view s) {
    if (s.size() > 255) {
      ok_ = false;
      return;
    }
    u8(static_cast<std::uint8_t>(s.size()));
    out_.append(s);
  }
  void str32(std::string_view s) {
    if (s.size() > 0xffffffffu) {
      ok_ = false;
      return;
    }
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  /// False once a field did not fit: the frame is not to be sent.
  bool ok() const { return ok_; }

  std::string& out() { return out_; }

 private:
  void le(std::uint64_t v, int n) {
    char b[8];
    for (int i = 0; i < n; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(b, static_cast<std::size_t>(n));
  }
  std::string& out_;
  bool ok_ = true;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  std::size_t remaining() const { return in_.size() - pos_; }
  bool at_end() const { return pos_ == in_.size(); }
  void fail() { ok_ = false; }

  std::uint8_t u8() { return take<std::uint8_t>(); }
  std::uint16_t u16() { return take<std::uint16_t>(); }
  std::uint32_t u32() { return take<std::uint32_t>(); }
  std::uint64_t u64() { return take<std::uint64_t>(); }
  std::string_view bytes(std::size_t n) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    auto v = in_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string_view str8() { return bytes(u8()); }
  std::string_view str32() { return bytes(u32()); }
  std::string_view rest() { return bytes(remaining()); }

 private:
  template <class T>
  T take() {
    if (!ok_ || sizeof(T) > remaining()) {
      ok_ = false;
      return T{};
    }
    std::uint64_t v = 0;  // little-endian, whatever the host's byte order
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += sizeof(T);
    return static_cast<T>(v);
  }
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

/// Term encoding (docs/PROTOCOL.md, "Term"). Pids and refs carry their node's name.
void encode_term(Writer& w, const Term& t);
/// `t` as a JSON Term (tag 0x0B, str32 JSON text): how a Term field goes to a JSON peer.
void encode_json_term(Writer& w, const Term& t);
/// encode_term, or encode_json_term with `json`.
inline void put_term(Writer& w, const Term& t, bool json) {
  if (json) {
    encode_json_term(w, t);
  } else {
    encode_term(w, t);
  }
}
/// Decodes one term; nullopt on malformed input (truncated, unknown tag, too deep, counts that
/// cannot fit in the remaining bytes). Never allocates more than the input can justify.
std::optional<Term> decode_term(Reader& r);

/// How a pid or ref names its node on the wire: a local one (no node of its own) carries this
/// node's name and creation. Shared by the Term and JSON codecs.
struct WireNode {
  std::string_view name;
  std::uint32_t creation;
};
WireNode wire_node(const Pid& p);
WireNode wire_node(const Ref& r);
/// The pid / ref a wire identity stands for: local again when it names this node's name and
/// creation, so pids made here before the node got its name keep working.
/// nullopt if `node` is a new atom past the network atom budget.
std::optional<Pid> pid_from_wire(std::string_view node, std::uint32_t creation, std::uint32_t id, std::uint32_t serial);
std::optional<Ref> ref_from_wire(std::string_view node, std::uint32_t creation, std::uint64_t id);

/// Limits applied to untrusted input.
inline constexpr int kMaxTermDepth = 100;

}  // namespace nodus::dist
