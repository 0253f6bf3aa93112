#!/usr/bin/env python3
"""Many logged-in sessions on one core: N idle sessions held open while 100 more connections
send NOOPs, to read NOOP latency under that load (issue 5's last goal: 50,000 sessions, NOOP
p99 under 10 ms).

    sudo python3 Benchmarks/many.py --sessions 50000     # after `swift build -c release`

One pop3d process holds two descriptors per logged-in session (socket and maildrop lock), and
the hard RLIMIT_NOFILE of this sandbox is 20,000, which root cannot raise: so the sessions are
spread over as many pop3d processes as the limit needs (SO_REUSEPORT on one port, all pinned to
core 0, like compare.sh pins a server), and over several pop3bench processes on core 1, each
with its own 127.0.0.x source address (a source address has ~28,000 ephemeral ports towards
one server port). Memory is anonymous PSS (see compare.py) summed over the pop3d processes,
minus the same before the sessions, per session. Every pop3bench run must end with no errors.

    sudo python3 Benchmarks/many.py --workers 2 --sessions 18000 --hold 60

`--workers N` instead starts ONE service, `pop3d serve --workers N` (a master and N worker
processes sharing one listening socket with EPOLLEXCLUSIVE), and reads the logged-in count from
the master's STATUS= (the sum over its workers). Each worker has its own 20,000 descriptors, so
the question is what one service really reaches: the idle clients run with --allow-errors, the
script waits until every session is logged in or the count has not grown for --settle seconds,
and reports what logged in, when, the descriptors each worker held at that moment (/proc/PID/fd:
2 per logged-in session), the pop3bench errors by kind and the server's warnings per worker.
`--server-cpus` pins the server (default core 0, as before; empty: unpinned).
"""
import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

PER_CLIENT = 15_000  # connections per pop3bench process: under both the fd and the port limits
NOOP_CONCURRENCY = 100


def open_descriptors(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def worker_descriptors(server):
    """{worker pid: open descriptors} for the master's children, oldest first."""
    master = server.proc.pid
    return {pid: open_descriptors(pid) for pid in sorted(compare.tree(master)) if pid != master}


KERNEL_COUNTERS = ["ListenOverflows", "ListenDrops", "TCPReqQFullDoCookies", "SyncookiesSent",
                   "SyncookiesRecv", "SyncookiesFailed"]


def tcp_ext():
    """The kernel's TcpExt counters (/proc/net/netstat; host-wide, so a delta counts every
    listener of the machine, not only ours)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def log_summary(path):
    """"worker=1: 3 × 'accept paused'; …" from the server's warning/error lines, per worker and
    message (numbers in the message read N, so repeated messages group)."""
    counts = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                m = re.match(rb"\S+ (warning|error|critical) (.*?)(?: [\w.]+=|$)", line)
                if not m:
                    continue
                w = re.search(rb"\bworker=(\d+)", line)
                what = re.sub(rb"\d+(\.\d+)?", b"N", m.group(2)).decode(errors="replace")[:60]
                key = (f"worker={int(w.group(1))}" if w else "master/process", what)
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        return "log not readable"
    return "; ".join(f"{who}: {n} × {what!r}" for (who, what), n in sorted(counts.items())) or "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=50_000)
    ap.add_argument("--hold", type=float, default=90.0, help="seconds each idle session stays")
    ap.add_argument("--noop-duration", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=20_000.0,
                    help="new connections per second over all pop3bench processes (0: all at once, which "
                         "overflows the listen backlogs and leaves the login time to SYN-ACK retransmits)")
    ap.add_argument("--workers", type=int, default=0,
                    help="one `pop3d --workers N` service instead of several reuse_port processes")
    ap.add_argument("--server-cpus", default="0", help="taskset list for the server ('' = unpinned)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="--workers: stop waiting when the logged-in count has not grown for this long")
    a = ap.parse_args()
    if not 1 <= a.sessions <= 99_999:
        sys.exit("--sessions: 1 to 99,999 (user names i00000..i99999)")
    if a.hold < a.noop_duration + 25:
        sys.exit("--hold must leave time for the logins and the NOOP run: at least --noop-duration + 25 s")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    run = tempfile.mkdtemp(prefix="pop3-many.", dir="/tmp")
    data = os.path.join(run, "data")
    compare.log(f"creating {a.sessions:,} maildrops in {data}")
    subprocess.run([sys.executable, os.path.join(compare.HERE, "mkdata.py"), data, "--users", str(NOOP_CONCURRENCY),
                    "--messages", "1", "--huge", "0", "--big-mib", "0", "--idle", str(a.sessions)], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)

    processes = 1 if a.workers else compare.pop3d_processes(a.sessions + NOOP_CONCURRENCY)
    server = compare.Pop3d(run, data, compare.free_port(), processes,
                           extra_env={"POP3D_TRUSTED_NETWORKS": "127.0.0.0/8"},
                           workers=max(1, a.workers), cpus=a.server_cpus or None)
    shape = (f"one service, --workers {a.workers}" if a.workers else f"{processes} pop3d process(es)") + \
        (f", CPUs {a.server_cpus}" if a.server_cpus else ", unpinned")
    clients = []
    ok = False
    try:
        server.start()
        compare.log(f"{shape} on 127.0.0.1:{server.port}")
        base = server.pss()
        kernel_before = tcp_ext()
        bench = os.path.join(compare.ROOT, ".build/release/pop3bench")
        groups = math.ceil(a.sessions / PER_CLIENT)
        per = math.ceil(a.sessions / groups)
        ramp = ["--ramp", str(a.ramp / groups)] if a.ramp > 0 else []
        started = time.monotonic()
        for j, first in enumerate(range(0, a.sessions, per)):
            n = min(per, a.sessions - first)
            cmd = ["taskset", "-c", "1", bench, "idle", "--port", str(server.port), "--source", f"127.0.0.{10 + j}",
                   "--users", "i%05d", "--password", "pi%05d", "--user-first", str(first), "--user-count", str(n),
                   "--concurrency", str(n), "--count", str(n), "--hold", str(a.hold), "--timeout", "120",
                   "--max-time", str(a.hold + 300), "--json", "--quiet", *ramp]
            if a.workers:
                cmd.append("--allow-errors")
            clients.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

        peak = {"n": 0, "at": started}

        def all_in():
            for c in clients:
                if c.poll() is not None:
                    raise RuntimeError(f"pop3bench exited early ({c.returncode}): {c.stderr.read()[-300:]}")
            n = server.count_logged_in()
            now = time.monotonic()
            if n > peak["n"]:
                peak.update(n=n, at=now)
            # --workers: what one service reaches, so a count that stopped growing ends the wait too.
            return n >= a.sessions or (a.workers and peak["n"] > 0 and now - peak["at"] >= a.settle)
        compare.wait_until(all_in, min(a.hold - a.noop_duration - 15, compare.WAIT_LIMIT),
                           f"{a.sessions:,} logged-in sessions", 0.2)
        logged_in = server.count_logged_in()
        login_s = peak["at"] - started
        per_session = (server.pss() - base) / max(logged_in, 1)
        fds = worker_descriptors(server) if a.workers else {}
        compare.log(f"{logged_in:,} of {a.sessions:,} logged in after {login_s:.1f} s; "
                    f"{per_session:.2f} KiB anonymous PSS each"
                    + (f"; worker descriptors {list(fds.values())}" if a.workers else ""))

        noop = compare.pop3bench(server, "noop", "--users", "u%04d", "--password", "p%04d",
                                 "--user-count", NOOP_CONCURRENCY, "--concurrency", NOOP_CONCURRENCY,
                                 "--duration", a.noop_duration, "--commands", 1000, "--source", "127.0.0.9",
                                 allow_errors=bool(a.workers))
        held = server.count_logged_in()
        reports = []
        for c in clients:
            out, err = c.communicate(timeout=a.hold + 330)
            report = json.loads(out)
            if report["errors"]["total"] and not a.workers:
                raise RuntimeError(f"idle pop3bench: {report['errors']['total']} errors, first: {report['first_error']}")
            reports.append(report)
        lat = noop["latency_us"]["noop"]
        kernel = tcp_ext()
        kernel = {k: kernel.get(k, 0) - kernel_before.get(k, 0) for k in KERNEL_COUNTERS}
        if a.workers:
            errors = {}
            for r in reports:
                for kind, n in r["errors"].items():
                    if kind != "total" and n:
                        errors[kind] = errors.get(kind, 0) + n
            first = next((r["first_error"] for r in reports if r["errors"]["total"]), None)
            print(f"| sessions asked for / logged in at the peak | {a.sessions:,} / {logged_in:,} ({shape}) |")
            print(f"| time until the last login | {login_s:.1f} s "
                  f"({'ramp ' + format(a.ramp, ',.0f') + ' connections/s' if a.ramp > 0 else 'all at once'}) |")
            print(f"| descriptors per worker at the peak (2 per logged-in session) | "
                  f"{' / '.join(format(n, ',') for n in fds.values())} |")
            print(f"| idle pop3bench errors | {sum(errors.values()):,}"
                  f"{' (' + ', '.join(f'{k} {n:,}' for k, n in errors.items()) + ')' if errors else ''}"
                  f"{'; first: ' + str(first) if first else ''} |")
            print(f"| NOOP run errors | {noop['errors']['total']:,}"
                  f"{'; first: ' + str(noop['first_error']) if noop['errors']['total'] else ''} |")
        else:
            print(f"| sessions logged in and held | {a.sessions:,} on {processes} pop3d process(es), core 0 |")
            print(f"| time until all logged in | {login_s:.1f} s "
                  f"({'ramp ' + format(a.ramp, ',.0f') + ' connections/s' if a.ramp > 0 else 'all at once'}) |")
        print(f"| anonymous PSS per idle session | {per_session:.2f} KiB |")
        print(f"| NOOP/s, {NOOP_CONCURRENCY} more connections, during the hold | "
              f"{noop['commands']['noop'] / noop['elapsed_s']:,.0f} |")
        if all(k in lat for k in ("p50", "p99", "p99_9", "max")):
            print(f"| NOOP latency p50 / p99 / p99.9 / max | {lat['p50'] / 1000:.2f} / {lat['p99'] / 1000:.2f} / "
                  f"{lat['p99_9'] / 1000:.2f} / {lat['max'] / 1000:.2f} ms |")
        else:  # no NOOP was answered (a full service refuses the NOOP run's connections)
            print("| NOOP latency p50 / p99 / p99.9 / max | – (no NOOP answered) |")
        print(f"| sessions still logged in after the NOOP run | {held:,} |")
        print(f"| idle sessions ended cleanly (QUIT) | {sum(r['sessions']['ok'] for r in reports):,} |")
        print("| kernel TcpExt counters during the run (host-wide) | "
              + ", ".join(f"{k} {n:,}" for k, n in kernel.items()) + " |")
        if a.workers:
            print(f"| server warnings and errors | {log_summary(server.log_path)} |")
        ok = True
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.communicate()
        server.stop()
        if ok:
            subprocess.run(["rm", "-rf", data])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
