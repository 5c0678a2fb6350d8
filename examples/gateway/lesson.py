#!/usr/bin/python3
"""The lesson through a nodus gateway, with one REQ socket and JSON (docs/gateway.md).
usage: lesson.py tcp://127.0.0.1:5555 [CLIENT.key SERVER.pub]   (cookie: $NODUS_COOKIE)"""
import hashlib, hmac, os, sys, zmq

s = zmq.Context().socket(zmq.REQ)
s.linger = 0
if len(sys.argv) > 3:  # CURVE: the gateway node's public key, and our key pair
    secret = open(sys.argv[2]).read().split()[0]
    s.curve_secretkey, s.curve_publickey = secret.encode(), zmq.curve_public(secret.encode())
    s.curve_serverkey = open(sys.argv[3]).read().split()[0].encode()
s.connect(sys.argv[1])

def ask(**request):
    s.send_json(request)
    reply = s.recv_json()
    if "error" in reply:
        sys.exit("error: " + reply["error"]["text"])
    return reply["ok"]

if len(sys.argv) <= 3:
    challenge = ask(op="hello")["challenge"]
    cookie = os.environ["NODUS_COOKIE"].encode()
    me = ask(op="hello", proof=hmac.new(cookie, bytes.fromhex(challenge), hashlib.sha256).hexdigest())
else:
    me = ask(op="hello")
# moebi answers "chicken?" through our node's Chat.TaskSupervisor: we serve Chat.receive_message
ask(op="serve", functions=["Chat.receive_message"], supervisor="Chat.TaskSupervisor", result={"$atom": "ok"})
sup = lambda node: {"name": "Chat.TaskSupervisor", "node": node}
ask(op="task", supervisor=sup("kate@localhost"), function="Chat.receive_message", args=["hi"])
ask(op="task", supervisor=sup("moebi@localhost"), function="Chat.receive_message_for_moebi",
    args=["hi", me["node"]])
print(ask(op="recv")["call"]["args"][0])
ask(op="spawn", node="kate@localhost", function="Kate.say_name")
print(ask(op="recv")["io"], end="")
