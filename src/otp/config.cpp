// Config: TOML files (toml++) merged per environment, read as Terms.
#include "nodus/config.hpp"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <toml++/toml.h>

namespace nodus {
namespace {

Term to_term(const toml::node& n) {
  if (auto s = n.as_string()) return Term(std::string(s->get()));
  if (auto i = n.as_integer()) return Term(static_cast<std::int64_t>(i->get()));
  if (auto f = n.as_floating_point()) return Term(f->get());
  if (auto b = n.as_boolean()) return Term(atom(b->get() ? "true" : "false"));
  if (auto a = n.as_array()) {
    std::vector<Term> items;
    for (const auto& e : *a) items.push_back(to_term(e));
    return Term::list(std::move(items));
  }
  if (auto t = n.as_table()) {
    std::vector<std::pair<Term, Term>> kv;
    for (const auto& [k, v] : *t) kv.emplace_back(Term(std::string(k.str())), to_term(v));
    return Term::map(std::move(kv));
  }
  // dates and times: their TOML text
  std::ostringstream os;
  n.visit([&os](const auto& v) { os << v; });
  return Term(os.str());
}

void merge(toml::table& base, const toml::table& over) {
  for (const auto& [k, v] : over) {
    auto* mine = base.get(k);
    if (mine && mine->is_table() && v.is_table()) {
      merge(*mine->as_table(), *v.as_table());
    } else {
      base.insert_or_assign(k, v);
    }
  }
}

toml::table parse_text(std::string_view text, std::string_view source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source();
    throw ConfigError(std::string(source) + ":" + std::to_string(where.begin.line) + ":" +
                      std::to_string(where.begin.column) + ": " + std::string(e.description()));
  }
}

std::string pick_env(std::string env) {
  if (env.empty()) {
    const char* e = std::getenv("NODUS_ENV");
    env = (e && *e) ? e : "dev";
  }
  for (char c : env) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) {
      throw ConfigError("bad NODUS_ENV '" + env + "': expected a plain word such as dev, test or prod");
    }
  }
  return env;
}

}  // namespace

Config Config::parse(std::string_view base, std::string_view overlay, std::string env) {
  toml::table t = parse_text(base, "config.toml");
  if (!overlay.empty()) merge(t, parse_text(overlay, env + ".toml"));
  Config c;
  c.env_ = std::move(env);
  c.root_ = to_term(t);
  return c;
}

Config Config::load(const std::string& dir, std::string env) {
  env = pick_env(std::move(env));
  namespace fs = std::filesystem;
  toml::table t;
  for (const fs::path& p : {fs::path(dir) / "config.toml", fs::path(dir) / (env + ".toml")}) {
    if (!fs::exists(p)) continue;
    try {
      merge(t, toml::parse_file(p.string()));
    } catch (const toml::parse_error& e) {
      throw ConfigError(p.string() + ":" + std::to_string(e.source().begin.line) + ":" +
                        std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
    }
  }
  Config c;
  c.env_ = std::move(env);
  c.root_ = to_term(t);
  return c;
}

std::optional<Term> Config::get(std::string_view path) const {
  const Term* cur = &root_;
  while (!path.empty()) {
    const auto dot = path.find('.');
    const std::string key(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (!cur->is_map()) return std::nullopt;
    const Term* next = cur->find(Term(key));
    if (next == nullptr) return std::nullopt;
    cur = next;
  }
  return *cur;
}

std::string Config::get_string(std::string_view path, std::string fallback) const {
  auto v = get(path);
  return v && v->is_binary() ? v->as_binary() : fallback;
}
std::int64_t Config::get_int(std::string_view path, std::int64_t fallback) const {
  auto v = get(path);
  return v && v->is_integer() ? v->as_int() : fallback;
}
bool Config::get_bool(std::string_view path, bool fallback) const {
  auto v = get(path);
  if (v && v->is_atom("true")) return true;
  if (v && v->is_atom("false")) return false;
  return fallback;
}

}  // namespace nodus
