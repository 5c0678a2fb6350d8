// The lesson's Chat module and Chat.Application (see chat.hpp).
#include "chat.hpp"

#include <atomic>

using namespace nodus;

namespace chat {
namespace {

std::atomic<bool> g_remote{true};
// the lesson's `def send_message(:moebi@localhost, message)` clause, for moebi on any host
bool is_moebi(Atom node) {
  const std::string_view n = node.name();
  return n.substr(0, n.find('@')) == "moebi";
}
const Atom kTaskSupervisor = atom("Chat.TaskSupervisor");

// def receive_message(message), do: IO.puts message
Async<Term> receive_message(Term args) {
  io::puts(args[0].as_binary());
  co_return atom("ok");
}

// def receive_message_for_moebi(message, from) do
//   IO.puts message
//   send_message(from, "chicken?")
// end
Async<Term> receive_message_for_moebi(Term args) {
  io::puts(args[0].as_binary());
  const std::string answer = "chicken?";
  co_return co_await send_message(args[1].as_atom(), answer);
}

// Kate.say_name: `IO.puts "Hi, my name is Kate"`, printed where the caller's group leader is.
Proc say_name(Term) {
  io::puts("Hi, my name is Kate");
  co_return;
}

// Kate.reply_sup: receive {hi, Pid} -> send Pid 'sup?'.
Proc reply_sup(Term) {
  Term m = co_await receive<Term>([](const Term& t) { return t.is_tuple(2, "hi") && t[1].is_pid(); });
  send(m[1].as_pid(), atom("sup?"));
}

// send_message(:moebi@HOST, message) -> the moebi clause; anyone else -> receive_message
std::pair<std::string, Term> task_for(Atom recipient, std::string message) {
  if (is_moebi(recipient)) {
    return {"Chat.receive_message_for_moebi", Term::list({Term(std::move(message)), Term(node::self())})};
  }
  return {"Chat.receive_message", Term::list({Term(std::move(message))})};
}

// Chat.Room: a member of the pg group `room` on this node; prints what the room says.
Proc room_member() {
  pg::join(atom("room"), self()).value();
  for (;;) {
    Term t = co_await receive<Term>();
    if (t.is_tuple(3, "room") && t[1].is_atom() && t[2].is_binary()) {
      io::puts("[room] " + std::string(t[1].as_atom().name()) + ": " + t[2].as_binary());
    }
  }
}

}  // namespace

void register_functions() {
  task::register_function("Chat.receive_message", receive_message);
  task::register_function("Chat.receive_message_for_moebi", receive_message_for_moebi);
  register_function("Kate.say_name", say_name);
  register_function("Kate.reply_sup", reply_sup);
}

Application application() {
  // in this order: the room's member joins the pg scope started before it
  return {"Chat.Supervisor", {.strategy = supervisor::Strategy::one_for_one},
          {task_supervisor::child_spec(kTaskSupervisor), pg::child_spec(), supervisor::worker("Chat.Room", room_member)}};
}

void configure(const Config& config) { g_remote = config.get_bool("chat.remote_supervisor", true); }

ServerRef remote_supervisor(Atom recipient) {
  if (g_remote) return ServerRef(kTaskSupervisor, recipient);
  return ServerRef(kTaskSupervisor);
}

// def spawn_task(module, fun, recipient, args) do
//   recipient |> remote_supervisor() |> Task.Supervisor.async(module, fun, args) |> Task.await()
// end
Async<Term> send_message(Atom recipient, std::string message) {
  const auto job = task_for(recipient, std::move(message));
  Task t = co_await task_supervisor::async(remote_supervisor(recipient), job.first, job.second);
  co_return co_await task::await(t);
}

std::size_t send_to_room(const std::string& text) {
  const auto members = pg::get_members(atom("room"));
  for (const Pid& p : members) send(p, tuple(atom("room"), node::self(), text));
  return members.size();
}

Term send_message(Mailbox& mb, Atom recipient, std::string message) {
  auto [function, args] = task_for(recipient, std::move(message));
  Task t = task_supervisor::async(mb, remote_supervisor(recipient), function, args);
  return task::await(mb, t);
}

}  // namespace chat
