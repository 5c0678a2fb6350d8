#!/usr/bin/python3
"""What a foreign node written from docs/PROTOCOL.md sees of kate (run by chat_test.cpp):
  - a HELLO with a short name gets a REFUSE that says why;
  - start_task of a function kate does not have is answered at once with {error, {undef, _}};
  - a task that fails on an argument of the wrong kind reaches its owner as a DOWN whose Term
    fields are JSON Terms, its reason naming the function, the argument and both kinds;
  - a message kate queued for a JSON node before their handshake (it called us) arrives as JSON.
usage: protocol_probe.py KATE_NODE   (NODUS_PORTMAPPER_PORT, NODUS_COOKIE)"""
import hashlib, hmac, json, os, secrets, socket, struct, sys, zmq

VERSION = 2
HELLO, CHALLENGE, REPLY, ACCEPT, REFUSE = 0x01, 0x02, 0x03, 0x04, 0x05
SEND_PID, SEND_NAME, SPAWN_REQUEST, SPAWN_REPLY, DOWN = 0x10, 0x11, 0x20, 0x21, 0x35
TERM_JSON, PAYLOAD_TERM, PAYLOAD_JSON = 0x0B, 0x01, 0x04
cookie = os.environ["NODUS_COOKIE"].encode()
pm_port = int(os.environ["NODUS_PORTMAPPER_PORT"])
kate = sys.argv[1]
ctx = zmq.Context()
me_name, acc_name = "probe@localhost", "jsonacc@localhost"
creation = secrets.randbits(31) | 1


def expect(cond, what):
    if not cond:
        sys.exit("FAILED: " + what)
    print("ok:", what, flush=True)


def str8(b):
    return bytes([len(b)]) + b


def record(f):
    return struct.pack("<I", len(f)) + f


def records(msg):
    pos = 0
    while pos + 4 <= len(msg):
        (n,) = struct.unpack_from("<I", msg, pos)
        yield msg[pos + 4:pos + 4 + n]
        pos += 4 + n


def mac(label, nc, na, connector, acceptor):
    h = hmac.new(cookie, digestmod=hashlib.sha256)
    for part in (str8(label), nc, na, str8(connector), str8(acceptor)):
        h.update(part)
    return h.digest()


class R:
    def __init__(self, b):
        self.b, self.pos = b, 0

    def take(self, n):
        v = self.b[self.pos:self.pos + n]
        if len(v) != n:
            raise ValueError("truncated")
        self.pos += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def str8(self):
        return self.take(self.u8())

    def json_term(self):
        tag = self.u8()
        if tag != TERM_JSON:
            raise ValueError("a Term field with tag %#x, not a JSON Term" % tag)
        return json.loads(self.take(self.u32()))


def portmapper(line, keep=False):
    s = socket.create_connection(("127.0.0.1", pm_port), timeout=5)
    s.sendall(line.encode() + b"\n")
    data = b""
    while b"\n" not in data:
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    if not keep:
        s.close()
    return data.decode().split(), s


def pid(node, n):
    return {"$pid": {"node": node, "creation": creation, "id": n, "serial": 1}}


next_ref = [0]


def ref():
    next_ref[0] += 1
    return {"$ref": {"node": me_name, "creation": creation, "id": next_ref[0]}}


def frames_of(sock, timeout=10000):
    """The next message's records (a ROUTER's: routing id first)."""
    if not sock.poll(timeout):
        return None, []
    parts = sock.recv_multipart()
    return (parts[0] if len(parts) == 2 else None), list(records(parts[-1]))


answer, _ = portmapper("LOOKUP " + kate.split("@")[0])
expect(answer[0] == "PORT", "kate is in the port mapper: %s" % answer)
kate_ep = "tcp://127.0.0.1:" + answer[1]


def dealer():
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.connect(kate_ep)
    return d


def hello(d, name):
    d.send(record(bytes([VERSION, HELLO]) + str8(name) + struct.pack("<I", creation) + secrets.token_bytes(16) +
                  bytes([1])))


# a short name: REFUSE, with the reason
d = dealer()
hello(d, b"probe")
_, fs = frames_of(d, 5000)
expect(fs and fs[0][1] == REFUSE, "a HELLO with a short name is refused (not left to time out)")
reason = R(fs[0][2:])
reason.u8()
expect(b"not a full node name" in reason.str8(), "the REFUSE says it is not a full node name")
d.close()

# connect as probe@localhost, asking for JSON
d = dealer()
nonce = secrets.token_bytes(16)
d.send(record(bytes([VERSION, HELLO]) + str8(me_name.encode()) + struct.pack("<I", creation) + nonce + bytes([1])))
_, fs = frames_of(d)
r = R(fs[0])
expect(r.u8() == VERSION and r.u8() == CHALLENGE, "kate challenges")
their = r.str8()
kate_creation = r.u32()
nonce_a, mac_a = r.take(16), r.take(32)
expect(mac_a == mac(b"nodus-accept", nonce, nonce_a, me_name.encode(), their), "kate proves the cookie")
d.send(record(bytes([VERSION, REPLY]) + mac(b"nodus-connect", nonce, nonce_a, me_name.encode(), their)))
_, fs = frames_of(d)
expect(fs and fs[0][1] == ACCEPT, "kate accepts")
me = pid(me_name, 1)


def send_name(name, term):
    d.send(record(bytes([VERSION, SEND_NAME]) + str8(name.encode()) + bytes([PAYLOAD_JSON]) +
                  json.dumps(term).encode()))


held = {}  # socket -> records received but not yet asked for (one message holds several)


def next_frame(sock, want_op, timeout=10000):
    q = held.setdefault(sock, [])
    while True:
        for i, f in enumerate(q):
            if f[1] == want_op:
                return q.pop(i)
        _, fs = frames_of(sock, timeout)
        if not fs:
            return None
        q += fs


def json_payload(f):
    r = R(f)
    r.take(2)
    if f[1] == SEND_PID:
        r.take(12)
    else:
        r.str8()
    enc = r.u8()
    return enc, r.b[r.pos:]


def start_task(function, args):
    call, tag = ref(), ref()
    send_name("Chat.TaskSupervisor", {"$tuple": [{"$atom": "$gen_call"}, {"$tuple": [me, call]},
                                                 {"$tuple": [{"$atom": "start_task"}, me, tag, False, function, args]}]})
    f = next_frame(d, SEND_PID)
    expect(f is not None, "kate answers start_task of " + function)
    enc, body = json_payload(f)
    expect(enc == PAYLOAD_JSON, "the answer is JSON")
    answer = json.loads(body)["$tuple"]
    expect(answer[0] == call, "the answer carries the call's ref")
    return tag, answer[1]


_, a = start_task("No.such_function", [])
expect(a["$tuple"][0] == {"$atom": "error"} and a["$tuple"][1]["$tuple"][0] == {"$atom": "undef"},
       "start_task of an unknown function: {error, {undef, _}}: %s" % a)

tag, a = start_task("Chat.receive_message_for_moebi", ["hi", "moebi@localhost"])
expect(a["$tuple"][0] == {"$atom": "ok"}, "the task starts: %s" % a)
f = next_frame(d, DOWN)
expect(f is not None, "the task's owner gets a DOWN")
r = R(f[2:])
watcher, target, down_ref, why = r.json_term(), r.json_term(), r.json_term(), r.json_term()
expect(watcher == me and down_ref == tag, "the DOWN's Terms are JSON: watcher %s, ref %s" % (watcher, down_ref))
text = json.dumps(why)
for word in ("badarg", "Chat.receive_message_for_moebi", "argument 2", "a binary", "an atom"):
    expect(word in text, "the reason names %r: %s" % (word, text))

# a JSON acceptor: kate calls us, and what it queued before our CHALLENGE arrives as JSON
router = ctx.socket(zmq.ROUTER)
router.linger = 0
router.bind("tcp://127.0.0.1:*")
acc_port = router.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
ok, registration = portmapper("REGISTER %s %s" % (acc_name.split("@")[0], acc_port), keep=True)
expect(ok[0] == "OK", "registered %s: %s" % (acc_name, ok))
request = 77
leader = json.dumps(me).encode()
d.send(record(bytes([VERSION, SPAWN_REQUEST]) + struct.pack("<QIIB", request, 1, 1, 0) + bytes([TERM_JSON]) +
              struct.pack("<I", len(leader)) + leader + str8(b"Kate.reply_sup") + bytes([TERM_JSON]) +
              struct.pack("<I", 2) + b"[]"))
f = next_frame(d, SPAWN_REPLY)
expect(f is not None and f[10] == 0, "Kate.reply_sup spawned")
pid_id, serial = struct.unpack_from("<II", f, 11)
hi = json.dumps({"$tuple": [{"$atom": "hi"}, pid(acc_name, 5)]}).encode()
d.send(record(bytes([VERSION, SEND_PID]) + struct.pack("<III", kate_creation, pid_id, serial) + bytes([PAYLOAD_JSON]) + hi))
rid, fs = frames_of(router)
expect(fs and fs[0][1] == HELLO, "kate calls %s" % acc_name)
r = R(fs[0][2:])
expect(r.str8() == kate.encode(), "as " + kate)
r.u32()
nonce_c = r.take(16)
nonce_a = secrets.token_bytes(16)
router.send_multipart([rid, record(bytes([VERSION, CHALLENGE]) + str8(acc_name.encode()) + struct.pack("<I", creation) +
                                   nonce_a + mac(b"nodus-accept", nonce_c, nonce_a, kate.encode(), acc_name.encode()) +
                                   bytes([1]))])
f = next_frame(router, REPLY)
expect(f is not None and f[2:] == mac(b"nodus-connect", nonce_c, nonce_a, kate.encode(), acc_name.encode()),
       "kate answers our challenge")
router.send_multipart([rid, record(bytes([VERSION, ACCEPT]))])
f = next_frame(router, SEND_PID)
expect(f is not None, "kate's message comes")
enc, body = json_payload(f)
expect(enc == PAYLOAD_JSON, "the message queued before the handshake arrives as JSON (encoding %d)" % enc)
expect(json.loads(body) == {"$atom": "sup?"}, "it is 'sup?': %s" % body)
registration.close()
print("all ok", flush=True)
