#!/usr/bin/python3
"""A foreign node in Python (Debian's python3-zmq) that joins a nodus cluster as a chat peer.

It speaks nodus's wire protocol 2 (docs/PROTOCOL.md) with JSON payloads: one DEALER per node
it talks to, which carries both directions once the cookie (or CURVE) handshake is done. It
looks nodes up in the port mapper but does not register: nobody needs to reach it first. It
behaves like the lesson's `chat` node:

  * each stdin line `RECIPIENT TEXT` runs Chat.receive_message (or, for moebi@localhost,
    Chat.receive_message_for_moebi) under {Chat.TaskSupervisor, RECIPIENT} and awaits it;
  * it serves Chat.TaskSupervisor itself: a Chat.receive_message task started here by a node
    it is connected to prints its text on stdout (that is how moebi's "chicken?" arrives);
  * a line `!spawn NODE FUNCTION` spawns a function registered for remote spawn there (e.g.
    Kate.say_name) with this node as its group leader: its output prints here.

At the end of stdin it exits once every send has finished (0 if all succeeded, 1 otherwise).
Errors go to stderr as `error: no connection to moebi@localhost`.

    bridge.py --sname bridge@localhost --cookie secret
    bridge.py --sname bridge@localhost --curve-key keys/bridge/node.key --curve-allow keys/allow
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import socket
import struct
import sys
import time

import zmq
import zmq.utils.z85

VERSION = 2
HELLO, CHALLENGE, REPLY, ACCEPT, REFUSE = 0x01, 0x02, 0x03, 0x04, 0x05
SEND_PID, SEND_NAME = 0x10, 0x11
SPAWN_REQUEST, SPAWN_REPLY = 0x20, 0x21
TERM_JSON = 0x0B  # a Term field written as JSON text (docs/PROTOCOL.md, section 5)
PAYLOAD_IO, PAYLOAD_JSON = 0x02, 0x04
HELLO_FLAG_JSON = 0x01
CURVE_HANDSHAKE_KEY = b"nodus-curve"
TASK_SUPERVISOR = "Chat.TaskSupervisor"
MOEBI = "moebi@localhost"
TIMEOUT = 10.0  # seconds for a connection, a task start, a result (nodus: 10 s start, 5 s await)


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def atom(name):
    return {"$atom": name}


def tup(*elems):
    return {"$tuple": list(elems)}


def is_tuple(t, n=None, tag=None):
    if not (isinstance(t, dict) and list(t) == ["$tuple"]):
        return False
    e = t["$tuple"]
    return (n is None or len(e) == n) and (tag is None or (e and e[0] == atom(tag)))


def str8(b):
    return bytes([len(b)]) + b


def mac(label, key, nonce_c, nonce_a, connector, acceptor):
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in (str8(label), nonce_c, nonce_a, str8(connector), str8(acceptor)):
        h.update(part)
    return h.digest()


def record(frame):
    return struct.pack("<I", len(frame)) + frame


def records(msg):
    """The frames of one ZeroMQ message; stops at a truncated record."""
    pos = 0
    while pos + 4 <= len(msg):
        (n,) = struct.unpack_from("<I", msg, pos)
        if pos + 4 + n > len(msg):
            log("warning: dropped a truncated record")
            return
        yield msg[pos + 4:pos + 4 + n]
        pos += 4 + n


class Reader:
    def __init__(self, b):
        self.b, self.pos = b, 0

    def take(self, n):
        if self.pos + n > len(self.b):
            raise ValueError("truncated frame")
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def str8(self):
        return self.take(self.u8())

    def rest(self):
        return self.take(len(self.b) - self.pos)


def portmapper(port, line, keep=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(line.encode() + b"\n")
    data = b""
    while b"\n" not in data:
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    if not keep:
        s.close()
    return data.decode().strip(), s


def read_key(path):
    with open(path) as f:
        k = f.readline().strip()
    if len(k) != 40:
        raise ValueError(f"{path}: not a Z85 CURVE key (40 characters)")
    return k.encode()


class Conn:
    """Our DEALER to another node's ROUTER: both directions, once the handshake is done."""

    def __init__(self, name):
        self.name, self.dealer, self.up, self.queue = name, None, False, []
        self.nonce, self.deadline, self.error = secrets.token_bytes(16), time.monotonic() + TIMEOUT, None


class Bridge:
    def __init__(self, args):
        self.name = args.sname
        self.short = self.name.split("@")[0]
        self.pm_port = int(os.environ.get("NODUS_PORTMAPPER_PORT", "4370"))
        self.ctx = zmq.Context()
        self.curve = None
        if args.curve_key:
            secret = read_key(args.curve_key)
            allowed = {}
            paths = [args.curve_allow]
            if os.path.isdir(args.curve_allow):
                paths = [os.path.join(args.curve_allow, f) for f in sorted(os.listdir(args.curve_allow))
                         if f.endswith(".pub")]
            for p in paths:
                # a key is bound to the node names listed after it, else to the file's name
                names = [l.strip() for l in open(p).read().splitlines()[1:]
                         if l.strip() and not l.strip().startswith("#")]
                allowed.setdefault(read_key(p), set()).update(names or [os.path.basename(p)[:-4]])
            self.curve = {"secret": secret, "public": zmq.curve_public(secret), "allowed": allowed}
            self.key = CURVE_HANDSHAKE_KEY
        else:
            self.key = (args.cookie or os.environ.get("NODUS_COOKIE", "")).encode()
            if not self.key:
                raise SystemExit("error: give --cookie (or NODUS_COOKIE), or --curve-key")
        # an incarnation of our own: nothing registers us, and pids of an earlier run of this
        # bridge must not reach this one
        self.creation = secrets.randbits(31) | 1
        self.me = self.pid(1)
        self.next_id, self.next_ref = 2, 1
        self.conns = {}      # node name -> Conn
        self.calls = {}      # call ref id -> {node, tag}
        self.tasks = {}      # task tag id -> {node, deadline}
        self.spawns = {}     # spawn request id -> {node, deadline}
        self.failed = False
        log(f"bridge {self.name} up ({'CURVE' if self.curve else 'cookie'})")

    def pid(self, n):
        # serial 0 would be the null pid (nobody): nodus pids start at serial 1
        return {"$pid": {"node": self.name, "creation": self.creation, "id": n, "serial": 1}}

    def ref(self):
        self.next_ref += 1
        return {"$ref": {"node": self.name, "creation": self.creation, "id": self.next_ref}}

    # ------------------------------------------------------------------ connections

    def connect(self, node):
        c = self.conns.get(node)
        if c:
            return c
        c = self.conns[node] = Conn(node)
        host = node.split("@", 1)[1]
        try:
            answer, _ = portmapper(self.pm_port, f"LOOKUP {node.split('@')[0]}")
        except OSError as e:
            answer = f"unreachable port mapper ({e})"
        parts = answer.split()
        if len(parts) < 3 or parts[0] != "PORT":
            c.error = f"no connection to {node}"
            return c
        c.dealer = self.ctx.socket(zmq.DEALER)
        c.dealer.linger = 0
        c.dealer.reconnect_ivl = -1  # a lost connection is lost: the next send makes a new one
        if self.curve:
            key = parts[3].encode() if len(parts) > 3 else None
            names = self.curve["allowed"].get(key, set()) if key else set()
            if node not in names and node.split("@")[0] not in names:
                c.error = f"no connection to {node} (its CURVE key is missing, not allowed, or not bound to its name)"
                return c
            c.dealer.curve_serverkey = key
            c.dealer.curve_publickey = self.curve["public"]
            c.dealer.curve_secretkey = self.curve["secret"]
        addr = "127.0.0.1" if host == "localhost" else host
        c.dealer.connect(f"tcp://{addr}:{parts[1]}")
        hello = bytes([VERSION, HELLO]) + str8(self.name.encode()) + struct.pack("<I", self.creation) + c.nonce
        c.dealer.send(record(hello + bytes([HELLO_FLAG_JSON])))
        return c

    def on_dealer(self, c):
        parts = c.dealer.recv_multipart()
        if len(parts) != 1:  # one message is all nodus sends
            log(f"warning: dropped a message of {len(parts)} parts from {c.name}")
            return
        for frame in records(parts[0]):
            try:
                self.on_frame(c, frame)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                log(f"warning: dropped a frame from {c.name}: {e}")

    def on_frame(self, c, frame):
        r = Reader(frame)
        if r.u8() != VERSION:
            raise ValueError("unknown version")
        op = r.u8()
        if op == CHALLENGE and not c.up:
            their = r.str8()
            r.u32()
            nonce_a, mac_a = r.take(16), r.take(32)
            ok = their == c.name.encode() and hmac.compare_digest(
                mac_a, mac(b"nodus-accept", self.key, c.nonce, nonce_a, self.name.encode(), their))
            reply = mac(b"nodus-connect", self.key, c.nonce, nonce_a, self.name.encode(), their)
            c.dealer.send(record(bytes([VERSION, REPLY]) + reply))
            if not ok:
                c.error = f"no connection to {c.name} (cookie mismatch)"
        elif op == ACCEPT and not c.error:
            c.up = True
            for f in c.queue:
                c.dealer.send(record(f))
            c.queue = []
        elif op == REFUSE:
            r.u8()  # the reason's code
            c.error = f"no connection to {c.name} ({r.str8().decode(errors='replace')})"
        elif not c.up:
            raise ValueError("frame before the handshake ended")
        elif op in (SEND_PID, SEND_NAME):
            if op == SEND_PID:
                r.take(12)
                to = None
            else:
                to = r.str8().decode()
            enc = r.u8()
            if enc == PAYLOAD_IO:
                sys.stdout.write(r.take(r.u32()).decode(errors="replace"))  # io::puts text ends in \n
                sys.stdout.flush()
            elif enc == PAYLOAD_JSON:
                self.on_message(to, json.loads(r.rest()))
            else:
                log(f"warning: payload encoding {enc} from {c.name} is not JSON; dropped")
        elif op == SPAWN_REPLY:
            request, status = struct.unpack("<QB", r.take(9))
            spawn = self.spawns.pop(request, None)
            if spawn is None:
                return
            if status == 0:
                pid_id, serial = struct.unpack("<II", r.take(8))
                log(f"spawned <{spawn['node']}.{pid_id}.{serial - 1}>")
            else:
                self.fail(r.str8().decode(errors="replace"))
        # links, monitors, exits, DOWNs (their Terms as JSON Terms, 0x0B): this bridge needs none of them

    def send_frame(self, node, frame):
        c = self.connect(node)
        if c.error:
            return
        if c.up:
            c.dealer.send(record(frame))
        else:
            c.queue.append(frame)

    def send_json(self, to, term):
        """`to`: a pid term, or (registered name, node)."""
        body = json.dumps(term, separators=(",", ":")).encode()
        if isinstance(to, tuple):
            name, node = to
            self.send_frame(node, bytes([VERSION, SEND_NAME]) + str8(name.encode()) + bytes([PAYLOAD_JSON]) + body)
        else:
            p = to["$pid"]
            head = bytes([VERSION, SEND_PID]) + struct.pack("<III", p["creation"], p["id"], p["serial"])
            self.send_frame(p["node"], head + bytes([PAYLOAD_JSON]) + body)

    # ------------------------------------------------------------------ the chat protocol

    def send_message(self, recipient, text):
        """Task.Supervisor.async({Chat.TaskSupervisor, recipient}, ...) |> Task.await()"""
        if recipient == MOEBI:
            function, args = "Chat.receive_message_for_moebi", [text, atom(self.name)]
        else:
            function, args = "Chat.receive_message", [text]
        call, tag = self.ref(), self.ref()
        start = tup(atom("start_task"), self.me, tag, False, function, args)
        self.calls[call["$ref"]["id"]] = {"node": recipient, "tag": tag["$ref"]["id"],
                                          "deadline": time.monotonic() + TIMEOUT}
        self.send_json((TASK_SUPERVISOR, recipient), tup(atom("$gen_call"), tup(self.me, call), start))

    def spawn(self, node, function):
        """Node.spawn(node, function, []) with this node's pid as group leader."""
        request = self.ref()["$ref"]["id"]  # any number unique among our pending requests
        me = self.me["$pid"]
        leader = json.dumps(self.me).encode()
        frame = (bytes([VERSION, SPAWN_REQUEST]) + struct.pack("<QIIB", request, me["id"], me["serial"], 0)
                 + bytes([TERM_JSON]) + struct.pack("<I", len(leader)) + leader
                 + str8(function.encode()) + bytes([TERM_JSON]) + struct.pack("<I", 2) + b"[]")
        self.spawns[request] = {"node": node, "deadline": time.monotonic() + TIMEOUT}
        self.send_frame(node, frame)

    def on_message(self, to, m):
        if to == TASK_SUPERVISOR and is_tuple(m, 3, "$gen_call"):
            return self.serve_task(m)
        if is_tuple(m, 2) and isinstance(m["$tuple"][0], dict) and "$ref" in m["$tuple"][0]:
            ref = m["$tuple"][0]["$ref"]
            if ref["node"] == self.name and ref["id"] in self.calls:  # the supervisor's answer
                call = self.calls.pop(ref["id"])
                answer = m["$tuple"][1]
                if is_tuple(answer, 2, "ok"):
                    self.tasks[call["tag"]] = {"node": call["node"], "deadline": time.monotonic() + TIMEOUT}
                else:
                    self.fail(f"cannot start the task on {call['node']}: {json.dumps(answer)}")
                return
            if ref["node"] == self.name and ref["id"] in self.tasks:  # the task's result
                del self.tasks[ref["id"]]
                return
        log(f"unexpected message: {json.dumps(m)}")

    def serve_task(self, m):
        """Our own Chat.TaskSupervisor: runs Chat.receive_message (prints the text)."""
        frm, req = m["$tuple"][1]["$tuple"], m["$tuple"][2]
        if not (is_tuple(req, 6, "start_task")):
            return self.send_json(frm[0], tup(frm[1], tup(atom("error"), atom("badarg"))))
        _, owner, tag, _link, function, args = req["$tuple"]
        if function != "Chat.receive_message" or not args or not isinstance(args[0], str):
            return self.send_json(frm[0], tup(frm[1], tup(atom("error"), tup(atom("undef"), function))))
        task = self.pid(self.next_id)
        self.next_id += 1
        self.send_json(frm[0], tup(frm[1], tup(atom("ok"), task)))
        print(args[0], flush=True)
        self.send_json(owner, tup(tag, atom("ok")))

    def fail(self, why):
        log(f"error: {why}")
        self.failed = True

    # ------------------------------------------------------------------ main loop

    def run(self, lines):
        stdin_open, pending = True, b""
        while True:
            now = time.monotonic()
            for c in list(self.conns.values()):
                if not c.up and not c.error and now > c.deadline:
                    c.error = f"no connection to {c.name}"
            for table in (self.calls, self.tasks, self.spawns):
                for k, v in list(table.items()):
                    conn = self.conns.get(v["node"])
                    if conn is not None and conn.error:
                        self.fail(conn.error)
                        del table[k]
                    elif now > v["deadline"]:
                        self.fail(f"timeout waiting for {v['node']}")
                        del table[k]
            for node, c in list(self.conns.items()):
                if c.error:  # forget it: a later send tries again
                    if c.dealer is not None:
                        c.dealer.close()
                    del self.conns[node]
            if not stdin_open and not self.calls and not self.tasks and not self.spawns:
                return 1 if self.failed else 0
            poller = zmq.Poller()
            for c in self.conns.values():
                if c.dealer is not None:
                    poller.register(c.dealer, zmq.POLLIN)
            if stdin_open:
                poller.register(lines.fileno(), zmq.POLLIN)
            for sock, _ in poller.poll(100):
                if sock == lines.fileno():
                    chunk = os.read(lines.fileno(), 65536)
                    if not chunk:
                        stdin_open = False
                        pending, chunk = pending + b"\n", b""
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        recipient, _, text = line.decode(errors="replace").strip().partition(" ")
                        if recipient == "!spawn" and len(text.split()) == 2:
                            self.spawn(*text.split())
                        elif recipient and text:
                            self.send_message(recipient, text)
                        elif recipient:
                            self.fail(f"expected RECIPIENT TEXT, got {line.decode(errors='replace')!r}")
                else:
                    for c in list(self.conns.values()):
                        if c.dealer is sock:
                            self.on_dealer(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sname", required=True, help="this node's name, name@host")
    ap.add_argument("--cookie", help="shared secret (default: $NODUS_COOKIE)")
    ap.add_argument("--curve-key", help="CURVE mode: this node's secret key file (nodus keygen)")
    ap.add_argument("--curve-allow", help="CURVE mode: a .pub file or a directory of them")
    args = ap.parse_args()
    if bool(args.curve_key) != bool(args.curve_allow):
        ap.error("--curve-key and --curve-allow go together")
    if "@" not in args.sname:
        ap.error("--sname must be name@host")
    bridge = Bridge(args)
    sys.exit(bridge.run(sys.stdin))


if __name__ == "__main__":
    main()
