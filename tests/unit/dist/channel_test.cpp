// The channel ownership protocol (src/dist/channel.hpp) against a fake connection that takes
// writes whole, half-takes them (the rest waits inside it) or refuses them.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "dist/channel.hpp"
#include "dist/codec.hpp"
#include "dist/frames.hpp"

using nodus::dist::Channel;
using nodus::dist::Connection;

namespace {

struct Fake final : Connection {
  enum Mode { all, part, none } mode = all;
  std::string wire;    // what reached the kernel, in order
  std::string inside;  // taken, waiting for the socket
  Put put(std::string_view m) override {
    if (mode == none) return Put::none;
    if (!inside.empty() || mode == part) {
      const std::size_t now = inside.empty() ? m.size() / 2 : 0;
      wire.append(m.substr(0, now));
      inside.append(m.substr(now));
      return Put::part;
    }
    wire.append(m);
    return Put::all;
  }
  bool flush() override {
    if (mode != all) return inside.empty();
    wire += inside;
    inside.clear();
    return true;
  }
  bool has_output() const override { return !inside.empty(); }
  std::size_t buffered() const override { return inside.size(); }
};

// A channel whose connection is up and in the senders' hands.
void bring_up(Channel& ch, Fake& f) {
  ch.attach(&f);
  REQUIRE(ch.drain());
  REQUIRE_FALSE(ch.io_owns);
  REQUIRE(ch.state == Channel::up);
}

bool submit(Channel& ch, std::string s, bool stage = false) {
  bool newly = false;
  return ch.submit(s, stage, &newly);
}

}  // namespace

TEST_CASE("channel: until the connection is up everything queues, then leaves in order", "[channel]") {
  Channel ch;
  Fake f;
  CHECK(ch.io_owns);
  CHECK(submit(ch, "a"));        // the first one wakes the I/O thread
  CHECK_FALSE(submit(ch, "b"));  // it is awake already
  CHECK(submit(ch, "c", true) == false);  // a worker's slice cannot stage while the I/O thread owns the output
  CHECK(ch.staged.empty());
  ch.attach(&f);
  CHECK(ch.drain());
  CHECK(f.wire == "abc");
  CHECK_FALSE(ch.io_owns);
  CHECK_FALSE(submit(ch, "d"));  // now straight onto the connection
  CHECK(f.wire == "abcd");
}

TEST_CASE("channel: what a worker staged goes before a later batch, even if the I/O thread took over between",
          "[channel]") {
  Channel ch;
  Fake f;
  bring_up(ch, f);
  bool newly = false;
  std::string a = "A";
  CHECK_FALSE(ch.submit(a, true, &newly));
  CHECK(newly);
  CHECK(ch.staged == "A");
  // the I/O thread's heartbeat found the socket full: it owns the output from now on
  ch.give_to_io();
  CHECK(ch.staged.empty());
  CHECK_FALSE(submit(ch, "B"));  // queued behind A (the I/O thread was woken for A)
  CHECK_FALSE(ch.flush_staged());
  CHECK(ch.drain());
  CHECK(f.wire == "AB");
}

TEST_CASE("channel: a half-taken batch hands the output to the I/O thread; a refused one waits, in order",
          "[channel]") {
  Channel ch;
  Fake f;
  bring_up(ch, f);
  f.mode = Fake::part;
  CHECK(submit(ch, "1234"));  // half taken: wake the I/O thread, which owns the output now
  CHECK(ch.io_owns);
  (void)submit(ch, "56");   // queued behind what waits inside the connection
  CHECK(ch.pending.size() == 1);
  CHECK_FALSE(ch.drain());  // the socket is still full
  f.mode = Fake::none;
  CHECK_FALSE(ch.drain());
  f.mode = Fake::all;
  CHECK(ch.drain());
  CHECK(f.wire == "123456");
  CHECK_FALSE(ch.io_owns);
  // refused (a high-water mark): kept, in order
  f.mode = Fake::none;
  CHECK(submit(ch, "7"));
  CHECK(ch.pending.size() == 1);
  CHECK_FALSE(submit(ch, "8"));
  f.mode = Fake::all;
  CHECK(ch.drain());
  CHECK(f.wire == "12345678");
}

TEST_CASE("channel: once down, the queue is dropped and counted, and no connection is left", "[channel]") {
  Channel ch;
  Fake f;
  bring_up(ch, f);
  f.mode = Fake::none;
  (void)submit(ch, "xyz");
  (void)submit(ch, "w", true);
  CHECK(ch.fail() == 4);
  CHECK(ch.conn == nullptr);
  CHECK(ch.state == Channel::down);
  CHECK(ch.pending.empty());
  CHECK_FALSE(ch.flush_staged());
}

TEST_CASE("channel: any mix of senders, stagers, flushes and socket states keeps the records in order",
          "[channel]") {
  std::mt19937 rng(GENERATE(1u, 2u, 3u, 4u, 5u));
  Channel ch;
  Fake f;
  std::string expected;
  int n = 0;
  bool attached = false;
  for (int step = 0; step < 5000; ++step) {
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {  // a sender or a worker's slice
        const std::string rec = "<" + std::to_string(++n) + ">";
        expected += rec;
        (void)submit(ch, rec, rng() % 2 == 0);
        break;
      }
      case 3: (void)ch.flush_staged(); break;  // a worker out of work
      case 4: f.mode = static_cast<Fake::Mode>(rng() % 3); break;  // the socket fills or drains
      case 5:
        if (!attached) {
          ch.attach(&f);
          attached = true;
        }
        break;
      case 6:
        if (attached && ch.io_owns) (void)ch.drain();  // the I/O thread
        break;
      case 7:
        if (!ch.io_owns && rng() % 4 == 0) ch.give_to_io();  // a heartbeat found the socket full
        break;
    }
    // the invariants of channel.hpp
    REQUIRE((ch.staged.empty() || !ch.io_owns));
    REQUIRE((ch.io_owns || (ch.pending.empty() && ch.conn != nullptr && ch.state == Channel::up)));
  }
  if (!attached) ch.attach(&f);
  f.mode = Fake::all;
  (void)ch.flush_staged();
  if (ch.io_owns) REQUIRE(ch.drain());
  (void)ch.flush_staged();
  REQUIRE(f.flush());
  CHECK(f.wire == expected);
}

TEST_CASE("channel: the send budget counts queued, staged and buffered bytes; busy until drained to low water",
          "[channel][budget]") {
  Channel ch;
  Fake f;
  ch.high = 1000;
  ch.low = 500;
  bring_up(ch, f);
  f.mode = Fake::part;
  CHECK(submit(ch, std::string(400, 'a')));  // half reaches the wire, half waits inside
  CHECK(ch.queued() == 200);
  CHECK_FALSE(ch.over_budget());
  f.mode = Fake::none;
  for (int i = 0; i < 4; ++i) (void)submit(ch, std::string(200, 'b'));
  CHECK(ch.queued() == 1000);
  CHECK_FALSE(ch.over_budget());  // at the mark, not past it
  (void)submit(ch, "c");
  CHECK(ch.over_budget());
  CHECK(ch.counters->busy_episodes.load() == 1);
  ch.release_if_drained();  // nothing left yet
  CHECK(ch.busy);
  f.mode = Fake::all;
  CHECK(ch.drain());  // everything leaves, in order
  CHECK_FALSE(ch.busy);
  CHECK(ch.queued() == 0);
  // a channel that goes down lets its senders go too
  f.mode = Fake::none;
  ch.io_owns = true;
  for (int i = 0; i < 6; ++i) (void)submit(ch, std::string(200, 'd'));
  CHECK(ch.over_budget());
  CHECK(ch.counters->busy_episodes.load() == 2);
  CHECK(ch.fail() == 1200);
  ch.release_if_drained();
  CHECK_FALSE(ch.busy);
  CHECK(f.wire == std::string(400, 'a') + std::string(800, 'b') + "c");
}

namespace {
// Splits what reached the fake wire into records: each as "F<id>:<offset>" for a fragment, or
// its bytes for any other record.
std::vector<std::string> records(const std::string& wire) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at + 4 <= wire.size();) {
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= std::uint32_t(static_cast<unsigned char>(wire[at + i])) << (8 * i);
    const std::string rec = wire.substr(at + 4, len);
    at += 4 + len;
    if (rec.size() >= 2 && static_cast<unsigned char>(rec[1]) == 0x40) {
      std::uint64_t id = 0, off = 0;
      for (int i = 0; i < 8; ++i) id |= std::uint64_t(static_cast<unsigned char>(rec[2 + i])) << (8 * i);
      for (int i = 0; i < 8; ++i) off |= std::uint64_t(static_cast<unsigned char>(rec[10 + i])) << (8 * i);
      out.push_back("F" + std::to_string(id) + ":" + std::to_string(off / nodus::dist::kFragmentBytes));
    } else {
      out.push_back(rec);
    }
  }
  return out;
}
std::string record(const std::string& body) {
  std::string r;
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>((body.size() >> (8 * i)) & 0xff));
  return r + body;
}
}  // namespace

TEST_CASE("channel: a large message goes in fragments between other records; its last waits for what came before it, its trailer follows it",
          "[channel][fragment]") {
  Channel ch;
  Fake f;
  bring_up(ch, f);
  f.mode = Fake::none;  // the socket is full for now: everything queues
  (void)submit(ch, record("a"));
  bool wake = false;
  const std::string big(3 * nodus::dist::kFragmentBytes + 10, 'B');  // 4 fragments
  const auto id = ch.add_bulk(big, &wake);
  std::string after = record("after-big");
  CHECK(ch.add_trailer(id, after));
  CHECK(after.empty());
  CHECK(ch.queued() == 5 + big.size() + 13);  // a, the message, its trailer
  (void)submit(ch, record("b"));
  (void)submit(ch, record("c"));
  f.mode = Fake::all;
  CHECK(ch.drain());
  CHECK(ch.bulk_done == id);
  CHECK(ch.queued() == 0);
  // small batches coalesce while they wait (a, b, c: one batch), then the fragments, then the
  // trailer right after the last
  CHECK(records(f.wire) == std::vector<std::string>{"a", "b", "c", "F1:0", "F1:1", "F1:2", "F1:3", "after-big"});
}

TEST_CASE("channel: a large message's last fragment waits behind records queued before it", "[channel][fragment]") {
  Channel ch;
  Fake f;
  bring_up(ch, f);
  f.mode = Fake::none;
  const std::string small(60 << 10, 's');  // batches do not coalesce past 64 KiB
  (void)submit(ch, record(small + "1"));
  (void)submit(ch, record(small + "2"));
  (void)submit(ch, record(small + "3"));
  bool wake = false;
  (void)ch.add_bulk(std::string(nodus::dist::kFragmentBytes + 1, 'B'), &wake);  // 2 fragments
  f.mode = Fake::all;
  CHECK(ch.drain());
  auto r = records(f.wire);
  REQUIRE(r.size() == 5);
  CHECK(r[0].back() == '1');
  CHECK(r[1] == "F1:0");
  CHECK(r[2].back() == '2');
  CHECK(r[3].back() == '3');  // not the last fragment yet: 3 was queued before the message
  CHECK(r[4] == "F1:1");
}

namespace {
std::string with_prefix(const std::string& rec) {
  std::string b;
  const auto len = static_cast<std::uint32_t>(rec.size());
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  return b + rec;
}
// The records of a batch (prefixes off).
std::vector<std::string> records_of(const std::string& batch) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos + 4 <= batch.size()) {
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<std::uint32_t>(static_cast<unsigned char>(batch[pos + i])) << (8 * i);
    out.push_back(batch.substr(pos + 4, len));
    pos += 4 + len;
  }
  return out;
}
}  // namespace

TEST_CASE("channel: for a JSON peer, Term payloads and control frames' Terms become JSON, also what queued before it said so",
          "[channel][json]") {
  using namespace nodus;
  namespace frames = nodus::dist::frames;
  const Pid a = dist::pid_from_wire("kate@localhost", 7, 1, 1).value();
  const Pid b = dist::pid_from_wire("probe@localhost", 9, 2, 1).value();
  const Ref r = dist::ref_from_wire("probe@localhost", 9, 3).value();
  std::string send;
  {
    dist::Writer w(send);
    frames::SendPid{9, 2, 1}.write(w);  // (version and op too)
    w.u8(static_cast<std::uint8_t>(dist::Payload::term));
    dist::encode_term(w, tuple(atom("hi"), "there"));
  }
  const std::string down = frames::Down{b, Term(a), r, tuple(atom("badarg"), "why")}.encode();
  const std::string reply = frames::SpawnReply{5, true, 1, 1, {}}.encode();
  Channel ch;
  CHECK(submit(ch, with_prefix(send) + with_prefix(down)));  // queued before the handshake
  ch.use_json();
  CHECK_FALSE(submit(ch, with_prefix(reply)));
  Fake f;
  ch.attach(&f);
  REQUIRE(ch.drain());
  CHECK(ch.pending_bytes == 0);
  const auto recs = records_of(f.wire);
  REQUIRE(recs.size() == 3);
  // SEND_PID: the same head, then a JSON payload
  CHECK(recs[0].substr(0, 14) == send.substr(0, 14));
  CHECK(static_cast<dist::Payload>(recs[0][14]) == dist::Payload::json);
  CHECK(recs[0].substr(15) == R"({"$tuple":[{"$atom":"hi"},"there"]})");
  // DOWN: every Term field a JSON Term (0x0B), decoding to the same frame
  CHECK(recs[1] == frames::Down{b, Term(a), r, tuple(atom("badarg"), "why")}.encode(true));
  CHECK(recs[1].find(R"("why")") != std::string::npos);
  dist::Reader rd(std::string_view(recs[1]).substr(2));
  auto back = frames::Down::decode(rd);
  REQUIRE(back);
  CHECK(back->reason == tuple(atom("badarg"), "why"));
  CHECK(back->watcher == b);
  // a frame without Terms is left as it was
  CHECK(recs[2] == reply);
}
