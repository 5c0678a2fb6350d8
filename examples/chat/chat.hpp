// The lesson's Chat application (from the Elixir tutorial), in C++: a Chat.TaskSupervisor under
// Chat.Supervisor; Chat.send_message runs Chat.receive_message (or, for moebi, the moebi
// clause that answers "chicken?") under the recipient's task supervisor and awaits it.
#pragma once

#include <string>

#include "nodus/nodus.hpp"

namespace chat {

/// Registers the lesson's functions on this node: the task functions Chat.receive_message and
/// Chat.receive_message_for_moebi, and Kate.say_name / Kate.reply_sup for remote spawn.
void register_functions();

/// Chat.Application: {Task.Supervisor, name: Chat.TaskSupervisor}, the pg scope and Chat.Room
/// (a member of the pg group `room` that prints `[room] NODE: TEXT`) under Chat.Supervisor.
nodus::Application application();

/// Where tasks for `recipient` run, from the config (`chat.remote_supervisor`): true (dev)
/// gives {Chat.TaskSupervisor, recipient}, false (test) the local Chat.TaskSupervisor.
void configure(const nodus::Config& config);
nodus::ServerRef remote_supervisor(nodus::Atom recipient);

/// Chat.send_message(recipient, message): `ok`, or throws nodus::TaskError ("no connection to
/// moebi@localhost"). In a process body; the Mailbox form on a thread.
nodus::Async<nodus::Term> send_message(nodus::Atom recipient, std::string message);
nodus::Term send_message(nodus::Mailbox& mb, nodus::Atom recipient, std::string message);

/// `@room TEXT`: TEXT to every member of the room on every connected node; how many there are.
std::size_t send_to_room(const std::string& text);

}  // namespace chat
