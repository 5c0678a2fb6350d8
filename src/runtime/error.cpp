// The error vocabulary: code names and the code an Erlang reason stands for.
#include "nodus/error.hpp"

namespace nodus {

std::string_view to_string(Errc code) {
  switch (code) {
    case Errc::noproc: return "noproc";
    case Errc::timeout: return "timeout";
    case Errc::nodedown: return "nodedown";
    case Errc::noconnection: return "noconnection";
    case Errc::calling_self: return "calling_self";
    case Errc::already_started: return "already_started";
    case Errc::init_failed: return "init_failed";
    case Errc::exited: return "exited";
    case Errc::not_found: return "not_found";
    case Errc::badarg: return "badarg";
    case Errc::system_limit: return "system_limit";
    case Errc::not_alive: return "not_alive";
    case Errc::refused: return "refused";
    case Errc::exception: return "exception";
  }
  return "exception";
}

bool is_normal_exit(const Term& r) {
  return r.is_atom("normal") || r.is_atom("shutdown") || (r.is_tuple() && r.size() == 2 && r[0].is_atom("shutdown"));
}

Errc errc_of(const Term& r) {
  if (r.is_atom()) {
    for (Errc c : {Errc::noproc, Errc::timeout, Errc::noconnection, Errc::calling_self, Errc::not_found,
                   Errc::badarg, Errc::system_limit, Errc::not_alive, Errc::refused}) {
      if (r.as_atom().name() == to_string(c)) return c;
    }
    if (r.is_atom("undef")) return Errc::not_found;
    return Errc::exited;
  }
  if (r.is_tuple() && r.size() >= 1 && r[0].is_atom()) {
    if (r.is_tuple(2, "nodedown")) return Errc::nodedown;
    if (r.is_tuple(2, "already_started")) return Errc::already_started;
    if (r[0].is_atom("exception")) return Errc::exception;
  }
  return Errc::exited;
}

}  // namespace nodus
