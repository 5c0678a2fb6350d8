// The chat example (the lesson's app): send_message with the local supervisor under
// NODUS_ENV=test, and the three-node conversation of alex, kate and moebi as OS processes.
#include <catch2/catch.hpp>

#include "../../examples/chat/chat.hpp"
#include "nodus/testing.hpp"

using namespace nodus;
using namespace nodus::testing;
using namespace std::chrono_literals;

namespace {
const std::string kChat = NODUS_CHAT;
const std::string kPortmapper = NODUS_PORTMAPPER_TOOL;

std::vector<std::string> chat_args(const std::string& name) {
  return {kChat, "--sname", name + "@localhost", "--cookie", "secret_token", "--ticktime", "1000"};
}
}  // namespace

TEST_CASE("send_message under NODUS_ENV=test runs on the local supervisor, no other node", "[chat]") {
  // the lesson's test: assert Chat.send_message(:moebi@localhost, "hi") == :ok
  chat::configure(Config::load(NODUS_CHAT_CONFIG_DIR, "test"));
  Runtime rt;
  Mailbox mb;
  chat::register_functions();
  application::Running app(chat::application());
  CHECK(chat::send_message(mb, atom("moebi@localhost"), "hi") == Term(atom("ok")));
  CHECK(chat::send_message(mb, atom("kate@localhost"), "hello") == Term(atom("ok")));
}

TEST_CASE("the chat program under NODUS_ENV=test: moebi's clause answers chicken? locally", "[chat]") {
  ::setenv("NODUS_ENV", "test", 1);
  Child alex({kChat}, "chat-local", "moebi@localhost hi\n");  // no --sname: not a distributed node
  ::unsetenv("NODUS_ENV");
  CHECK(eventually([&] { return alex.out() == "hi\nchicken?\n"; }));
  alex.signal(SIGTERM);
  CHECK(alex.wait() == 0);
  CHECK(alex.out() == "hi\nchicken?\n");
}

TEST_CASE("the lesson's conversation: alex, kate and moebi as three OS processes", "[distributed][chat]") {
  PortMapper pm(kPortmapper);
  REQUIRE(pm.ready());
  PeerNode kate(chat_args("kate"), pm, "kate");
  PeerNode moebi(chat_args("moebi"), pm, "moebi");
  PeerNode alex(chat_args("alex"), pm, "alex");
  REQUIRE(kate.ready());
  REQUIRE(moebi.ready());
  REQUIRE(alex.ready());

  // iex(alex@localhost)> Chat.send_message(:kate@localhost, "hi")   -> kate prints hi
  alex.say("kate@localhost hi");
  CHECK(eventually([&] { return kate.out() == "hi\n"; }));
  // iex(kate@localhost)> Chat.send_message(:alex@localhost, "how are you?")   -> on alex
  kate.say("alex@localhost how are you?");
  CHECK(eventually([&] { return alex.out() == "how are you?\n"; }));
  // iex(alex@localhost)> Chat.send_message(:moebi@localhost, "hi")   -> moebi prints hi,
  // alex prints chicken?
  alex.say("moebi@localhost hi");
  CHECK(eventually([&] { return alex.out() == "how are you?\nchicken?\n"; }));
  CHECK(moebi.out() == "hi\n");
  CHECK(kate.out() == "hi\n");  // nothing more for kate (sorry, kate)

  // moebi goes away: the failure is reported on alex, which keeps running
  moebi.signal(SIGTERM);
  CHECK(moebi.process().wait() == 0);  // a clean stop
  alex.say("moebi@localhost hi");
  CHECK(eventually([&] { return alex.err().find("error: no connection to moebi@localhost") != std::string::npos; }));
  alex.say("kate@localhost still here");
  CHECK(eventually([&] { return kate.out() == "hi\nstill here\n"; }));
  CHECK(alex.out() == "how are you?\nchicken?\n");  // errors never go to stdout

  for (PeerNode* n : {&alex, &kate}) {
    n->signal(SIGTERM);
    CHECK(n->process().wait() == 0);
  }
}
