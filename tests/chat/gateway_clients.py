#!/usr/bin/python3
"""Misbehaving and departing gateway clients (run by chat_test.cpp): each refusal or limit
gets an error reply or a closed connection, and the gateway keeps serving the next client.
usage: gateway_clients.py tcp://127.0.0.1:PORT MAX_REQUEST MAX_QUEUE MAX_CLIENTS   (cookie: $NODUS_COOKIE)"""
import hashlib, hmac, json, os, signal, subprocess, sys, time, zmq

ctx = zmq.Context()
endpoint, max_request, max_queue, max_clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def client(kind=zmq.REQ):
    s = ctx.socket(kind)
    s.linger = 0
    s.connect(endpoint)
    return s


def ask(s, req, timeout=None):
    if timeout is None:  # (a `recv` waits on the gateway's side as long as it says)
        timeout = 5000 + (req.get("timeout", 0) if isinstance(req, dict) else 0)
    s.send(req if isinstance(req, bytes) else json.dumps(req).encode())
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
fresh = client()
r = ask(fresh, {"op": "hello"})
expect(r and "challenge" in r["ok"], "the gateway still serves new clients")
fresh.close()


def until(what, cond, seconds=20):
    """Asks cond() until it holds, each time after a `recv` of 50 ms on the observer (nothing
    is pushed to it: that is the pause between two looks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        ask(observer, {"op": "recv", "timeout": 50})
    sys.exit("FAILED (timed out): " + what)


observer = client()
hello(observer)


def stats():
    return ask(observer, {"op": "stats"})["ok"]


def sent_to(name):
    return ask(observer, {"op": "send", "to": name, "message": "ping"})


base = stats()
expect(base["clients"] >= 1 and base["processes"] > 0, "stats: " + str(base))

# a client that goes in the middle of a task: its task (here a served function held by its
# server) and the process waiting for it end with it; the node is back where it was
server = client()
hello(server)
expect("ok" in ask(server, {"op": "serve", "functions": ["Gw.hold"], "supervisor": "Gw.Sup", "timeout": 60000}),
       "serve Gw.hold under Gw.Sup")
base = stats()
d = client(zmq.DEALER)
d.send_multipart([b"", b'{"op":"hello"}'])
ch = json.loads(d.recv_multipart()[-1])["ok"]["challenge"]
proof = hmac.new(os.environ["NODUS_COOKIE"].encode(), bytes.fromhex(ch), hashlib.sha256).hexdigest()
d.send_multipart([b"", ('{"op":"hello","proof":"%s"}' % proof).encode()])
expect("ok" in json.loads(d.recv_multipart()[-1]), "a DEALER client is in")
d.send_multipart([b"", b'{"op":"task","id":1,"supervisor":{"name":"Gw.Sup","node":"gw@localhost"},'
                  b'"function":"Gw.hold","args":[1],"timeout":60000}'])
pushed = ask(server, {"op": "recv", "timeout": 10000})
expect(pushed and pushed["ok"]["call"]["function"] == "Gw.hold", "the task is running: " + str(pushed))
during = stats()
expect(during["processes"] > base["processes"], "the task and its waiter are processes: %s > %s" % (during, base))
d.close()
after = until("the client's task and its waiter end with it",
              lambda: (lambda x: x if x["processes"] <= base["processes"] else None)(stats()))
expect(after["processes"] <= base["processes"], "the node is back to %d processes" % base["processes"])
r = ask(server, {"op": "result", "call": pushed["ok"]["call"]["id"], "value": 1})
expect(r is not None, "the server's late answer is taken without harm: " + str(r))

# a client that goes while it holds a name: the name goes with it
reg = client()
hello(reg)
expect("ok" in ask(reg, {"op": "register", "name": "gw_reg"}), "register gw_reg")
expect("ok" in sent_to("gw_reg"), "gw_reg takes messages")
m = ask(observer, {"op": "monitor", "to": "gw_reg"})
expect("ok" in m, "monitor gw_reg")
reg.close()
down = ask(observer, {"op": "recv", "timeout": 10000})
expect(down and down["ok"]["down"]["ref"] == m["ok"], "gw_reg's process ends with its client: " + str(down))
expect(sent_to("gw_reg")["error"]["reason"] == {"$atom": "noproc"}, "a send to gw_reg is noproc now")

# a client that does not read its pushes: past the queue's limit its name is dropped (logged),
# pushes are counted, and it is told how many it missed once it reads again
slow = client()
hello(slow)
expect("ok" in ask(slow, {"op": "register", "name": "gw_slow"}), "register gw_slow")
delivered = 0
for i in range(max_queue * 20):
    r = sent_to("gw_slow")
    if "error" in r:
        break
    delivered += 1
expect(delivered >= max_queue and "error" in r and r["error"]["reason"] == {"$atom": "noproc"},
       "the name is dropped once %d pushes wait (%d sent)" % (max_queue, delivered))
got, notice = 0, None
while notice is None:
    p = ask(slow, {"op": "recv", "timeout": 10000})
    expect(p is not None and p["ok"] is not None, "a queued push or the overflow notice: " + str(p))
    if "overflow" in p["ok"]:
        notice = p["ok"]["overflow"]
    else:
        got += 1
expect(got == max_queue, "the queue kept %d pushes (got %d)" % (max_queue, got))
expect(notice["dropped"] == delivered - max_queue, "the notice counts the %d dropped: %s" % (delivered - max_queue, notice))
expect("ok" in ask(slow, {"op": "register", "name": "gw_slow"}), "the client may register again")

# a client that stops answering heartbeats (its process stopped) is dropped with its name
hb = subprocess.Popen([sys.executable, "-c", """
import hashlib, hmac, os, sys, zmq
s = zmq.Context().socket(zmq.REQ); s.connect(sys.argv[1])
s.send_json({"op": "hello"}); ch = s.recv_json()["ok"]["challenge"]
s.send_json({"op": "hello", "proof": hmac.new(os.environ["NODUS_COOKIE"].encode(), bytes.fromhex(ch), hashlib.sha256).hexdigest()}); s.recv_json()
s.send_json({"op": "register", "name": "gw_hb"}); print(s.recv_json(), flush=True)
sys.stdin.read()
""", endpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
try:
    expect("ok" in hb.stdout.readline().decode(), "a client registered gw_hb")
    expect("ok" in sent_to("gw_hb"), "gw_hb takes messages")
    m = ask(observer, {"op": "monitor", "to": "gw_hb"})
    os.kill(hb.pid, signal.SIGSTOP)
    down = ask(observer, {"op": "recv", "timeout": 20000})
    expect(down and down["ok"]["down"]["ref"] == m["ok"], "a stopped client is dropped at the heartbeat limit: " + str(down))
    expect(sent_to("gw_hb")["error"]["reason"] == {"$atom": "noproc"}, "gw_hb went with its silent client")
finally:
    os.kill(hb.pid, signal.SIGKILL)
    hb.wait()


# the client limit: past max_clients a new connection is closed as it comes (logged), and the
# clients in keep being served; one that leaves makes room
# (in: the observer, the Gw.hold server, the slow reader and the served call's caller)
until("only the four clients still in are left", lambda: stats()["clients"] == 4)
extra = []
while stats()["clients"] < max_clients:
    c = client()
    expect("ok" in hello(c), "client %d of %d is in" % (stats()["clients"], max_clients))
    extra.append(c)
late = client()
expect(ask(late, {"op": "hello"}, timeout=2000) is None, "one more than max_clients is closed")
late.close()
expect(stats()["clients"] == max_clients, "the others are still served")
extra.pop().close()
until("a client that left makes room", lambda: stats()["clients"] < max_clients)
c = client()
expect("ok" in hello(c), "a new client gets in again")
