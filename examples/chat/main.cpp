// chat: the lesson's node (the Elixir tutorial nodus reproduces). `chat --sname alex@localhost
// --cookie C` starts the Chat application (Chat.TaskSupervisor under Chat.Supervisor) and
// registers the lesson's functions. Each stdin line `RECIPIENT TEXT` is
// Chat.send_message(RECIPIENT, TEXT); `@room TEXT` goes to every member of the pg group `room`
// (one per chat node, on every node this one is connected to; `/connect NODE` connects), printed
// there as `[room] SENDER: TEXT`; messages this node receives are printed alone on their line
// on stdout; errors go to stderr as `error: no connection to moebi@localhost` (a recipient that
// goes in the middle of a call takes the caller's process with it, as in Elixir: that is
// reported too, and a new process carries on the conversation). At the end of stdin
// it keeps serving until SIGINT/SIGTERM, then stops the application in order and exits 0.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <optional>
#include <cstdio>
#include <string>
#include <thread>

#include "chat.hpp"
#include "nodus/cli.hpp"
#include "nodus/nodus.hpp"

using namespace nodus;

namespace {

std::atomic<bool> g_stop{false};

// One line from stdin, or nullopt at its end (or when asked to stop).
std::optional<std::string> read_line(std::string& buffer) {
  for (;;) {
    if (auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    pollfd p{0, POLLIN, 0};
    while (!g_stop.load()) {
      const int r = ::poll(&p, 1, 100);
      if (r > 0) break;
      if (r < 0 && errno != EINTR) return std::nullopt;
    }
    if (g_stop.load()) return std::nullopt;
    char chunk[4096];
    const ssize_t n = ::read(0, chunk, sizeof(chunk));
    if (n <= 0) {
      if (buffer.empty()) return std::nullopt;
      std::string last = std::move(buffer);
      buffer.clear();
      return last;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

// Reads `RECIPIENT TEXT` lines and sends each; runs until stdin ends or the node stops.
void conversation(const std::string& me) {
  std::optional<Mailbox> mb(std::in_place);
  const bool tty = ::isatty(0);
  std::string buffer;
  for (;;) {
    if (tty) {
      std::printf("chat(%s)> ", me.c_str());
      std::fflush(stdout);
    }
    auto line = read_line(buffer);
    if (!line) return;
    const auto sp = line->find(' ');
    if (line->empty()) continue;
    if (line->rfind("@room ", 0) == 0) {
      chat::send_to_room(line->substr(6));
      continue;
    }
    if (line->rfind("/connect ", 0) == 0) {
      // Node.connect: the room (pg) spans the nodes this one is connected to
      const std::string to = line->substr(9);
      if (to.find('@') == std::string::npos || !node::ping(atom(to))) {
        std::fprintf(stderr, "error: cannot connect to %s\n", to.c_str());
      }
      continue;
    }
    if (sp == std::string::npos || sp == 0) {
      std::fprintf(stderr, "error: expected RECIPIENT TEXT, e.g. kate@localhost hi\n");
      continue;
    }
    const std::string to = line->substr(0, sp);
    if (to.find('@') == std::string::npos) {
      std::fprintf(stderr, "error: bad recipient '%s': expected a node name such as kate@localhost\n", to.c_str());
      continue;
    }
    try {
      chat::send_message(*mb, atom(to), line->substr(sp + 1));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    } catch (const ProcessExit& e) {
      // The task is linked to this thread's process (Elixir's Task.async links the caller): a
      // recipient node that goes during the call takes it down with `noconnection`, as it
      // takes down iex's evaluator. As iex does, report it and go on with a new process.
      std::fprintf(stderr, "error: %s went during the call: this conversation's process exited (%s); a new one takes over\n",
                   to.c_str(), e.reason.to_string(200).c_str());
      mb.reset();
      mb.emplace();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chat: a node of the lesson's Chat application (alex, kate, moebi).\n"
               "Each stdin line `RECIPIENT TEXT` sends TEXT to RECIPIENT (Chat.send_message);\n"
               "`@room TEXT` sends TEXT to the room (a pg group with a member on every chat node\n"
               "this one is connected to); `/connect NODE` connects to NODE.\n"
               "messages received are printed on stdout, one per line. Stops on SIGINT/SIGTERM."};
  cli::NodeFlags flags;
  cli::add_node_flags(app, flags, false);  // no --sname: a plain, not distributed, node
  std::string config_dir = NODUS_CHAT_CONFIG_DIR;
  app.add_option("--config", config_dir, "directory with config.toml and $NODUS_ENV.toml")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts: sigwait gets them

  try {
    const Config config = Config::load(config_dir);
    chat::configure(config);
    Runtime rt;
    std::optional<Node> node;
    chat::register_functions();
    application::Running running(chat::application());
    // up (and in the port mapper) once its functions and its supervision tree are there: a
    // node that can reach it finds them
    if (!flags.sname.empty()) node.emplace(cli::node_options(flags));
    const std::string me(node::self().name());
    logger().info("chat {} ready (env {})", me, config.env());
    std::thread reader(conversation, me);
    int sig = 0;
    sigwait(&stop, &sig);
    g_stop = true;
    reader.join();
    running.stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
