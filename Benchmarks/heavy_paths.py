#!/usr/bin/env python3
"""NOOP latency of a logged-in session while one CPU- or I/O-heavy path runs (issue 10,
item 3): does the heavy path hold up the event loop?

    python3 Benchmarks/heavy_paths.py --bin /tmp/before/pop3d --runs 3
    python3 Benchmarks/heavy_paths.py --bin .build/release/pop3d --runs 3 --json

For each path the script starts the given pop3d on 127.0.0.1 with its own temporary
passwd-file and Maildir root, logs in one probe session (in a child process, so that the
load this script generates cannot hold the probe behind Python's GIL), and lets it send
NOOPs one at a time with a short sleep between them, timing each round trip. Then it runs
the path, and reports the NOOPs in flight during the path's window (from its first byte to
the server's last answer): count, p50, p99 and max. The paths and their default sizes (the
issue's):

- `baseline`: nothing else runs, `--baseline-seconds` (2 s).
- `scram`: 300 SCRAM-SHA-256 exchanges for unknown users; each client-final carries a bogus
  proof, so the server derives the decoy's keys (PBKDF2, 4,096 iterations) before it says
  `-ERR [AUTH]`. At most `--scram-window` (128) client-finals are outstanding at a time, so
  every one is hashed (the hashing queue holds 256 jobs).
- `bcrypt`: 20 USER/PASS logins at once for 20 users with a `{BLF-CRYPT}` secret of cost 12
  (made by `pop3d hash-password --scheme BLF-CRYPT`).
- `reload`: the passwd-file is replaced by one with 100,000 users and the server gets SIGHUP;
  the window ends when its log says `passwd-file reloaded ... users=100000`.
- `quit`: one user with 10,000 small messages logs in and DELEs all of them; the window is
  the QUIT, from sending it to its `+OK` (the UPDATE state unlinks the 10,000 files).

The server runs with `--trusted-network 127.0.0.0/8` (no failure penalties for the decoys),
`auth_mechanisms` `plain login scram-sha-256` (an older binary ignores the variable and offers
SCRAM anyway) and `auth_max_queued_per_ip` 1,000. Every loop is bounded in count and time,
traffic goes only to 127.0.0.1, and every server is stopped by its PID.

The functions are shared with `Tests/e2e/test_loop_lag.py`, which runs them against the
debug build with smaller sizes and asserts bounds.
"""
import argparse
import base64
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(os.path.dirname(HERE), "Tests", "e2e")
if E2E not in sys.path:
    sys.path.insert(0, E2E)

import maildata  # noqa: E402
from pop3support import Server, binary, wait_for  # noqa: E402
from rawpop import Raw  # noqa: E402

PROBE_USER, PROBE_PASSWORD = "probe", "probe-pw"
QUIT_USER, QUIT_PASSWORD = "bulk", "bulk-pw"
BCRYPT_PASSWORD = "slow-bcrypt-pw"
# The sizes.
SIZES = {"baseline": 2.0, "scram": 300, "bcrypt": 20, "reload": 100_000, "quit": 10_000}
PATHS = ("baseline", "scram", "bcrypt", "reload", "quit")
# SCRAM client-finals outstanding at once: below the server's hashing queue (256 jobs), so
# every decoy is hashed rather than refused with -ERR [SYS/TEMP].
SCRAM_WINDOW = 128
# The probe sleeps this long between two NOOPs (one outstanding at a time).
PROBE_GAP = 0.001
# Upper bounds for every wait: a frozen server fails the run instead of hanging it.
PATH_TIMEOUT = 600.0
LOGIN_TIMEOUT = 60.0
PROBE_MAX_SECONDS = 1800.0
# The reactor's warning for a turn over loop_lag_warning (Sources/Reactor/EventLoop+Lag.swift).
LAG_WARNING = "over loop_lag_warning"
SERVER_ENV = {
    "POP3D_AUTH_MECHANISMS": "plain login scram-sha-256",
    "POP3D_AUTH_MAX_QUEUED_PER_IP": "1000",
}


# ---------------------------------------------------------------------------- the probe

def probe_child(host, port, user, password, gap, max_seconds):
    """Runs in a child process: logs in, says `ready`, sends NOOPs until SIGTERM or
    max_seconds, then prints one `start rtt` line per NOOP (CLOCK_MONOTONIC seconds, shared
    with the parent) and `end`. A failed NOOP is printed as `error ...`."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    r = Raw(host, int(port), timeout=LOGIN_TIMEOUT)
    reply = r.login(user, password)
    if not reply.startswith(b"+OK"):
        print(f"error login {reply!r}", flush=True)
        return 1
    r.sock.settimeout(max_seconds)
    print("ready", flush=True)
    samples, error = [], None
    deadline = time.monotonic() + max_seconds
    while not stop and time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            reply = r.cmd(b"NOOP")
        except OSError as e:
            error = repr(e)
            break
        t1 = time.monotonic()
        if reply != b"+OK":
            error = repr(reply)
            break
        samples.append((t0, t1 - t0))
        time.sleep(gap)
    out = [f"{t:.6f} {d:.6f}" for t, d in samples]
    if error:
        out.append(f"error {error}")
    out.append("end")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    try:
        r.cmd(b"QUIT")
    except OSError:
        pass
    return 0


class Probe:
    """The probe session in a child process (this script with `--probe-child`)."""

    def __init__(self, server, user=PROBE_USER, password=PROBE_PASSWORD, gap=PROBE_GAP):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.abspath(__file__), "--probe-child", server.host,
             str(server.port), user, password, str(gap), str(PROBE_MAX_SECONDS)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        first = self.proc.stdout.readline().strip()
        if first != "ready":
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise RuntimeError(f"probe did not log in: {first!r}")
        self.samples, self.errors = [], []

    def finish(self):
        """Stops the probe; returns [(start, rtt)] in seconds."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=PATH_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise
        for line in out.splitlines():
            if line.startswith("error"):
                self.errors.append(line)
            elif line and line != "end":
                t, d = line.split()
                self.samples.append((float(t), float(d)))
        return self.samples


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def summarize(samples, start, end):
    """NOOP round trips in flight at some point of [start, end]: count, p50/p99/max in ms."""
    rtts = sorted(d for t, d in samples if t <= end and t + d >= start)
    return {"count": len(rtts), "p50_ms": percentile(rtts, 50) * 1000,
            "p99_ms": percentile(rtts, 99) * 1000, "max_ms": (rtts[-1] if rtts else float("nan")) * 1000,
            "window_s": end - start}


# ---------------------------------------------------------------------------- the host

def hash_password(password, scheme):
    out = subprocess.run([binary(), "hash-password", "--scheme", scheme], input=password + "\n",
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"hash-password failed: {out.stderr}")
    return out.stdout.strip()


class Host:
    """A temporary passwd-file and Maildir root, and a pop3d serving them."""

    def __init__(self, root, passwd_lines=()):
        self.root = root
        self.mail_root = os.path.join(root, "mail")
        os.makedirs(self.mail_root, exist_ok=True)
        self.passwd = os.path.join(root, "passwd")
        with open(self.passwd, "w") as f:
            f.write(f"{PROBE_USER}:{{PLAIN}}{PROBE_PASSWORD}::::::\n")
            f.writelines(passwd_lines)
        self.maildir(PROBE_USER)
        self.server = None

    def maildir(self, user):
        return maildata.ensure_maildir(os.path.join(self.mail_root, user, "Maildir"))

    def serve(self):
        self.server = Server(["--passwd-file", self.passwd, "--mail", f"maildir:{self.mail_root}/%u/Maildir",
                              "--trusted-network", "127.0.0.0/8"], self.root, env=SERVER_ENV)
        return self.server

    def stop(self):
        if self.server is not None:
            self.server.stop()


def exchange(pairs, window, timeout=PATH_TIMEOUT):
    """Sends each (Raw, bytes) pair's bytes and reads one reply line, with at most `window`
    requests outstanding. Returns the replies (in completion order)."""
    pending, inflight, replies = list(reversed(pairs)), 0, []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        while pending or inflight:
            while pending and inflight < window:
                conn, data = pending.pop()
                conn.send(data)
                sel.register(conn.sock, selectors.EVENT_READ, conn)
                inflight += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{inflight + len(pending)} replies missing after {timeout} s")
            for key, _ in sel.select(timeout=1.0):
                sel.unregister(key.fileobj)
                inflight -= 1
                replies.append(key.data.line())
    return replies


def prepare_baseline(host, seconds):
    return seconds


def path_baseline(host, seconds):
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic(), {}


def scram_first(host, i):
    """Opens a connection and sends the client-first of an unknown user; returns the
    connection and its client-final with a bogus (all-zero) proof."""
    c = Raw(host.server.host, host.server.port, timeout=PATH_TIMEOUT)
    greeting = c.line()
    assert greeting.startswith(b"+OK"), greeting
    bare = f"n=nobody{i},r=lagprobenonce{i:05d}"
    r = c.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + bare).encode()).decode())
    assert r.startswith(b"+ "), r
    fields = dict(f.split("=", 1) for f in base64.b64decode(r[2:]).decode().split(","))
    final = f"c=biws,r={fields['r']},p={base64.b64encode(bytes(32)).decode()}"
    return c, base64.b64encode(final.encode()) + b"\r\n"


def prepare_scram(host, count):
    return [scram_first(host, i) for i in range(count)]


def path_scram(host, pairs, window=SCRAM_WINDOW):
    start = time.monotonic()
    replies = exchange(pairs, window)
    end = time.monotonic()
    for c, _ in pairs:
        c.close()
    refused = [r for r in replies if not r.startswith(b"-ERR [AUTH]")]
    if refused:
        raise AssertionError(f"{len(refused)} decoys not answered -ERR [AUTH]: {set(refused)}")
    return start, end, {"decoys": len(replies)}


def bcrypt_lines(count):
    secret = hash_password(BCRYPT_PASSWORD, "BLF-CRYPT")
    if "$12$" not in secret:
        raise RuntimeError(f"expected bcrypt cost 12: {secret}")
    return [f"slow{i:02d}:{secret}::::::\n" for i in range(count)]


def prepare_bcrypt(host, count):
    """`count` connections that sent USER for a bcrypt user, and their PASS lines."""
    pairs = []
    for i in range(count):
        host.maildir(f"slow{i:02d}")
        c = Raw(host.server.host, host.server.port, timeout=PATH_TIMEOUT)
        assert c.line().startswith(b"+OK")
        assert c.cmd(f"USER slow{i:02d}").startswith(b"+OK")
        pairs.append((c, f"PASS {BCRYPT_PASSWORD}\r\n".encode()))
    return pairs


def path_bcrypt(host, pairs):
    start = time.monotonic()
    replies = exchange(pairs, window=len(pairs))
    end = time.monotonic()
    for c, _ in pairs:
        c.close()
    failed = [r for r in replies if not r.startswith(b"+OK")]
    if failed:
        raise AssertionError(f"{len(failed)} bcrypt logins failed: {set(failed)}")
    return start, end, {"logins": len(replies)}


def write_big_passwd(path, users):
    """A passwd-file of `users` users (the probe user first) with PLAIN secrets."""
    with open(path, "w") as f:
        f.write(f"{PROBE_USER}:{{PLAIN}}{PROBE_PASSWORD}::::::\n")
        f.writelines(f"user{i:07d}:{{PLAIN}}pw{i}::::::\n" for i in range(users - 1))


def prepare_reload(host, users):
    new = host.passwd + ".new"
    write_big_passwd(new, users)
    return new, users


def path_reload(host, state):
    new, users = state
    server = host.server
    before = server.output().count("passwd-file reloaded")
    os.replace(new, host.passwd)
    start = time.monotonic()
    os.kill(server.pid, signal.SIGHUP)

    def reloaded():
        out = server.output()
        if out.count("passwd-file reloaded") > before:
            return out
        if "passwd-file reload failed" in out or server.proc.poll() is not None:
            raise RuntimeError(f"reload failed:\n{out[-2000:]}")
        return None
    out = wait_for(reloaded, timeout=PATH_TIMEOUT, interval=0.005, what="passwd-file reloaded")
    end = time.monotonic()
    if f"users={users}" not in out:
        raise AssertionError(f"reload did not load {users} users:\n{out[-2000:]}")
    return start, end, {"users": users}


def fill_maildir(host, count):
    md = host.maildir(QUIT_USER)
    body = b"Subject: lag\n\nbody\n"
    for _ in range(count):
        maildata.deliver(md, body)


def prepare_quit(host, count):
    """Logs the bulk user in and DELEs all its `count` messages."""
    c = Raw(host.server.host, host.server.port, timeout=PATH_TIMEOUT)
    reply = c.login(QUIT_USER, QUIT_PASSWORD)
    assert reply.startswith(b"+OK"), reply
    stat = c.cmd("STAT")
    assert stat.startswith(f"+OK {count} ".encode()), stat
    for first in range(1, count + 1, 1000):
        last = min(first + 1000, count + 1)
        c.send(b"".join(f"DELE {i}\r\n".encode() for i in range(first, last)))
        for _ in range(first, last):
            r = c.line()
            assert r.startswith(b"+OK"), r
    return c, count


def path_quit(host, state):
    c, count = state
    start = time.monotonic()
    reply = c.cmd("QUIT")
    end = time.monotonic()
    c.close()
    assert reply.startswith(b"+OK"), reply
    md = host.maildir(QUIT_USER)
    left = len(os.listdir(os.path.join(md, "new"))) + len(os.listdir(os.path.join(md, "cur")))
    if left:
        raise AssertionError(f"{left} messages left after QUIT")
    return start, end, {"deleted": count}


# Per path: prepare(host, size) -> state (outside the window), then go(host, state) ->
# (window start, window end, extra figures).
STEPS = {"baseline": (prepare_baseline, path_baseline), "scram": (prepare_scram, path_scram),
         "bcrypt": (prepare_bcrypt, path_bcrypt), "reload": (prepare_reload, path_reload),
         "quit": (prepare_quit, path_quit)}


def run_path(name, size, root):
    """Runs one path against a fresh server in `root` (created): returns the NOOP summary of
    its window, the path's own figures, `lag_warnings` (the server's loop-lag warnings logged
    from the start of the window to the end of the probe) and the log text of that span
    (`log`)."""
    os.makedirs(root, exist_ok=True)
    lines = []
    if name == "bcrypt":
        lines = bcrypt_lines(size)
    elif name == "quit":
        lines = [f"{QUIT_USER}:{{PLAIN}}{QUIT_PASSWORD}::::::\n"]
    host = Host(root, lines)
    if name == "quit":
        fill_maildir(host, size)
    server = host.serve()
    try:
        probe = Probe(server)
        try:
            prepare, go = STEPS[name]
            state = prepare(host, size)
            # A few NOOPs before the window, and the log position for the lag warnings.
            time.sleep(0.05)
            log_from = len(server.output())
            start, end, extra = go(host, state)
            time.sleep(0.05)  # the NOOP in flight at the end completes
        finally:
            samples = probe.finish()
        if probe.errors:
            raise AssertionError(f"probe failed: {probe.errors}")
        log = server.output()[log_from:]
    finally:
        host.stop()
    result = summarize(samples, start, end)
    result.update(extra)
    result["lag_warnings"] = log.count(LAG_WARNING)
    result["log"] = log
    return result


# ---------------------------------------------------------------------------- the script

def median_spread(values):
    return statistics.median(values), min(values), max(values)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--probe-child"]:
        host, port, user, password, gap, max_seconds = argv[1:7]
        return probe_child(host, port, user, password, float(gap), float(max_seconds))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the pop3d binary to measure")
    ap.add_argument("--runs", type=int, default=1, help="runs per path; figures are medians across runs")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--baseline-seconds", type=float, default=SIZES["baseline"])
    ap.add_argument("--scram", type=int, default=SIZES["scram"], help="SCRAM decoy exchanges")
    ap.add_argument("--bcrypt", type=int, default=SIZES["bcrypt"], help="concurrent bcrypt logins")
    ap.add_argument("--reload-users", type=int, default=SIZES["reload"], help="users in the reloaded passwd-file")
    ap.add_argument("--quit-messages", type=int, default=SIZES["quit"], help="messages DELE'd before QUIT")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 50:
        ap.error("--runs must be 1..50")
    os.environ["POP3D_BIN"] = os.path.abspath(args.bin)
    sizes = {"baseline": args.baseline_seconds, "scram": args.scram, "bcrypt": args.bcrypt,
             "reload": args.reload_users, "quit": args.quit_messages}
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            ap.error(f"unknown path {p}")
    work = tempfile.mkdtemp(prefix="heavy-paths-")
    results = {p: [] for p in paths}
    try:
        for run in range(args.runs):
            for p in paths:
                r = run_path(p, sizes[p], os.path.join(work, f"{p}-{run}"))
                r.pop("log")
                results[p].append(r)
                if not args.json:
                    print(f"run {run + 1} {p}: n={r['count']} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f}"
                          f" max {r['max_ms']:.2f} ms, window {r['window_s']:.2f} s,"
                          f" lag warnings {r['lag_warnings']}", file=sys.stderr, flush=True)
                shutil.rmtree(os.path.join(work, f"{p}-{run}"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for p in paths:
        rs = results[p]
        summary[p] = {"size": sizes[p], "runs": rs}
        for key in ("count", "p50_ms", "p99_ms", "max_ms", "window_s", "lag_warnings"):
            med, lo, hi = median_spread([r[key] for r in rs])
            summary[p][key] = {"median": med, "min": lo, "max": hi}
    if args.json:
        print(json.dumps({"bin": os.path.abspath(args.bin), "runs": args.runs, "paths": summary}, indent=1))
    else:
        print(f"{os.path.abspath(args.bin)}, {args.runs} run(s), medians (min-max) across runs")
        print(f"{'path':<9} {'size':>8} {'NOOPs':>6} {'p50 ms':>18} {'p99 ms':>20} {'max ms':>20} {'window s':>8} lag")
        for p in paths:
            s = summary[p]

            def f(key):
                return f"{s[key]['median']:.2f} ({s[key]['min']:.2f}-{s[key]['max']:.2f})"
            print(f"{p:<9} {s['size']:>8g} {s['count']['median']:>6g} {f('p50_ms'):>18} {f('p99_ms'):>20}"
                  f" {f('max_ms'):>20} {s['window_s']['median']:>8.2f} {s['lag_warnings']['median']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
