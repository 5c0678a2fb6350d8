// Typed frames (src/dist/frames.hpp): each kind round-trips, and every truncation, trailing
// byte or wrong field kind is refused.
#include <catch2/catch.hpp>

#include <functional>

#include "dist/frames.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;
using namespace nodus::dist;

namespace {

// The body of an encoded frame (after version and op), checking the header.
std::string_view body(const std::string& frame, Op op) {
  REQUIRE(frame.size() >= 2);
  CHECK(static_cast<std::uint8_t>(frame[0]) == kWireVersion);
  CHECK(static_cast<Op>(frame[1]) == op);
  return std::string_view(frame).substr(2);
}

// Every proper prefix of `b` and `b` plus a byte are refused by `decode`.
void refuses_cut_and_extra(std::string_view b, const std::function<bool(std::string_view)>& decodes) {
  for (std::size_t n = 0; n < b.size(); ++n) {
    INFO("cut at " << n << " of " << b.size());
    CHECK_FALSE(decodes(b.substr(0, n)));
  }
  CHECK_FALSE(decodes(std::string(b) + "\x01"));
  CHECK(decodes(b));
}

}  // namespace

TEST_CASE("frames: each kind round-trips and refuses cut or padded bodies", "[frames]") {
  Runtime rt;
  const Pid a{atom("alex@localhost"), 3, 10, 2}, k{atom("kate@localhost"), 4, 11, 1};
  const Ref r = make_ref();

  SECTION("LINK and UNLINK") {
    for (bool unlink : {false, true}) {
      const Op op = unlink ? Op::unlink : Op::link;
      const std::string f = frames::Link{unlink, a, k}.encode();
      Reader rd(body(f, op));
      auto d = frames::Link::decode(op, rd);
      REQUIRE(d);
      CHECK(d->unlink == unlink);
      CHECK(d->from == a);
      CHECK(d->to == k);
      refuses_cut_and_extra(body(f, op), [&](std::string_view b) {
        Reader x(b);
        return frames::Link::decode(op, x).has_value();
      });
    }
  }
  SECTION("EXIT") {
    const std::string f = frames::Exit{a, k, true, tuple(atom("shutdown"), 1)}.encode();
    Reader rd(body(f, Op::exit));
    auto d = frames::Exit::decode(rd);
    REQUIRE(d);
    CHECK(d->from_link);
    CHECK(d->reason.to_string() == "{shutdown, 1}");
    refuses_cut_and_extra(body(f, Op::exit), [](std::string_view b) {
      Reader x(b);
      return frames::Exit::decode(x).has_value();
    });
  }
  SECTION("MONITOR and DEMONITOR, by pid and by name") {
    for (const Term& target : {Term(k), Term(atom("kv"))}) {
      const std::string f = frames::Monitor{false, a, target, r}.encode();
      Reader rd(body(f, Op::monitor));
      auto d = frames::Monitor::decode(Op::monitor, rd);
      REQUIRE(d);
      CHECK(d->target == target);
      CHECK(d->ref == r);
      refuses_cut_and_extra(body(f, Op::monitor), [](std::string_view b) {
        Reader x(b);
        return frames::Monitor::decode(Op::monitor, x).has_value();
      });
    }
  }
  SECTION("DOWN") {
    const std::string f = frames::Down{a, Term(atom("kv")), r, Term(atom("noproc"))}.encode();
    Reader rd(body(f, Op::down));
    auto d = frames::Down::decode(rd);
    REQUIRE(d);
    CHECK(d->reason.is_atom("noproc"));
    refuses_cut_and_extra(body(f, Op::down), [](std::string_view b) {
      Reader x(b);
      return frames::Down::decode(x).has_value();
    });
  }
  SECTION("SPAWN_REQUEST, with and without a monitor") {
    for (std::uint8_t flags : {std::uint8_t{0}, std::uint8_t{frames::kLinkFlag | frames::kMonitorFlag}}) {
      const std::string f =
          frames::SpawnRequest{7, 10, 2, flags, a, "Kate.say_name", Term::list({Term(1)}), r}.encode();
      Reader rd(body(f, Op::spawn_request));
      auto d = frames::SpawnRequest::decode(rd);
      REQUIRE(d);
      CHECK(d->request == 7);
      CHECK(d->function == "Kate.say_name");
      CHECK(d->group_leader == a);
      if (flags & frames::kMonitorFlag) CHECK(d->ref == r);
      refuses_cut_and_extra(body(f, Op::spawn_request), [](std::string_view b) {
        Reader x(b);
        return frames::SpawnRequest::decode(x).has_value();
      });
    }
  }
  SECTION("SPAWN_REPLY, ok and failed") {
    for (bool ok : {true, false}) {
      const std::string f = frames::SpawnReply{9, ok, 12, 3, ok ? "" : "no function X on kate@localhost"}.encode();
      Reader rd(body(f, Op::spawn_reply));
      auto d = frames::SpawnReply::decode(rd);
      REQUIRE(d);
      CHECK(d->ok == ok);
      if (ok) CHECK(d->id == 12);
      if (!ok) CHECK(d->error == "no function X on kate@localhost");
      refuses_cut_and_extra(body(f, Op::spawn_reply), [](std::string_view b) {
        Reader x(b);
        return frames::SpawnReply::decode(x).has_value();
      });
    }
  }
}

TEST_CASE("frames: a field of the wrong kind is refused; a name that does not fit is never sent cut", "[frames]") {
  Runtime rt;
  const Pid k{atom("kate@localhost"), 4, 11, 1};
  // LINK whose `from` is an atom, MONITOR whose ref is a pid, EXIT with flag 2
  std::string bad_link;
  {
    Writer w(bad_link);
    encode_term(w, Term(atom("x")));
    encode_term(w, Term(k));
  }
  Reader r1(bad_link);
  CHECK_FALSE(frames::Link::decode(Op::link, r1));
  std::string bad_monitor;
  {
    Writer w(bad_monitor);
    encode_term(w, Term(k));
    encode_term(w, Term(k));
    encode_term(w, Term(k));
  }
  Reader r2(bad_monitor);
  CHECK_FALSE(frames::Monitor::decode(Op::monitor, r2));
  std::string bad_exit;
  {
    Writer w(bad_exit);
    encode_term(w, Term(k));
    encode_term(w, Term(k));
    w.u8(2);
    encode_term(w, Term(atom("boom")));
  }
  Reader r3(bad_exit);
  CHECK_FALSE(frames::Exit::decode(r3));
  // a function name of 256 bytes: no frame at all
  CHECK(frames::SpawnRequest{1, 1, 1, 0, k, std::string(256, 'f'), Term(), {}}.encode().empty());
  // SEND_NAME with an empty name is refused
  std::string empty_name("\x00", 1);
  Reader r4(empty_name);
  CHECK_FALSE(frames::SendName::read(r4));
}
