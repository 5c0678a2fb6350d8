// Catch2 main with a watchdog: a hung test aborts the binary instead of stalling CI.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

int main(int argc, char** argv) {
  int seconds = 120;
  if (const char* env = std::getenv("NODUS_TEST_WATCHDOG")) seconds = std::atoi(env);
  std::thread([seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));  // NOLINT: watchdog, not sync
    std::fprintf(stderr, "watchdog: test binary still running after %d s, aborting\n", seconds);
    std::abort();
  }).detach();
  return Catch::Session().run(argc, argv);
}
