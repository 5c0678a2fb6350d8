#!/usr/bin/python3
"""Misbehaving and departing gateway clients (run by chat_test.cpp): each refusal or limit
gets an error reply or a closed connection, and the gateway keeps serving the next client.
usage: gateway_clients.py tcp://127.0.0.1:PORT MAX_REQUEST   (cookie: $NODUS_COOKIE)"""
import hashlib, hmac, os, sys, zmq

ctx = zmq.Context()
endpoint, max_request = sys.argv[1], int(sys.argv[2])


def client(kind=zmq.REQ):
    s = ctx.socket(kind)
    s.linger = 0
    s.connect(endpoint)
    return s


def ask(s, req, timeout=5000):
    s.send(req if isinstance(req, bytes) else __import__("json").dumps(req).encode())
    if not s.poll(timeout):
        return None  # no reply: the gateway closed the connection
    return s.recv_json()


def expect(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)
    print("ok:", what, flush=True)


def hello(s):
    ch = ask(s, {"op": "hello"})["ok"]["challenge"]
    proof = hmac.new(os.environ["NODUS_COOKIE"].encode(), bytes.fromhex(ch), hashlib.sha256).hexdigest()
    return ask(s, {"op": "hello", "proof": proof})


r = ask(client(), {"op": "send", "to": "user", "message": "x"})
expect(r and r["error"]["reason"] == {"$atom": "unauthenticated"}, "a request before hello is refused")
s = client()
ask(s, {"op": "hello"})
r = ask(s, {"op": "hello", "proof": "00" * 32})
expect(r and r["error"]["reason"] == {"$atom": "unauthenticated"} and "wrong cookie" in r["error"]["text"],
       "a wrong cookie proof is refused")
r = ask(client(), b"\xff not json {")
expect(r and "malformed JSON" in r["error"]["text"], "garbage before hello gets an error")

s = client()
expect("ok" in hello(s), "a right proof is accepted")
r = ask(s, {"op": "frobnicate", "id": 7})
expect(r and r["id"] == 7 and "unknown op" in r["error"]["text"], "an unknown op gets an error, with its id")
r = ask(s, b"[1, 2")
expect(r and "malformed JSON" in r["error"]["text"], "garbage after hello gets an error, the client stays")
r = ask(s, {"op": "task", "supervisor": {"name": "Chat.TaskSupervisor", "node": "kate@localhost"},
            "function": "No.such_function", "args": []})
expect(r and "error" in r, "a task of an unknown function gets an error: " + str(r))
r = ask(s, {"op": "task", "supervisor": {"name": "Chat.TaskSupervisor", "node": "nobody@localhost"},
            "function": "Chat.receive_message", "args": ["x"], "timeout": 3000})
expect(r and "error" in r and "nobody@localhost" in r["error"]["text"], "a task on an unknown node: " + str(r))
r = ask(s, {"op": "send", "to": "user", "message": "x" * (max_request + 10)}, timeout=2000)
expect(r is None, "a request over the limit closes the client")

# a client that serves a function and goes away: the caller gets an error, not a hang
d = client(zmq.DEALER)
d.send(b"")  # (a DEALER frames as it likes: here no envelope at all)
d.close()
s = client()
hello(s)
r = ask(s, {"op": "serve", "functions": ["Gw.answer"], "timeout": 20000})
expect(r and r.get("ok") == {"$atom": "ok"}, "serve")
t = client()
hello(t)
t.send_json({"op": "spawn", "function": "Gw.answer", "args": [1], "link": True})
r = t.recv_json()
expect("ok" in r, "spawn of a served function: " + str(r))
r = ask(t, {"op": "monitor", "to": r["ok"]})
expect("ok" in r, "monitor the served call's process")
pushed = ask(s, {"op": "recv"})
expect(pushed and pushed["ok"]["call"]["function"] == "Gw.answer", "the served call is pushed: " + str(pushed))
s.close()  # the server goes away with the call unanswered
down = ask(t, {"op": "recv", "timeout": 15000})
expect(down and ("down" in down["ok"] or "exit" in down["ok"]) and "gateway_client_gone" in str(down),
       "the served call's process ends with gateway_client_gone: " + str(down))
r = ask(client(), {"op": "hello"})
expect(r and "challenge" in r["ok"], "the gateway still serves new clients")
