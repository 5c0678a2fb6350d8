// `nodus shell`: an interactive node, enough to walk the lesson (`spawn_link`, `send`, `flush`).
#include "shell.hpp"

#include <readline/history.h>
#include <readline/readline.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "nodus/nodus.hpp"
#include "observe_text.hpp"

namespace nodus::tools {
namespace {

using namespace std::chrono_literals;

const char* kHelp =
    "commands:\n"
    "  nodes                              connected nodes\n"
    "  ping NODE                          pong or pang\n"
    "  spawn NODE FUNCTION [ARG...]       start a registered function there; prints its pid\n"
    "  spawn_link NODE FUNCTION [ARG...]  the same, linked to this shell\n"
    "  send DEST TERM                     DEST: a pid, {Name, Node} or a registered name\n"
    "  flush                              print and drop every message received\n"
    "  receive [MS]                       wait (default 5000 ms) for the next message; print it\n"
    "  self                               this shell's pid\n"
    "  i                                  every process here: pid, name, body, mailbox, handled, status\n"
    "  i NODE                             the same for another node (over the wire)\n"
    "  i PID                              one process (a pid or a variable holding one, here or remote)\n"
    "  i NODE <0.ID.SERIAL>               one process of NODE, by the pid NODE prints\n"
    "  stats [NODE]                       counters: processes, exits, schedulers, connections ...\n"
    "  peers [NODE]                       per peer: messages and bytes each way, queued bytes, busy time\n"
    "  NAME = COMMAND                     keep the result as NAME (e.g. pid = spawn_link ...)\n"
    "  help                               this text\n"
    "terms use Erlang syntax: {hi, self()}, [1, 2], \"text\", 'sup?', #{k => v}\n"
    "i, stats and peers also take Erlang's call form: i(), i(kate@localhost), stats(kate@localhost)\n";

class Shell {
 public:
  Shell(Mailbox& mb, bool interactive) : mb_(mb), interactive_(interactive) {
    scope_.self = [] { return Term(nodus::self()); };
    scope_.variable = [this](std::string_view v) -> std::optional<Term> {
      auto it = vars_.find(std::string(v));
      if (it == vars_.end()) return std::nullopt;
      return it->second;
    };
  }

  void run() {
    for (int n = 1;; ++n) {
      std::string line;
      if (!read_line(n, line)) break;
      const auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos) continue;
      try {
        execute(line.substr(first));
      } catch (const std::exception& e) {
        error(e.what());
      }
      report_exits();
    }
    // linked processes may still be printing here: give them a moment to finish
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (live_links_ > 0 && std::chrono::steady_clock::now() < end) {
      if (mb_.receive<ExitMsg>(50ms)) --live_links_;
    }
  }

 private:
  bool read_line(int n, std::string& out) {
    if (!interactive_) return static_cast<bool>(std::getline(std::cin, out));
    const std::string prompt = "nodus(" + std::string(node::self().name()) + ")" + std::to_string(n) + "> ";
    char* l = readline(prompt.c_str());
    if (l == nullptr) return false;
    out = l;
    if (*l) add_history(l);
    std::free(l);
    return true;
  }

  // through the group leader, in order; `newline`: one is added
  void print(const std::string& s, bool newline = true) {
    if (newline) {
      io::puts(s);
    } else {
      io::put_chars(s);
    }
  }

  // The NODE argument of stats/peers (nullopt: none given).
  std::optional<Atom> node_arg(const std::string& rest) {
    std::istringstream a(rest);
    std::string w;
    a >> w;
    if (w.empty()) return std::nullopt;
    if (w.size() >= 2 && w.front() == '\'' && w.back() == '\'') w = w.substr(1, w.size() - 2);
    if (w.find('@') == std::string::npos) {
      // a variable holding a node name?
      if (auto it = vars_.find(w); it != vars_.end() && it->second.is_atom()) return it->second.as_atom();
      throw std::runtime_error("not a node name (name@host): " + cut(w, 100));
    }
    return Atom(w);
  }

  // i, i NODE, i PID, i NODE <0.ID.SERIAL>
  void inspect(const std::string& rest) {
    std::istringstream a(rest);
    std::string first, second;
    a >> first >> second;
    if (first.empty()) {
      print(format_processes(observe::processes()), false);
      return;
    }
    Term arg;
    bool is_node = false;
    if (first.find('@') != std::string::npos && first.find('<') == std::string::npos) {
      is_node = true;
      arg = Term(*node_arg(first));
    } else {
      arg = parse(first);
    }
    if (is_node && second.empty()) {
      const Atom n = arg.as_atom();
      if (n == node::self()) {
        print(format_processes(observe::processes()), false);
        return;
      }
      auto r = observe::remote_processes(mb_, n);
      if (!r) throw std::runtime_error(r.error().text);
      print("node " + std::string(n.name()) + "\n" + format_processes(r.value()), false);
      return;
    }
    Pid pid;
    if (is_node) {  // i NODE <0.ID.SERIAL>
      Term p = parse(second);
      if (!p.is_pid()) throw std::runtime_error("usage: i NODE <0.ID.SERIAL>");
      pid = p.as_pid();
      if (arg.as_atom() != node::self()) pid.node = arg.as_atom();
    } else if (arg.is_pid()) {
      pid = arg.as_pid();
    } else {
      throw std::runtime_error("usage: i [NODE | PID | NODE <0.ID.SERIAL>]");
    }
    if (pid.is_local()) {
      auto p = observe::process_info(pid);
      print(p ? format_process(*p) : "undefined\n", false);
      return;
    }
    auto r = observe::remote_process_info(mb_, pid);
    if (!r) throw std::runtime_error(r.error().text);
    print(r.value() ? "node " + std::string(pid.node.name()) + "\n" + format_process(*r.value()) : "undefined\n", false);
  }
  void error(const std::string& s) { std::fprintf(stderr, "error: %s\n", s.c_str()); }

  void report_exits() {
    // trapped exits of linked processes: only abnormal ones are news
    while (auto e = mb_.receive<ExitMsg>([](const ExitMsg& m) { return !m.reason.is_atom("normal"); }, 0ms)) {
      --live_links_;
      print("** exit from " + to_string(e->from) + ": " + e->reason.to_string());
    }
    while (mb_.receive<ExitMsg>(0ms)) --live_links_;
  }

  Term parse(const std::string& text) {
    auto t = parse_term(text, scope_);
    if (!t) throw std::runtime_error(t.error().text);
    return std::move(t).value();
  }

  void execute(const std::string& line) {
    std::string bind;
    std::string cmd = line;
    if (auto eq = line.find(" = "); eq != std::string::npos && line.find_first_of(" {[\"'") == eq) {
      bind = line.substr(0, eq);
      cmd = line.substr(eq + 3);
    }
    // i(X) / stats(N) / peers(N): Erlang's call form of the observer commands
    for (const char* f : {"i", "stats", "peers"}) {
      const std::string open = std::string(f) + "(";
      if (cmd.starts_with(open) && cmd.find_last_not_of(" \t") != std::string::npos &&
          cmd[cmd.find_last_not_of(" \t")] == ')') {
        std::string inner = cmd.substr(open.size(), cmd.find_last_not_of(" \t") - open.size());
        for (char& c : inner) if (c == ',') c = ' ';
        cmd = std::string(f) + " " + inner;
      }
    }
    std::istringstream in(cmd);
    std::string verb;
    in >> verb;
    std::string rest;
    std::getline(in, rest);
    std::optional<Term> result;
    if (verb == "help") {
      std::fputs(kHelp, stdout);
      std::fflush(stdout);
    } else if (verb == "nodes") {
      std::vector<Term> l;
      for (Atom a : node::list()) l.emplace_back(a);
      result = Term::list(std::move(l));
    } else if (verb == "i") {
      inspect(rest);
    } else if (verb == "stats" || verb == "peers") {
      const std::optional<Atom> n = node_arg(rest);
      observe::Stats s;
      if (!n || *n == node::self()) {
        s = observe::stats();
      } else {
        auto r = observe::remote_stats(mb_, *n);
        if (!r) throw std::runtime_error(r.error().text);
        s = std::move(r.value());
      }
      print(verb == "stats" ? format_stats(s) : format_peers(s), false);
    } else if (verb == "self") {
      result = Term(nodus::self());
    } else if (verb == "ping") {
      std::istringstream a(rest);
      std::string target;
      a >> target;
      if (target.empty()) throw std::runtime_error("usage: ping NODE");
      result = Term(atom(node::ping(Atom(target)) ? "pong" : "pang"));
    } else if (verb == "spawn" || verb == "spawn_link") {
      std::istringstream a(rest);
      std::string target, function;
      a >> target >> function;
      if (function.empty()) throw std::runtime_error("usage: " + verb + " NODE FUNCTION [ARG...]");
      std::vector<Term> args;
      std::string arg;
      std::getline(a, arg);
      if (arg.find_first_not_of(" \t") != std::string::npos) {
        Term t = parse("[" + arg + "]");
        args = t.elems();
      }
      const bool link = verb == "spawn_link";
      Pid p = spawn_or_throw(Atom(target), function, Term::list(std::move(args)), {.link = link});
      if (link) ++live_links_;
      result = Term(p);
    } else if (verb == "send") {
      // DEST is the first term; the message is the rest
      const auto split = split_first_term(rest);
      Term dest = parse(split.first);
      Term msg = parse(split.second);
      if (dest.is_pid()) {
        send(dest.as_pid(), msg);
      } else if (dest.is_tuple() && dest.size() == 2 && dest[0].is_atom() && dest[1].is_atom()) {
        send(dest[0].as_atom(), dest[1].as_atom(), msg);
      } else if (dest.is_atom()) {
        if (!send(dest.as_atom(), msg)) throw std::runtime_error("no process registered as " + dest.to_string());
      } else {
        throw std::runtime_error("DEST must be a pid, {Name, Node} or a registered name");
      }
      result = msg;
    } else if (verb == "receive") {
      long ms = 5000;
      std::istringstream a(rest);
      a >> ms;
      auto m = mb_.receive<Message>([](const MessageRef& r) {
        return !(r.is<ExitMsg>() && r.get<ExitMsg>().reason.is_atom("normal"));
      }, std::chrono::milliseconds(ms));
      if (!m) throw std::runtime_error("no message within " + std::to_string(ms) + " ms");
      result = Term(atom("received"));
      print(m->to_string());
      result.reset();
    } else if (verb == "flush") {
      for (auto& m : mb_.flush()) {
        if (m.is<ExitMsg>()) {
          --live_links_;
          if (m.get<ExitMsg>().reason.is_atom("normal")) continue;
        }
        print(m.to_string());
      }
      result = Term(atoms::ok());
    } else {
      throw std::runtime_error("unknown command '" + verb + "' (try help)");
    }
    if (result) {
      print(result->to_string());
      if (!bind.empty()) vars_[bind] = *result;
    }
  }

  // "<0.1.0> {hi, self()}" -> {"<0.1.0>", "{hi, self()}"}: the end of the first balanced term.
  static std::pair<std::string, std::string> split_first_term(const std::string& s) {
    int depth = 0;
    bool in_str = false;
    char q = 0;
    const auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos) throw std::runtime_error("usage: send DEST TERM");
    for (std::size_t i = b; i < s.size(); ++i) {
      const char c = s[i];
      if (in_str) {
        if (c == '\\') ++i;
        else if (c == q) in_str = false;
        continue;
      }
      if (c == '"' || c == '\'') {
        in_str = true;
        q = c;
      } else if (c == '{' || c == '[' || c == '<' || c == '(') {
        ++depth;
      } else if (c == '}' || c == ']' || c == '>' || c == ')') {
        --depth;
      } else if ((c == ' ' || c == '\t') && depth == 0) {
        return {s.substr(b, i - b), s.substr(i + 1)};
      }
    }
    throw std::runtime_error("usage: send DEST TERM");
  }

  Mailbox& mb_;
  bool interactive_;
  TermScope scope_;
  std::map<std::string, Term> vars_;
  int live_links_ = 0;
};

}  // namespace

int run_shell(const NodeOptions& opts, const std::function<void()>& setup) {
  if (std::getenv("NODUS_LOG") == nullptr) logger().set_level(spdlog::level::warn);
  Runtime rt;
  try {
    if (setup) setup();
    Node node(opts);
    Mailbox mb;
    mb.trap_exit(true);  // a crash of a linked process is reported, not fatal to the shell
    Shell(mb, ::isatty(0) != 0).run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace nodus::tools
