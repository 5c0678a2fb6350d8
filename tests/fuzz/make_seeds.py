#!/usr/bin/env python3
"""Writes the seed corpus for frame_fuzz (committed in tests/fuzz/seeds): well-formed messages
of each kind (docs/PROTOCOL.md). Usage: make_seeds.py tests/fuzz/seeds"""
import os, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def rec(frame): return struct.pack('<I', len(frame)) + frame
def str8(s): return bytes([len(s)]) + s
def term_atom(a): return b'\x04' + str8(a)
def term_int(i): return b'\x02' + struct.pack('<q', i)
def term_bin(b): return b'\x05' + struct.pack('<I', len(b)) + b
def term_tuple(*ts): return b'\x06' + struct.pack('<I', len(ts)) + b''.join(ts)
def term_pid(node, creation, i, serial): return b'\x09' + str8(node) + struct.pack('<III', creation, i, serial)
def term_ref(node, creation, a, b): return b'\x0a' + str8(node) + struct.pack('<IQ', creation, (a << 32) | b)

V = b'\x02'  # wire protocol 2
me = term_pid(b'fuzz@localhost', 7, 1, 0)
seeds = {
    'hello': rec(V + b'\x01' + str8(b'fuzz@localhost') + struct.pack('<I', 7) + b'N' * 16 + b'\x00'),
    'hello_v1': rec(b'\x01\x01' + str8(b'old@localhost') + struct.pack('<I', 7) + b'N' * 16),
    'refuse': rec(V + b'\x05' + b'\x01' + str8(b'simultaneous')),
    'reply': rec(V + b'\x03' + b'M' * 32),
    'send_name_term': rec(V + b'\x11' + str8(b'sink') + b'\x01' + term_tuple(term_atom(b'hi'), term_int(42), term_bin(b'x' * 16))),
    'send_pid_term': rec(V + b'\x10' + struct.pack('<III', 1, 1, 0) + b'\x01' + term_atom(b'hello')),
    'send_name_typed': rec(V + b'\x11' + str8(b'sink') + b'\x03' + str8(b'fuzz.Sample') + me + struct.pack('<Q', 2) + b'hi' + struct.pack('<Q', 1) + struct.pack('<q', 5) + term_int(1)),
    'send_name_json': rec(V + b'\x11' + str8(b'sink') + b'\x04' + b'{"$tuple":[{"$atom":"hi"},42,1.5,"x",[true,null],{"k":{"$map":[[1,2]]}},{"$pid":{"node":"a@b","creation":1,"id":2,"serial":3}},{"$ref":{"node":"a@b","creation":1,"id":9}},{"$bin":"AAE="}]}'),
    'hello_json': rec(V + b'\x01' + str8(b'fuzz@localhost') + struct.pack('<I', 7) + b'N' * 16 + b'\x01'),
    'io_request': rec(V + b'\x11' + str8(b'sink') + b'\x02' + struct.pack('<I', 3) + b'hi\n'),
    'spawn_request': rec(V + b'\x20' + struct.pack('<QIIB', 1, 1, 0, 3) + me + str8(b'Kate.say_name') + b'\x07' + struct.pack('<I', 0) + term_ref(b'fuzz@localhost', 7, 1, 2)),
    'link': rec(V + b'\x30' + me + term_pid(b'kate@localhost', 1, 1, 0)),
    'monitor': rec(V + b'\x33' + me + term_pid(b'kate@localhost', 1, 1, 0) + term_ref(b'fuzz@localhost', 7, 1, 2)),
    'exit': rec(V + b'\x32' + me + term_pid(b'kate@localhost', 1, 1, 0) + b'\x01' + term_atom(b'boom')),
    'batch': rec(V + b'\x11' + str8(b'sink') + b'\x01' + term_int(1)) * 3,
}
# a SEND_NAME over 64 KiB in two FRAGMENTs (id 1), in one message
big = V + b'\x11' + str8(b'sink') + b'\x01' + term_bin(b'f' * (70 << 10))
frag = lambda off, chunk: rec(V + b'\x40' + struct.pack('<QQQ', 1, off, len(big)) + chunk)
seeds['fragments'] = frag(0, big[:64 << 10]) + frag(64 << 10, big[64 << 10:])
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
