#!/usr/bin/python3
"""The pyzmq side of the ZeroMQ port tests (port_test.cpp). Each mode prints one result line.
  push ENDPOINT N                  connect a PUSH, send ["seq", "1".."N"], print "sent N", stay connected until a
                                   line on stdin (libzmq drops what a PULL has not read yet from a peer that
                                   disconnects: pyzmq alone, a PULL reading after its PUSH left, lost 3 messages in 2
                                   of 30 runs)
  pull_bind ENDPOINT N             the same with a PULL that binds ENDPOINT (it prints "bound" first)
  shapes ENDPOINT N                connect a PUSH, send N messages of shape(i) (1 to 5 frames of 0 to ~1,000 bytes),
                                   print "sent N", stay connected until a line on stdin
  pull ENDPOINT N                  connect a PULL, take N messages ["out", "1".."N", padding...], print "got N in order"
  req ENDPOINT N                   connect a REQ, N round trips "q1" -> expect "a:q1", print "req ok N"
  dealer ENDPOINT ID N             connect a DEALER with routing id ID, N round trips, print "dealer ID ok N"
  flood ENDPOINT SIZE              connect a PUSH (SNDHWM 10), send SIZE-byte messages without blocking until
                                   the socket refuses for 1 s, print "stopped after K"; then wait for "go" on
                                   stdin and send one more (blocking), print "sent one more", stay connected
                                   until another line on stdin
  sub ENDPOINT                     connect a SUB (all), print each message until "end"
  pair ENDPOINT N                  connect a PAIR, N round trips "p1" -> expect "a:p1", print "pair ok N"
  curve_req ENDPOINT SERVER_PUB SECRET N
                                   a CURVE REQ client (its key pair from SECRET) of the server whose public key is
                                   SERVER_PUB; N round trips as req; "refused" when the server refuses its key
  curve_rep ENDPOINT SECRET        bind a CURVE server REP at ENDPOINT (no ZAP: any client key), print "bound EP", answer
                                   "a:" + each request until a line on stdin
  pub ENDPOINT                     bind a PUB at ENDPOINT (a * port: any), print "bound ENDPOINT"; publish "tick" and "price N" (N = 1, 2, ...)
                                   every 10 ms until a line on stdin, then "end"; print "published N"
"""
import sys, time, zmq

ctx = zmq.Context()
mode, ep = sys.argv[1], sys.argv[2]


def sock(kind, **opts):
    s = ctx.socket(kind)
    s.linger = 0
    for k, v in opts.items():
        setattr(s, k, v)
    s.connect(ep)
    return s


def round_trips(s, prefix, n, label):
    """n requests PREFIX0.. each answered "a:" + it; prints "LABEL ok N" or exits 1."""
    for i in range(n):
        q = prefix + b"%d" % i
        s.send(q)
        if not s.poll(20000) or s.recv() != b"a:" + q:
            print(label, "failed at", i, flush=True)
            sys.exit(1)
    print(label, "ok", n, flush=True)


if mode == "push":
    s = sock(zmq.PUSH)
    n = int(sys.argv[3])
    for i in range(1, n + 1):
        s.send_multipart([b"seq", str(i).encode()])
    print("sent", n, flush=True)
    sys.stdin.readline()
    s.close()
elif mode == "shapes":
    s = sock(zmq.PUSH)
    n = int(sys.argv[3])
    for i in range(1, n + 1):
        # as port_test.cpp's shape(): frame j of message i
        s.send_multipart([(b"%d:%d;" % (i, j)) * ((i * 7 + j * 13) % 97) for j in range(i % 5 + 1)])
    print("sent", n, flush=True)
    sys.stdin.readline()
    s.close()
elif mode in ("pull", "pull_bind"):
    if mode == "pull":
        s = sock(zmq.PULL)
    else:
        s = ctx.socket(zmq.PULL)
        s.bind(ep)
        print("bound", flush=True)
    n, bad = int(sys.argv[3]), 0
    for i in range(1, n + 1):
        if not s.poll(20000):
            print("timed out after", i - 1, flush=True)
            sys.exit(1)
        parts = s.recv_multipart()
        if parts[:2] != [b"out", str(i).encode()]:  # (a third frame: padding)
            bad += 1
    print("got %d in order" % n if bad == 0 else "got %d, %d out of place" % (n, bad), flush=True)
elif mode == "req":
    round_trips(sock(zmq.REQ), b"q", int(sys.argv[3]), "req")
elif mode == "pair":
    round_trips(sock(zmq.PAIR), b"p", int(sys.argv[3]), "pair")
elif mode == "curve_req":
    server_pub, secret, n = sys.argv[3].encode(), sys.argv[4].encode(), int(sys.argv[5])
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.curve_serverkey, s.curve_secretkey, s.curve_publickey = server_pub, secret, zmq.curve_public(secret)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    s.connect(ep)
    if not mon.poll(20000):
        print("no handshake", flush=True)
        sys.exit(1)
    from zmq.utils.monitor import recv_monitor_message
    if recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        print("refused", flush=True)
        sys.exit(0)
    round_trips(s, b"q", n, "req")
elif mode == "curve_rep":
    secret = sys.argv[3].encode()
    s = ctx.socket(zmq.REP)
    s.linger = 0
    s.curve_server, s.curve_secretkey = True, secret
    s.bind(ep)
    print("bound", s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
    import select
    while True:
        if s.poll(10):
            s.send(b"a:" + s.recv())
        if select.select([sys.stdin], [], [], 0)[0]:
            break
elif mode == "dealer":
    ident, n = sys.argv[3].encode(), int(sys.argv[4])
    s = sock(zmq.DEALER, routing_id=ident)
    for i in range(n):
        s.send_multipart([b"", b"%s-%d" % (ident, i)])
        if not s.poll(20000) or s.recv_multipart() != [b"", b"a:%s-%d" % (ident, i)]:
            print("dealer failed at", i, flush=True)
            sys.exit(1)
    print("dealer %s ok %d" % (ident.decode(), n), flush=True)
elif mode == "flood":
    s = sock(zmq.PUSH, sndhwm=10)
    body = b"x" * int(sys.argv[3])
    k, last = 0, time.monotonic()
    while time.monotonic() - last < 1.0:  # the peer's HWM, not this loop, decides when it stops
        try:
            s.send(body, zmq.NOBLOCK)
            k += 1
            last = time.monotonic()
        except zmq.Again:
            s.poll(100, zmq.POLLOUT)
    print("stopped after", k, flush=True)
    sys.stdin.readline()
    s.send(body)
    print("sent one more", flush=True)
    sys.stdin.readline()  # (connected until the test has them all: see push)
    s.close()
elif mode == "sub":
    s = sock(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    while True:
        if not s.poll(20000):
            print("sub timed out", flush=True)
            sys.exit(1)
        m = s.recv()
        print(m.decode(), flush=True)
        if m == b"end":
            break
elif mode == "pub":
    import select
    s = ctx.socket(zmq.PUB)
    s.linger = 1000
    s.bind(ep)
    print("bound", s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
    n = 0
    while not select.select([sys.stdin], [], [], 0.01)[0]:  # (the publishing pace; stdin ends it)
        n += 1
        s.send(b"tick")
        s.send(b"price %d" % n)
    s.send(b"end")
    s.close()
    print("published", n, flush=True)
else:
    sys.exit("unknown mode " + mode)
