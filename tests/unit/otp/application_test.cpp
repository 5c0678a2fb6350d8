// Application (ordered start and stop of a tree) and per-environment config.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nodus/nodus.hpp"

using namespace nodus;
using namespace std::chrono_literals;

namespace {

Proc member(Pid report, std::string id) {
  trap_exit(true);
  send(report, tuple(atom("started"), id));
  ExitMsg e = co_await receive<ExitMsg>();
  send(report, tuple(atom("stopped"), id));
  exit_self(e.reason);
}

std::string next_id(Mailbox& mb, const char* what) {
  auto t = mb.receive<Term>([&](const Term& t) { return t.is_tuple(2, what); }, 10s);
  REQUIRE(t);
  return (*t)[1].as_binary();
}

}  // namespace

TEST_CASE("an application starts its tree in order and stops it in reverse", "[otp][application]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  const Pid me = self();
  Application app{"demo_app", {}, {supervisor::worker("a", member, me, std::string("a")),
                                   task_supervisor::child_spec(atom("Demo.Tasks")),
                                   supervisor::worker("b", member, me, std::string("b"))}};
  {
    application::Running running(app);
    CHECK(whereis(atom("demo_app")) == running.root());
    CHECK(whereis(atom("Demo.Tasks")).has_value());  // running once the constructor returns
    // started in order (the processes then run concurrently, so their reports may interleave)
    const std::string s1 = next_id(mb, "started"), s2 = next_id(mb, "started");
    CHECK(((s1 == "a" && s2 == "b") || (s1 == "b" && s2 == "a")));
    Term kids = supervisor::which_children(mb, running.root());
    CHECK(kids[0][0] == Term("b"));  // (newest first, as OTP lists them)
    CHECK(kids[1][0] == Term("Demo.Tasks"));
    CHECK(kids[2][0] == Term("a"));
  }  // stopped here
  CHECK(next_id(mb, "stopped") == "b");
  CHECK(next_id(mb, "stopped") == "a");
  CHECK_FALSE(whereis(atom("demo_app")).has_value());
  CHECK_FALSE(whereis(atom("Demo.Tasks")).has_value());
}

TEST_CASE("an application whose child cannot start says why", "[otp][application]") {
  Runtime rt({.schedulers = 2});
  Mailbox mb;
  supervisor::ChildSpec bad{"db", []() -> Pid { throw std::runtime_error("db unreachable"); }};
  try {
    application::Running running(Application{"bad_app", {}, {bad}});
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("bad_app failed to start") != std::string::npos);
    CHECK(std::string(e.what()).find("db unreachable") != std::string::npos);
  }
}

TEST_CASE("config: base and environment files merge, values read as terms", "[otp][config]") {
  const Config c = Config::parse(R"(
title = "chat"
[chat]
remote = true
supervisor = "Chat.TaskSupervisor"
ports = [1, 2]
[chat.limits]
max = 3
min = 1
)",
                                 R"(
[chat]
remote = false
[chat.limits]
max = 10
)",
                                 "test");
  CHECK(c.env() == "test");
  CHECK(c.get_bool("chat.remote", true) == false);          // overridden
  CHECK(c.get_string("chat.supervisor", "") == "Chat.TaskSupervisor");  // kept
  CHECK(c.get_int("chat.limits.max", 0) == 10);              // nested tables merge
  CHECK(c.get_int("chat.limits.min", 0) == 1);
  CHECK(c.get("chat.ports")->to_string() == "[1, 2]");
  CHECK_FALSE(c.get("chat.nothing").has_value());
  CHECK_FALSE(c.get("title.deeper").has_value());
  CHECK(c.get_string("missing", "fallback") == "fallback");
  CHECK_THROWS_WITH(Config::parse("a = \n"), Catch::Contains("config.toml:1"));
}

TEST_CASE("config: files chosen by NODUS_ENV (dev by default)", "[otp][config]") {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/nodus-config-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  std::ofstream(dir / "config.toml") << "[chat]\nremote = true\nname = \"base\"\n";
  std::ofstream(dir / "test.toml") << "[chat]\nremote = false\n";
  std::ofstream(dir / "prod.toml") << "[chat\n";  // broken
  ::unsetenv("NODUS_ENV");
  Config dev = Config::load(dir.string());
  CHECK(dev.env() == "dev");
  CHECK(dev.get_bool("chat.remote", false));
  ::setenv("NODUS_ENV", "test", 1);
  Config test = Config::load(dir.string());
  CHECK(test.env() == "test");
  CHECK_FALSE(test.get_bool("chat.remote", true));
  CHECK(test.get_string("chat.name", "") == "base");
  CHECK_THROWS_WITH(Config::load(dir.string(), "prod"), Catch::Contains("prod.toml:1"));
  CHECK_THROWS_AS(Config::load(dir.string(), "../etc"), ConfigError);
  ::unsetenv("NODUS_ENV");
  fs::remove_all(dir);
}
