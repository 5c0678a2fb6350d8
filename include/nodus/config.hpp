// Per-environment configuration, as the lesson's config/config.exs + config/<env>.exs:
// `config/config.toml` merged with `config/<env>.toml`, where env is $NODUS_ENV (dev by
// default; test, prod). Values read as Terms: strings are binaries, integers, floats,
// booleans are the atoms true/false, arrays are lists, tables are maps with binary keys.
//
//   # config/config.toml            # config/test.toml
//   [chat]                          [chat]
//   supervisor = "Chat.TaskSupervisor"   remote = false
//   remote = true
//
//   auto cfg = nodus::Config::load();             // throws ConfigError with file:line
//   bool remote = cfg.get_bool("chat.remote", true);
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "nodus/term.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

namespace nodus {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Config {
 public:
  /// Loads `dir`/config.toml (optional) and `dir`/<env>.toml (optional), the second
  /// overriding the first key by key (tables merge, other values replace). `env` empty:
  /// $NODUS_ENV, else "dev". ConfigError for a file that does not parse or an env name that
  /// is not a plain word.
  static Config load(const std::string& dir = "config", std::string env = {});
  /// From TOML text (tests, embedded defaults); `overlay` merged over `base`.
  static Config parse(std::string_view base, std::string_view overlay = {}, std::string env = "dev");

  const std::string& env() const { return env_; }
  /// The value at a dotted path ("chat.remote"), or nullopt.
  std::optional<Term> get(std::string_view path) const;
  std::string get_string(std::string_view path, std::string fallback) const;
  std::int64_t get_int(std::string_view path, std::int64_t fallback) const;
  bool get_bool(std::string_view path, bool fallback) const;
  /// Everything, as a map.
  const Term& all() const { return root_; }

 private:
  std::string env_;
  Term root_;
};

}  // namespace nodus

NODUS_API_END
