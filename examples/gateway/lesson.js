#!/usr/bin/env node
// The lesson through a nodus gateway, with one zeromq.js (v6) Request socket and JSON (docs/gateway.md).
// usage: lesson.js tcp://127.0.0.1:5555 [CLIENT.key CLIENT.pub SERVER.pub]   (cookie: $NODUS_COOKIE)
const zmq = require("zeromq"), crypto = require("crypto"), fs = require("fs");
const [endpoint, key, pub, server] = process.argv.slice(2);
const word = (file) => fs.readFileSync(file, "utf8").split(/\s/)[0];
const s = new zmq.Request({ linger: 0 });
if (server) Object.assign(s, { curveSecretKey: word(key), curvePublicKey: word(pub), curveServerKey: word(server) });
s.connect(endpoint);

async function ask(request) {
  await s.send(JSON.stringify(request));
  const reply = JSON.parse((await s.receive())[0].toString());
  if (reply.error) { console.error("error: " + reply.error.text); process.exit(1); }
  return reply.ok;
}

(async () => {
  let me = await ask({ op: "hello" });
  if (!server) {
    const proof = crypto.createHmac("sha256", process.env.NODUS_COOKIE).update(Buffer.from(me.challenge, "hex")).digest("hex");
    me = await ask({ op: "hello", proof });
  }
  // moebi answers "chicken?" through our node's Chat.TaskSupervisor: we serve Chat.receive_message
  await ask({ op: "serve", functions: ["Chat.receive_message"], supervisor: "Chat.TaskSupervisor", result: { $atom: "ok" } });
  const sup = (node) => ({ name: "Chat.TaskSupervisor", node });
  await ask({ op: "task", supervisor: sup("kate@localhost"), function: "Chat.receive_message", args: ["hi"] });
  await ask({ op: "task", supervisor: sup("moebi@localhost"), function: "Chat.receive_message_for_moebi", args: ["hi", me.node] });
  console.log((await ask({ op: "recv" })).call.args[0]);
  await ask({ op: "spawn", node: "kate@localhost", function: "Kate.say_name" });
  process.stdout.write((await ask({ op: "recv" })).io);
  s.close();
})();
