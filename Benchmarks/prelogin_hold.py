#!/usr/bin/env python3
"""Issue 9, finding 7: 10 source addresses (127.0.0.2-11) x 1,000 idle pre-login connections
fill the default max_unauthenticated (10,000); then user alice (password secret-alice, as in
Tests/e2e/conftest.py) logs in N times from 127.0.0.1. Start pop3d on 127.0.0.1:PORT with such
a passwd-file and a descriptor limit above 10,100 first. Loopback only, bounded.
Usage: python3 Benchmarks/prelogin_hold.py PORT N"""
import socket, statistics, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
t0 = time.monotonic()
for a in range(2, 12):
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(f"127.0.0.{a}", 0))
        g = s.recv(512)
        held.append((s, g))
print(f"held {len(held)} connections in {time.monotonic() - t0:.1f} s; greetings +OK: {sum(g.startswith(b'+OK') for _, g in held)}")
lat, replies = [], []
for i in range(n):
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    greeting = f.readline()
    if not greeting.startswith(b"+OK"):
        replies.append(greeting.strip()); s.close(); continue
    s.sendall(b"USER alice\r\n"); f.readline()
    s.sendall(b"PASS secret-alice\r\n"); r = f.readline()
    lat.append(time.monotonic() - t)
    replies.append(r.strip())
    s.sendall(b"QUIT\r\n"); f.readline(); s.close()
ok = sum(r.startswith(b"+OK") for r in replies)
print(f"real logins: {ok}/{n} succeeded; first reply: {replies[0]!r}")
if lat:
    print(f"login latency (connect..+OK PASS): median {statistics.median(lat)*1000:.1f} ms, max {max(lat)*1000:.1f} ms")
closed = 0
for s, _ in held:
    s.setblocking(False)
    try:
        d = s.recv(512)
        if d == b"" or d.startswith(b"-ERR"): closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(f"held connections told/closed by the server: {closed}")
