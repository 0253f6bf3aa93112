#!/usr/bin/env python3
"""Real-login latency while one address attacks the hashing pool (issue 9, finding 6).

The attacker (127.0.0.1) guesses passwords of a user stored as bcrypt (cost 12, what
`pop3d hash-password --scheme BLF-CRYPT` writes); the real user logs in with SHA512-CRYPT from
another address (127.0.0.2). Two scenarios:

  abandoned  N connections send USER/PASS and close at once; then one real login is timed.
  rate       the attacker opens RATE connections a second for DURATION s, each sends USER/PASS
             and waits for its reply; a real login is timed every 2 s meanwhile.

Loopback only, bounded in count and time. Example (release builds):

    python3 Benchmarks/hostile_auth.py --bin /tmp/before/pop3d --scenario abandoned --attempts 400 --runs 3
    python3 Benchmarks/hostile_auth.py --bin .build/release/pop3d --scenario rate --rate 70 --duration 30
"""
import argparse
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from pop3support import free_port, port_open, wait_for  # noqa: E402


def hash_password(binary, password, scheme):
    out = subprocess.run([binary, "hash-password", "--scheme", scheme], input=password + "\n",
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


class Target:
    def __init__(self, binary, root):
        self.binary = binary
        self.root = root
        self.port = free_port()
        passwd = os.path.join(root, "passwd")
        with open(passwd, "w") as f:
            f.write(f"slowuser:{hash_password(binary, 'slow-pw', 'BLF-CRYPT')}::::::\n")
            f.write(f"real:{hash_password(binary, 'real-pw', 'SHA512-CRYPT')}::::::\n")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(root, "mail", "real", "Maildir", sub), exist_ok=True)
        env = dict(os.environ, POP3D_DISABLE_PLAINTEXT_AUTH="false")
        env.pop("NOTIFY_SOCKET", None)
        env.pop("LISTEN_FDS", None)
        self.log = open(os.path.join(root, "pop3d.log"), "wb")
        self.proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--passwd-file", passwd, "--mail", f"maildir:{root}/mail/%u/Maildir"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        wait_for(lambda: port_open("127.0.0.1", self.port), what="pop3d")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def read_line(sock, buf=b""):
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line, rest


def real_login(port, timeout=300):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=("127.0.0.2", 0))
    try:
        line, rest = read_line(s)
        t0 = time.monotonic()
        s.sendall(b"USER real\r\nPASS real-pw\r\n")
        line, rest = read_line(s, rest)
        line, rest = read_line(s, rest)
        elapsed = time.monotonic() - t0
        s.sendall(b"QUIT\r\n")
        return elapsed, line
    finally:
        s.close()


def login_until_ok(port, deadline=300):
    """Time until the real user is logged in, retrying every 0.2 s after `-ERR [SYS/TEMP]` (a
    full hashing queue), as a mail client would retry: the latency a user sees."""
    t0 = time.monotonic()
    tries = 0
    while True:
        elapsed, reply = real_login(port)
        tries += 1
        if not reply.startswith(b"-ERR [SYS/TEMP]") or time.monotonic() - t0 > deadline:
            return time.monotonic() - t0, reply, tries
        time.sleep(0.2)


def abandon(port, n):
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.recv(512)
        s.sendall(b"USER slowuser\r\nPASS wrong-guess\r\n")
        s.close()


def scenario_abandoned(binary, attempts, runs):
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="hostile-auth-") as root:
            t = Target(binary, root)
            try:
                alone, _ = real_login(t.port)
                threads = [threading.Thread(target=abandon, args=(t.port, attempts // 4)) for _ in range(4)]
                t0 = time.monotonic()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                sent = time.monotonic() - t0
                elapsed, reply, tries = login_until_ok(t.port)
                results.append(elapsed)
                print(f"  alone {alone:.3f} s; {attempts} abandoned attempts sent in {sent:.2f} s;"
                      f" real login then took {elapsed:.3f} s in {tries} tries ({reply[:30]!r})", flush=True)
            finally:
                t.stop()
    print(f"abandoned: median real-login latency {statistics.median(results):.3f} s over {runs} runs")


def scenario_rate(binary, rate, duration):
    with tempfile.TemporaryDirectory(prefix="hostile-auth-") as root:
        t = Target(binary, root)
        latencies, kinds = [], {}
        stop = threading.Event()

        def prober():
            while not stop.is_set():
                try:
                    elapsed, reply, tries = login_until_ok(t.port)
                except OSError as e:
                    kinds["probe error " + str(e)] = kinds.get("probe error " + str(e), 0) + 1
                    continue
                latencies.append(elapsed)
                print(f"  real login {elapsed:.3f} s in {tries} tries {reply[:30]!r}", flush=True)
                stop.wait(2.0)

        probe = threading.Thread(target=prober)
        sel = selectors.DefaultSelector()
        try:
            probe.start()
            start = time.monotonic()
            next_at = start
            sent = 0
            while time.monotonic() - start < duration or sel.get_map():
                now = time.monotonic()
                if now - start > duration + 120:
                    break
                if now - start < duration and now >= next_at:
                    s = socket.create_connection(("127.0.0.1", t.port), timeout=20)
                    s.recv(512)
                    s.sendall(b"USER slowuser\r\nPASS wrong-guess\r\n")
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, [b"", 0])
                    sent += 1
                    next_at += 1.0 / rate
                for key, _ in sel.select(timeout=max(0.0, min(0.05, next_at - time.monotonic()))):
                    state = key.data
                    try:
                        chunk = key.fileobj.recv(4096)
                    except OSError:
                        chunk = b""
                    state[0] += chunk
                    lines = state[0].split(b"\r\n")
                    if not chunk or len(lines) >= 3:
                        kind = lines[1][:22].decode(errors="replace") if len(lines) >= 3 else "closed"
                        kinds[kind] = kinds.get(kind, 0) + 1
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
        finally:
            stop.set()
            probe.join(timeout=330)
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            t.stop()
        print(f"rate: {sent} attempts at {rate}/s for {duration} s; attacker replies {kinds}")
        if latencies:
            print(f"rate: real-login latency median {statistics.median(latencies):.3f} s,"
                  f" max {max(latencies):.3f} s over {len(latencies)} logins")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--scenario", choices=["abandoned", "rate"], required=True)
    ap.add_argument("--attempts", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=70)
    ap.add_argument("--duration", type=float, default=30)
    a = ap.parse_args()
    assert a.attempts <= 5000 and a.duration <= 120 and a.rate <= 500, "bounded load only"
    if a.scenario == "abandoned":
        scenario_abandoned(a.bin, a.attempts, a.runs)
    else:
        scenario_rate(a.bin, a.rate, a.duration)


if __name__ == "__main__":
    main()
