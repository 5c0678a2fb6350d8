// Several hosts without manual steps (docs/multi-host.md): three network namespaces on one
// switch are hosts A, B and C, each with its own /etc/hosts (ip netns exec mounts
// /etc/netns/NS/hosts). Nodes start their host's port mapper themselves; the lesson runs across
// them by short and by long names, in cookie and CURVE mode, with and without port mappers; a
// REGISTER from another host is refused. Skipped with "Excluding tags: [netns]" where namespaces
// cannot be made.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"

using namespace nodus;
using namespace nodus::test;
using namespace std::chrono_literals;

namespace {

const std::string kNodus = NODUS_TOOL;
const std::string kChat = NODUS_CHAT;

[[maybe_unused]] const bool kWatchdog = [] {
  watchdog_seconds = 400;
  return true;
}();


int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string capture(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

// Three hosts on one switch: namespaces nodusA/B/C<pid> with 10.214.X.1/2/3 on veths to a
// bridge in a fourth namespace. Host names (short: ha<pid>; long: ha<pid>.nodus.test) resolve
// through each namespace's own /etc/hosts. Whatever runs in the namespaces at the end (the
// nodes, the port mappers they started) is killed, and everything is removed.
struct Hosts {
  std::string why, sw;
  std::vector<std::string> ns, ip, name;  // by host index 0..2 (A, B, C)
  bool ok = false;
  Hosts() {
    const std::string tag = std::to_string(::getpid());
    const int x = static_cast<int>(::getpid() % 200) + 20;
    sw = "nodusS" + tag;
    for (int i = 0; i < 3; ++i) {
      const char h = static_cast<char>('a' + i);
      ns.push_back(std::string("nodus") + static_cast<char>('A' + i) + tag);
      ip.push_back("10.214." + std::to_string(x) + "." + std::to_string(i + 1));
      name.push_back(std::string("h") + h + tag);
    }
    std::vector<std::string> steps = {"ip netns add " + sw, "ip -n " + sw + " link add br0 type bridge",
                                      "ip -n " + sw + " link set br0 up"};
    for (int i = 0; i < 3; ++i) {
      const std::string v = "v" + std::to_string(i);
      steps.insert(steps.end(),
                   {"ip netns add " + ns[i],
                    "ip link add " + v + tag + " netns " + ns[i] + " type veth peer name p" + v + " netns " + sw,
                    "ip -n " + ns[i] + " addr add " + ip[i] + "/24 dev " + v + tag,
                    "ip -n " + ns[i] + " link set " + v + tag + " up", "ip -n " + ns[i] + " link set lo up",
                    "ip -n " + sw + " link set p" + v + " master br0", "ip -n " + sw + " link set p" + v + " up"});
    }
    for (const auto& s : steps) {
      if (run(s) != 0) {
        why = "`" + s + "` failed (needs root and network namespaces)";
        return;
      }
    }
    std::string hosts = "127.0.0.1 localhost\n";
    for (int i = 0; i < 3; ++i) hosts += ip[i] + " " + name[i] + " " + name[i] + ".nodus.test\n";
    for (int i = 0; i < 3; ++i) {
      std::filesystem::create_directories("/etc/netns/" + ns[i]);
      std::ofstream("/etc/netns/" + ns[i] + "/hosts") << hosts;
    }
    ok = true;
  }
  ~Hosts() {
    for (const auto& n : ns) {
      // (only processes of these namespaces: the ones this test started, and their port mappers)
      std::istringstream pids(capture("ip netns pids " + n + " 2>/dev/null"));
      for (long pid; pids >> pid;) ::kill(static_cast<pid_t>(pid), SIGKILL);
      run("ip netns del " + n);
      std::error_code ec;
      std::filesystem::remove_all("/etc/netns/" + n, ec);
    }
    run("ip netns del " + sw);
  }
  /// `args` run on host `i`.
  std::vector<std::string> on(int i, std::vector<std::string> args) const {
    return std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns[i]} + args;
  }
  std::string fqdn(int i) const { return name[i] + ".nodus.test"; }
};

bool netns_or_skip(const Hosts& hosts) { return nodus::test::netns_or_skip(hosts.ok, hosts.why); }

bool ready(Child& c) {
  return eventually([&] { return c.err().find(" ready") != std::string::npos || !c.running(); }, 20s) && c.running();
}

}  // namespace

TEST_CASE("the lesson on three hosts, port mappers started by the nodes: short and long names, cookie and CURVE",
          "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  const bool curve = GENERATE(false, true);
  const bool long_names = GENERATE(false, true);
  INFO((curve ? "CURVE" : "cookie") << (long_names ? ", --name" : ", --sname"));
  CurveKeys keys({"kate", "moebi", "alex"});
  const std::string flag = long_names ? "--name" : "--sname";
  auto host = [&](int i) { return long_names ? hosts.fqdn(i) : hosts.name[i]; };
  const std::string alex = "alex@" + host(0), kate = "kate@" + host(1), moebi = "moebi@" + host(2);
  auto mode = [&](const std::string& who) {
    return curve ? keys.flags(who) : std::vector<std::string>{"--cookie", "secret_token"};
  };
  auto chat = [&](int i, const std::string& who, const std::string& me) {
    return std::make_unique<Child>(
        hosts.on(i, std::vector<std::string>{kChat, flag, me, "--ticktime", "2000"} + mode(who)),
        "mh-" + who + (curve ? "-curve" : "") + (long_names ? "-long" : ""), Child::Pipe{});
  };
  auto k = chat(1, "kate", kate);
  auto m = chat(2, "moebi", moebi);
  auto a = chat(0, "alex", alex);
  for (Child* c : {k.get(), m.get(), a.get()}) {
    INFO(c->err());
    REQUIRE(ready(*c));
  }
  // kate's host's port mapper answers other hosts
  Child names(hosts.on(0, {kNodus, "names", host(1)}), "mh-names");
  CHECK(names.wait(20s) == 0);
  CHECK(names.out().find("name kate at port ") != std::string::npos);

  a->write_stdin(kate + " hi\n");
  CHECK(eventually([&] { return k->out() == "hi\n"; }, 20s));
  a->write_stdin(moebi + " hi\n");
  CHECK(eventually([&] { return a->out() == "chicken?\n"; }, 20s));
  CHECK(m->out() == "hi\n");
  k->write_stdin(alex + " how are you?\n");
  CHECK(eventually([&] { return a->out() == "chicken?\nhow are you?\n"; }, 20s));

  // say_name, spawned on kate from a shell on host A, prints on host A
  std::vector<std::string> shell{kNodus, "shell", flag, "alex@" + host(0)};
  a->signal(SIGTERM);  // (the shell takes alex's name, key and port mapper entry)
  CHECK(a->wait(10s) == 0);
  Child sh(hosts.on(0, shell + mode("alex")), "mh-shell" + std::string(curve ? "-curve" : ""),
           "spawn_link " + kate + " Kate.say_name\n");
  CHECK(sh.wait(30s) == 0);
  INFO("shell err: " << sh.err());
  CHECK(sh.out().find("Hi, my name is Kate\n") != std::string::npos);
  CHECK(k->out() == "hi\n");
}

TEST_CASE("static peers on two hosts, no port mapper anywhere", "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  const std::string alex = "alex@" + hosts.name[0], kate = "kate@" + hosts.name[1];
  Child k(hosts.on(1, {kChat, "--sname", kate, "--cookie", "c", "--port", "9100", "--no-portmapper", "--peer",
                       alex + "=tcp://" + hosts.ip[0] + ":9100"}),
          "mh-static-kate", Child::Pipe{});
  Child a(hosts.on(0, {kChat, "--sname", alex, "--cookie", "c", "--port", "9100", "--no-portmapper", "--peer",
                       kate + "=tcp://" + hosts.ip[1] + ":9100"}),
          "mh-static-alex", Child::Pipe{});
  REQUIRE(ready(k));
  REQUIRE(ready(a));
  a.write_stdin(kate + " hi\n");
  CHECK(eventually([&] { return k.out() == "hi\n"; }, 20s));
  k.write_stdin(alex + " how are you?\n");
  CHECK(eventually([&] { return a.out() == "how are you?\n"; }, 20s));
  // nobody started a port mapper
  Child names(hosts.on(0, {kNodus, "names", hosts.name[1]}), "mh-static-names");
  CHECK(names.wait(20s) == 1);
  Child local(hosts.on(1, {kNodus, "names"}), "mh-static-names-local");
  CHECK(local.wait(20s) == 1);
}

TEST_CASE("a port mapper answers other hosts but takes registrations from its own host only", "[distributed][netns]") {
  Hosts hosts;
  if (!netns_or_skip(hosts)) return;
  // a localhost node starts host B's port mapper (on 127.0.0.1 only); kate, on B's address,
  // has it listen there too
  Child zed(hosts.on(1, {kNodus, "node", "--sname", "zed@localhost", "--cookie", "c"}), "mh-reg-zed");
  REQUIRE(ready(zed));
  Child early(hosts.on(0, {kNodus, "names", hosts.name[1]}), "mh-reg-early");
  CHECK(early.wait(20s) == 1);  // not yet reachable from host A
  Child k(hosts.on(1, {kNodus, "node", "--sname", "kate@" + hosts.name[1], "--cookie", "c"}), "mh-reg-kate");
  REQUIRE(ready(k));
  Child names(hosts.on(0, {kNodus, "names", hosts.name[1]}), "mh-reg-names");
  CHECK(names.wait(20s) == 0);
  CHECK(names.out().find("name kate at port ") != std::string::npos);
  CHECK(names.out().find("name zed at port ") != std::string::npos);
  const std::string port = std::getenv("NODUS_PORTMAPPER_PORT");
  auto from_a = [&](const std::string& request) {
    Child c(hosts.on(0, {"/bin/bash", "-c",
                         "exec 3<>/dev/tcp/" + hosts.ip[1] + "/" + port + " && printf '" + request +
                             "\\n' >&3 && head -n 1 <&3"}),
            "mh-reg-raw");
    c.wait(20s);
    return c.out();
  };
  CHECK(from_a("REGISTER evil 9100") == "ERR not_local\n");
  CHECK(from_a("LOOKUP kate").rfind("PORT ", 0) == 0);
  // from kate's own host, the port mapper is on 127.0.0.1 as well
  Child local(hosts.on(1, {kNodus, "names"}), "mh-reg-local");
  CHECK(local.wait(20s) == 0);
  CHECK(local.out().find("name kate at port ") != std::string::npos);
  CHECK(local.out().find("evil") == std::string::npos);
}
