// erpc (nodus/erpc.hpp): a call is a monitored remote spawn of "erpc.run", whose exit reason
// carries the outcome back: {Tag, return, Result} or {Tag, exception, Reason}. The caller
// knows its call's DOWN by the monitor's ref and its outcome by the tag (a reason of that shape
// from anything else is not taken for a result).
#include "nodus/erpc.hpp"

#include "builtins.hpp"
#include "dist/start.hpp"
#include "nodus/log.hpp"
#include "nodus/node.hpp"
#include "nodus/receive.hpp"
#include "nodus/task.hpp"

namespace nodus::erpc {

void detail::install() {
  // every node answers erpc calls: added to the distribution's built-in functions once, by the
  // first local call and by the public Node as it starts (src/services/node.cpp)
  static const bool installed = (dist::add_builtin_function("erpc.run", detail::run), true);
  (void)installed;
}

Proc detail::run(Term a) {
  // [Tag | none, Function, Args]
  if (!(a.is_list() && a.size() == 3 && a[1].is_binary())) exit_self(atom("badarg"));
  const Term tag = a[0];
  const bool cast = tag.is_atom("none");
  const std::string& function = a[1].as_binary();
  auto f = nodus::detail::find_task_function(function);
  if (!f) {
    if (cast) {
      log_limited(spdlog::level::warn, "erpc.cast", "erpc cast: no function " + function.substr(0, 255) + " here");
      co_return;
    }
    exit_self(tuple(tag, atom("exception"), atom("undef")));
  }
  Term result;
  std::optional<Term> failed;
  try {
    result = co_await (*f)(a[2]);
  } catch (...) {
    failed = exit_reason_of(std::current_exception());
  }
  if (cast) {
    if (failed && !is_normal_exit(*failed)) {
      log_limited(spdlog::level::err, "crash " + to_string(self()),
                  "erpc cast of " + function.substr(0, 255) + " failed: " + failed->to_string(1000), 2000);
    }
    co_return;
  }
  if (failed) exit_self(tuple(tag, atom("exception"), std::move(*failed)));
  exit_self(tuple(tag, atom("return"), std::move(result)));
}

namespace {

Term call_args(const Ref& tag, const std::string& function, Term args) {
  return Term::list({Term(tag), Term(function), std::move(args)});
}

Failure erpc_failure(Errc code, const char* what, std::string text) {
  return {code, tuple(atom("erpc"), atom(what)), std::move(text)};
}

Failure no_connection(Atom node) {
  return erpc_failure(Errc::noconnection, "noconnection", "no connection to " + std::string(node.name()));
}

Failure undef(Atom node, const std::string& function) {
  return {Errc::not_found, tuple(atom("exception"), atom("undef")),
          "no function " + function + " on " + std::string(node.name())};
}

// A spawn that did not happen (the thread variant sees these as a Down instead).
Failure spawn_failure(const SpawnError& e, Atom node, const std::string& function) {
  switch (e.code) {
    case Errc::noconnection: return no_connection(node);
    case Errc::not_found: return undef(node, function);
    case Errc::timeout: return erpc_failure(Errc::timeout, "timeout", e.what());
    default: return e.failure();
  }
}

// One call under way: what it started, and how to read its DOWN.
struct Pending {
  Atom node;
  std::string function;
  Ref tag;
  Pid pid;
  Ref mref;
  std::optional<Failure> failed;  // the spawn itself failed

  bool matches(const Down& d) const { return d.ref == mref; }

  Expected<Term> outcome(std::optional<Down> d) const {
    if (failed) return *failed;
    if (!d) {
      // as erpc: the process is stopped and a result that comes later is dropped with the monitor
      demonitor(mref, true);
      exit(pid, atom("kill"));
      return erpc_failure(Errc::timeout, "timeout", "erpc call of " + function + " on " + std::string(node.name()) +
                                                        ": no result in time");
    }
    const Term& r = d->reason;
    if (r.is_tuple() && r.size() == 3 && r[0].is_ref() && r[0].as_ref() == tag) {
      if (r[1].is_atom("return")) return r[2];
      if (r[1].is_atom("exception")) {
        if (r[2].is_atom("undef")) return undef(node, function);
        return Failure{Errc::exception, tuple(atom("exception"), r[2]),
                       function + " on " + std::string(node.name()) + " failed: " + r[2].to_string(200)};
      }
    }
    if (r.is_atom("noconnection")) return no_connection(node);
    if (r.is_atom("undef")) return undef(node, function);  // the node has no erpc.run
    return Failure{Errc::exited, tuple(atom("exit"), r),
                   "erpc call of " + function + " on " + std::string(node.name()) + " ended: " + r.to_string(200)};
  }
};

Async<Pending> start_async(Atom node, std::string function, Term args, std::chrono::milliseconds timeout) {
  detail::install();
  Pending p{node, std::move(function), make_ref(), {}, {}, std::nullopt};
  try {
    Spawned s = co_await spawn_request(node, "erpc.run", call_args(p.tag, p.function, std::move(args)),
                                       {.monitor = true}, timeout);
    p.pid = s.pid;
    p.mref = s.monitor;
  } catch (const SpawnError& e) {
    p.failed = spawn_failure(e, node, p.function);
  }
  co_return p;
}

Pending start(Atom node, std::string function, Term args, std::chrono::milliseconds timeout) {
  detail::install();
  Pending p{node, std::move(function), make_ref(), {}, {}, std::nullopt};
  try {
    auto [pid, mref] = spawn_monitor(node, "erpc.run", call_args(p.tag, p.function, std::move(args)), {}, timeout);
    p.pid = pid;
    p.mref = mref;
  } catch (const SpawnError& e) {
    p.failed = spawn_failure(e, node, p.function);
  }
  return p;
}

Async<Expected<Term>> finish(const Pending& p, Clock::time_point deadline) {
  if (p.failed) co_return *p.failed;
  auto d = co_await receive<Down>([&p](const Down& m) { return p.matches(m); }, nodus::detail::time_left(deadline));
  co_return p.outcome(std::move(d));
}

Expected<Term> finish(Mailbox& mb, const Pending& p, Clock::time_point deadline) {
  if (p.failed) return *p.failed;
  return p.outcome(mb.receive<Down>([&p](const Down& m) { return p.matches(m); }, nodus::detail::time_left(deadline)));
}

void check_caller(const char* what) {
  if (self().is_null()) throw std::logic_error(std::string(what) + " needs a calling process or Mailbox");
}

}  // namespace

Async<Expected<Term>> call(Atom node, std::string function, Term args, std::chrono::milliseconds timeout) {
  check_caller("erpc::call");
  const auto deadline = Clock::now() + timeout;
  const Pending p = co_await start_async(node, std::move(function), std::move(args), timeout);
  co_return co_await finish(p, deadline);
}

Expected<Term> call(Mailbox& mb, Atom node, std::string function, Term args, std::chrono::milliseconds timeout) {
  check_caller("erpc::call");
  const auto deadline = Clock::now() + timeout;
  return finish(mb, start(node, std::move(function), std::move(args), timeout), deadline);
}

void cast(Atom node, std::string function, Term args) {
  detail::install();
  (void)spawn(node, "erpc.run", Term::list({Term(atom("none")), Term(std::move(function)), std::move(args)}));
}

Async<std::vector<Expected<Term>>> multicall(std::vector<Atom> nodes, std::string function, Term args,
                                             std::chrono::milliseconds timeout) {
  check_caller("erpc::multicall");
  const auto deadline = Clock::now() + timeout;
  std::vector<Pending> calls;
  calls.reserve(nodes.size());
  for (Atom n : nodes) calls.push_back(co_await start_async(n, function, args, nodus::detail::time_left(deadline)));
  std::vector<Expected<Term>> out;
  out.reserve(calls.size());
  for (const Pending& p : calls) out.push_back(co_await finish(p, deadline));
  co_return out;
}

std::vector<Expected<Term>> multicall(Mailbox& mb, const std::vector<Atom>& nodes, const std::string& function,
                                      const Term& args, std::chrono::milliseconds timeout) {
  check_caller("erpc::multicall");
  const auto deadline = Clock::now() + timeout;
  std::vector<Pending> calls;
  calls.reserve(nodes.size());
  for (Atom n : nodes) calls.push_back(start(n, function, args, nodus::detail::time_left(deadline)));
  std::vector<Expected<Term>> out;
  out.reserve(calls.size());
  for (const Pending& p : calls) out.push_back(finish(mb, p, deadline));
  return out;
}

}  // namespace nodus::erpc
