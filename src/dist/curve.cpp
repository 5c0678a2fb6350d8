// CURVE keys from files (nodus/node.hpp: load_curve): the node's secret key and the public
// keys it accepts, in ZeroMQ's Z85 form (what `nodus keygen` writes).
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/node.hpp"

namespace nodus {
namespace {

// The first line of `path`, without surrounding white space.
std::string first_line(const std::string& path, std::size_t max) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot read " + path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
  if (line.size() > max) line.resize(max + 1);
  return line;
}

// The node names a .pub file binds its key to: its lines after the first (the key), without
// blank and `#` lines. Each is `name` or `name@host`.
std::vector<std::string> bound_names(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // the key
  std::vector<std::string> names;
  for (int n = 2; std::getline(in, line); ++n) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    line = line.substr(b, line.find_last_not_of(" \t\r") - b + 1);
    const auto at = line.find('@');
    const bool ok = !line.empty() && line.size() <= 255 && line.find_first_of(" \t") == std::string::npos &&
                    at != 0 && (at == std::string::npos || (at + 1 < line.size() && line.find('@', at + 1) == std::string::npos));
    if (!ok) {
      throw std::invalid_argument(path + " line " + std::to_string(n) +
                                  ": not a node name (expected NAME or NAME@HOST, one a line after the key)");
    }
    names.push_back(line);
  }
  return names;
}

std::string stem(const std::string& path) {
  std::string s = path.substr(path.rfind('/') + 1);
  if (s.size() > 4 && s.compare(s.size() - 4, 4, ".pub") == 0) s.resize(s.size() - 4);
  return s;
}

}  // namespace

bool valid_z85_key(std::string_view z85) {
  if (z85.size() != 40) return false;
  std::uint8_t raw[32];
  const std::string s(z85);
  return zmq_z85_decode(raw, s.c_str()) != nullptr;
}

std::string read_public_key(const std::string& file_or_key) {
  if (valid_z85_key(file_or_key) && ::access(file_or_key.c_str(), F_OK) != 0) return file_or_key;
  const std::string k = first_line(file_or_key, 40);
  if (!valid_z85_key(k)) {
    throw std::invalid_argument(file_or_key + ": not a CURVE public key (expected 40 Z85 characters, as nodus keygen writes)");
  }
  return k;
}

CurveOptions load_curve(const std::string& key_file, const std::string& allow) {
  CurveOptions c;
  struct stat st{};
  if (::stat(key_file.c_str(), &st) != 0) throw std::invalid_argument("cannot read CURVE key " + key_file);
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    throw std::invalid_argument("CURVE key " + key_file + " is readable by other users: chmod 400 it (a secret key is a password)");
  }
  c.secret_key = first_line(key_file, 40);
  if (!valid_z85_key(c.secret_key)) {
    throw std::invalid_argument(key_file + ": not a CURVE secret key (expected 40 Z85 characters, as nodus keygen writes)");
  }
  if (allow.empty()) throw std::invalid_argument("CURVE mode needs --curve-allow: the public keys of the nodes to accept");
  if (::stat(allow.c_str(), &st) != 0) throw std::invalid_argument("cannot read --curve-allow " + allow);
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = ::opendir(allow.c_str());
    if (d == nullptr) throw std::invalid_argument("cannot read directory " + allow);
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".pub") == 0) files.push_back(allow + "/" + n);
    }
    ::closedir(d);
    std::sort(files.begin(), files.end());
    if (files.empty()) throw std::invalid_argument("no .pub files in " + allow);
  } else {
    files.push_back(allow);
  }
  for (const auto& f : files) {
    const std::string key = read_public_key(f);
    const std::vector<std::string> names = bound_names(f);
    if (names.empty()) c.allowed.emplace_back(key, stem(f));
    for (const auto& n : names) c.allowed.emplace_back(key, n);
  }
  return c;
}

bool curve_key_bound(const CurveOptions& c, std::string_view z85, std::string_view name) {
  const std::string_view short_name = name.substr(0, name.find('@'));
  for (const auto& [key, label] : c.allowed) {
    if (key == z85 && (label == name || label == short_name)) return true;
  }
  return false;
}

std::string curve_key_names(const CurveOptions& c, std::string_view z85) {
  std::string out;
  for (const auto& [key, label] : c.allowed) {
    if (key != z85) continue;
    if (!out.empty()) out += ", ";
    out += label;
  }
  return out;
}

std::string curve_public_key(const std::string& secret_z85) {
  char pub[41] = {};
  if (zmq_curve_public(pub, secret_z85.c_str()) != 0) throw std::invalid_argument("bad CURVE secret key");
  return pub;
}

}  // namespace nodus
