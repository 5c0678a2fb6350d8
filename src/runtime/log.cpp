// The nodus logger.
#include "nodus/log.hpp"

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace nodus {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto lg = spdlog::stderr_color_mt("nodus");
    lg->set_pattern("%H:%M:%S.%e [%^%l%$] %v");
    lg->set_level(spdlog::level::info);
    if (const char* env = std::getenv("NODUS_LOG")) {
      auto lvl = spdlog::level::from_str(env);
      // from_str maps unknown text to "off"; only accept it when asked for
      if (lvl != spdlog::level::off || std::string_view(env) == "off") lg->set_level(lvl);
    }
    lg->flush_on(spdlog::level::warn);
    return lg;
  }();
  return *l;
}

namespace {
constexpr int kLinesPerSecond = 5;
constexpr std::size_t kMaxKinds = 1024;
}  // namespace

void log_limited(spdlog::level::level_enum level, std::string_view kind, std::string line, std::size_t max_bytes) {
  static std::mutex mu;
  struct Window {
    std::chrono::steady_clock::time_point start;
    int lines = 0;
    long suppressed = 0;
  };
  static std::map<std::string, Window, std::less<>> windows;
  std::lock_guard lock(mu);
  auto it = windows.find(kind);
  if (it == windows.end()) {
    if (windows.size() >= kMaxKinds) windows.clear();  // (forgets the counts, never the limit)
    it = windows.emplace(std::string(kind.substr(0, 128)), Window{}).first;
  }
  Window& w = it->second;
  const auto now = std::chrono::steady_clock::now();
  if (now - w.start >= std::chrono::seconds(1)) {
    w.start = now;
    w.lines = 0;
  }
  if (w.lines >= kLinesPerSecond) {
    ++w.suppressed;
    return;
  }
  ++w.lines;
  if (line.size() > max_bytes) {
    line.resize(max_bytes);
    line += "...";
  }
  if (w.suppressed) {
    logger().log(level, "{} ({} more like it suppressed)", line, w.suppressed);
    w.suppressed = 0;
  } else {
    logger().log(level, "{}", line);
  }
}

}  // namespace nodus
