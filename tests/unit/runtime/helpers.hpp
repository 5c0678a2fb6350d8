// Shared helpers for runtime tests: deadlines instead of sleeps.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>

#include "nodus/nodus.hpp"

namespace nodus::test {

using namespace std::chrono_literals;
inline constexpr auto kWait = 5s;  // generous: only reached when a test fails

/// Waits for the Down of monitor `ref` on the calling thread's mailbox.
inline Down wait_down(Mailbox& mb, const Ref& ref) {
  auto d = mb.receive<Down>([&](const Down& x) { return x.ref == ref; }, kWait);
  REQUIRE(d.has_value());
  return std::move(*d);
}

/// Monitors `pid` and waits for it to exit; returns the reason.
inline Term wait_exit(Mailbox& mb, const Pid& pid) { return wait_down(mb, monitor(pid)).reason; }

inline bool is_atom(const Term& t, std::string_view name) { return t.is_atom(name); }

}  // namespace nodus::test
