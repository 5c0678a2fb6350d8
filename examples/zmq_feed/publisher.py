#!/usr/bin/python3
"""A price feed: a pyzmq PUB that binds ENDPOINT (a * port: any; it prints "bound ENDPOINT") and,
every 10 ms until stdin closes, publishes "tick" (noise nobody subscribes to) and
"price ACME VALUE SEQ" (SEQ = 1, 2, ...).
usage: publisher.py ENDPOINT"""
import random, select, sys, zmq

s = zmq.Context().socket(zmq.PUB)
s.linger = 0
s.bind(sys.argv[1])
print("bound", s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
seq, value = 0, 100.0
while not select.select([sys.stdin], [], [], 0.01)[0]:  # (the feed's pace; stdin's end stops it)
    seq += 1
    value = round(value + random.uniform(-1, 1), 2)
    s.send_string("tick")
    s.send_string("price ACME %.2f %d" % (value, seq))
