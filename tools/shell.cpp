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
    "  NAME = COMMAND                     keep the result as NAME (e.g. pid = spawn_link ...)\n"
    "  help                               this text\n"
    "terms use Erlang syntax: {hi, self()}, [1, 2], \"text\", 'sup?', #{k => v}\n";

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

  void print(const std::string& s) { io::puts(s); }  // through the group leader, in order
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

int run_shell(const NodeOptions& opts) {
  if (std::getenv("NODUS_LOG") == nullptr) logger().set_level(spdlog::level::warn);
  Runtime rt;
  try {
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
