#!/usr/bin/python3
"""The jobs: a pyzmq PUSH that binds ENDPOINT (a * port: any; it prints "bound ENDPOINT"),
sends "1".."N" and then "end", and stays connected until stdin closes (a PULL loses what it
has not read yet from a peer that leaves).
usage: ventilator.py ENDPOINT N"""
import sys, zmq

s = zmq.Context().socket(zmq.PUSH)
s.bind(sys.argv[1])
print("bound", s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
for i in range(1, int(sys.argv[2]) + 1):
    s.send_string(str(i))
s.send_string("end")
sys.stdin.read()
