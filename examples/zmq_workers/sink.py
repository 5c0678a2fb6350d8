#!/usr/bin/python3
"""The results: a pyzmq PULL that binds ENDPOINT (a * port: any; it prints "bound ENDPOINT") and
takes "JOB ok RESULT" or "JOB failed REASON" until "end", then checks that each of jobs 1..N
came back once: ok with JOB*JOB, or failed for every seventh (the poison jobs).
usage: sink.py ENDPOINT N"""
import sys, zmq

s = zmq.Context().socket(zmq.PULL)
s.bind(sys.argv[1])
print("bound", s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
n, seen, wrong = int(sys.argv[2]), {}, []
while True:
    if not s.poll(60000):
        sys.exit("sink: no result for 60 s")
    m = s.recv_string()
    if m == "end":
        break
    job, status, rest = m.split(" ", 2)
    job = int(job)
    if job in seen:
        wrong.append("job %d came back twice" % job)
    seen[job] = (status, rest)
    if job % 7 == 0 and status != "failed":
        wrong.append("poison job %d: %s" % (job, m))
    if job % 7 != 0 and (status != "ok" or rest != str(job * job)):
        wrong.append("job %d: %s" % (job, m))
missing = [j for j in range(1, n + 1) if j not in seen]
if missing:
    wrong.append("missing: %s" % missing[:20])
if wrong:
    print("\n".join(wrong[:20]), flush=True)
    sys.exit(1)
failed = sum(1 for st, _ in seen.values() if st == "failed")
print("all %d jobs accounted for: %d ok, %d failed" % (n, n - failed, failed), flush=True)
