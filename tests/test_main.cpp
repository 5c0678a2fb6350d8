// Catch2 main with a watchdog: a hung test aborts the binary instead of stalling CI.
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
  int seconds = 120;
  if (const char* env = std::getenv("NODUS_TEST_WATCHDOG")) seconds = std::atoi(env);
  std::thread([seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));  // NOLINT: watchdog, not sync
    std::fprintf(stderr, "watchdog: test binary still running after %d s, aborting\n", seconds);
    std::abort();
  }).detach();
  return Catch::Session().run(argc, argv);
}
