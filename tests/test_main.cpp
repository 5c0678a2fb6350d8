// Catch2 main with a watchdog (a hung test aborts the binary instead of stalling CI), the
// lesson's [distributed] rule, and the peer mode some test binaries use for their own peers.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "dist/harness.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--nodus-peer" && nodus::test::peer_main != nullptr) {
    return nodus::test::peer_main(argc, argv);
  }
  int seconds = nodus::test::watchdog_seconds;
  if (const char* env = std::getenv("NODUS_TEST_WATCHDOG")) seconds = std::atoi(env);
  std::thread([seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));  // NOLINT: watchdog, not sync
    std::fprintf(stderr, "watchdog: test binary still running after %d s, aborting\n", seconds);
    std::abort();
  }).detach();
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  // tests that start nodes run wherever nodes can start (so CI always runs them), and are
  // excluded, saying so, where they cannot
  std::string why;
  if (nodus::testing::distributed_excluded(&why)) {
    auto& specs = session.configData().testsOrTags;
    if (specs.empty()) {
      specs.push_back("~[distributed]");
    } else {
      for (auto& s : specs) s += "~[distributed]";
    }
    std::printf("Excluding tags: [distributed] (%s)\n", why.c_str());
    session.useConfigData(session.configData());
  }
  return session.run();
}
