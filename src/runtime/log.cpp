// The nodus logger.
#include "nodus/log.hpp"

#include <cstdlib>

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

}  // namespace nodus
