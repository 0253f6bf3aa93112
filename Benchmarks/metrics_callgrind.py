#!/usr/bin/env python3
"""Instructions pop3d executes per NOOP, per session and per scrape with metrics off and on
(issue 13), counted by valgrind's callgrind: a figure the load of this shared 2-core machine
does not move (its VM exposes no hardware counters to `perf stat`), to go with the throughput
of metrics.py:

    sudo python3 Benchmarks/metrics_callgrind.py --out /tmp/metrics-callgrind.md   # after swift build -c release

The release pop3d runs under `valgrind --tool=callgrind` (pinned to core 0, pop3bench to core
1), once with metrics off and once with `POP3D_METRICS_LISTEN`; after a warm-up, for each
workload the counters are zeroed (`callgrind_control -z`), pop3bench runs a fixed amount of
work, and the counters are dumped (`callgrind_control -d`): the dump's total Ir (instructions
executed by every thread of pop3d) divided by the NOOPs or sessions done.

- noop c=1:   1 connection, 5,000 NOOPs one at a time: every NOOP is a loop turn of its own
              (the worst case for the per-turn histogram).
- noop c=100: 100 connections × 100 NOOPs (compare.py's NOOP scenario, smaller).
- session:    512 sessions at concurrency 16 (login, STAT, LIST, UIDL, RETR 10, QUIT).
- scrape:     (on only) 20 × GET /metrics on one keep-alive connection.

With `--annotate`, the "on" dumps' functions whose names mention the metrics code
(Prometheus, CoreMetrics, Atomics, POP3Metrics, the turn observer, NIOLock, the loop's endTurn) are listed with
their inclusive Ir per unit of work (callgrind_annotate --inclusive=yes).
"""
import argparse
import glob
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

USERS = 128
WORKLOADS = [
    # name, unit, pop3bench arguments, key of the unit count in the report
    ("noop c=1", "NOOP", ["noop", "--concurrency", 1, "--count", 1, "--commands", 5000], "noop"),
    ("noop c=100", "NOOP", ["noop", "--concurrency", 100, "--count", 100, "--commands", 100], "noop"),
    ("session c=16", "session", ["session", "--concurrency", 16, "--count", 512], "sessions"),
]
SCRAPES = 20
ANNOTATE = re.compile(r"Prometheus|CoreMetrics|Atomics|POP3Metrics|enableMetrics|endTurn|NIOLock|Histogram|"
                      r"Counter|Duration\.|\.command\(")


def log(text):
    compare.log(text)


def callgrind_control(*args):
    # As the user valgrind runs as: vgdb finds its pipes by user name (root's would not match).
    out = subprocess.run(["runuser", "-u", compare.BENCH_USER, "--", "callgrind_control", *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(map(str, args))}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def dumps(prefix):
    return sorted(glob.glob(prefix + "*"), key=os.path.getmtime)


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in {path}")


def measured(pid, prefix, what, work):
    """Zeroes the counters, runs `work()`, dumps; the new dump's path."""
    before = set(dumps(prefix))
    callgrind_control("-z", pid)
    work()
    callgrind_control("-d", what, pid)
    compare.wait_until(lambda: set(dumps(prefix)) - before, 60, f"callgrind dump '{what}'", 0.2)
    time.sleep(0.5)   # written completely
    new = sorted(set(dumps(prefix)) - before, key=os.path.getmtime)
    return new[-1]


def annotate(path, units):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, timeout=300).stdout
    # Swift names demangled (swift demangle reads them anywhere in its input), object paths cut.
    out = re.sub(r"\s*\[/[^\]]*\]", "", out)
    try:
        out = subprocess.run(["swift", "demangle", "--simplified"], input=out, capture_output=True, text=True,
                             timeout=300).stdout or out
    except OSError:
        pass
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(?:\?\?\?:)?(.*)", line)
        if not m or not ANNOTATE.search(m.group(2)):
            continue
        ir = int(m.group(1).replace(",", ""))
        if ir / units >= 1:
            rows.append((ir / units, m.group(2).strip()[:160]))
    return rows[:25]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotate", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("metrics_callgrind.py: run as root")
    started = time.monotonic()
    run = tempfile.mkdtemp(prefix="pop3-metrics-cg.", dir="/tmp")
    data = os.path.join(run, "data")
    subprocess.run([sys.executable, os.path.join(compare.HERE, "mkdata.py"), data, "--users", str(USERS),
                    "--messages", "10", "--huge", "0", "--big-mib", "0", "--idle", "0"], check=True)
    os.chmod(run, 0o777)   # pop3d (as the data's owner) writes its dumps here
    subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)
    # valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes ("unhandled dwarf2
    # abbrev form"; "Possibly corrupted debuginfo file"): a copy without it keeps the symbol table.
    binary = os.path.join(run, "pop3d")
    subprocess.run(["objcopy", "--strip-debug", os.path.join(compare.ROOT, ".build/release/pop3d"), binary],
                   check=True)
    users = ["--users", "u%04d", "--password", "p%04d", "--user-count", USERS]
    results = {}    # (mode, workload) -> Ir per unit
    annotations = {}
    failures = []
    for mode in ("off", "on"):
        # vgdb names its pipes after $USER: the same for valgrind (started by setpriv, which
        # keeps the environment) and for callgrind_control (runuser, which sets it).
        env = {"USER": compare.BENCH_USER, "LOGNAME": compare.BENCH_USER}
        metrics_port = None
        if mode == "on":
            metrics_port = compare.free_port()
            env["POP3D_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port}"
        prefix = os.path.join(run, f"callgrind.{mode}")
        server = compare.Pop3d(run, data, compare.free_port(), extra_env=env, log_name=f"pop3d-{mode}.log",
                               # Started as the data's owner: callgrind_control (vgdb) then finds the
                               # process's pipes, which it did not once pop3d switched users itself;
                               # setpriv execs (runuser would fork: pop3d's PID must be the one started).
                               wrapper=["setpriv", f"--reuid={compare.BENCH_USER}", f"--regid={compare.BENCH_USER}",
                                        "--init-groups", "valgrind", "--tool=callgrind",
                                        f"--callgrind-out-file={prefix}.%p"],
                               start_timeout=120, binary=binary)
        log(f"metrics {mode}: pop3d under callgrind")
        try:
            server.start()
            pid = server.proc.pid
            # Warm-up: every maildrop once (pop3d.sizes written), every code path run once.
            compare.pop3bench(server, "session", *users, "--concurrency", 16, "--count", USERS, timeout=120)
            compare.pop3bench(server, "noop", *users, "--concurrency", 10, "--count", 10, "--commands", 100,
                              timeout=120)
            server.wait_quiet()
            for name, unit, args, key in WORKLOADS:
                rep = {}

                def work(args=args):
                    rep.update(compare.pop3bench(server, args[0], *users, *args[1:], timeout=120))
                    server.wait_quiet()
                path = measured(pid, prefix, name, work)
                n = rep["commands"]["noop"] if key == "noop" else rep["sessions"]["ok"]
                results[(mode, name)] = (total_ir(path) / n, unit)
                log(f"metrics {mode}, {name}: {results[(mode, name)][0]:,.0f} Ir per {unit}")
                if a.annotate and mode == "on":
                    annotations[name] = annotate(path, n)
            if mode == "on":
                conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=60)

                def scrapes():
                    for _ in range(SCRAPES):
                        conn.request("GET", "/metrics")
                        resp = conn.getresponse()
                        body = resp.read()
                        if resp.status != 200 or b"pop3d_build_info" not in body:
                            raise RuntimeError(f"scrape: status {resp.status}")
                path = measured(pid, prefix, "scrape", scrapes)
                conn.close()
                results[(mode, "scrape")] = (total_ir(path) / SCRAPES, "scrape")
                if a.annotate:
                    annotations["scrape"] = annotate(path, SCRAPES)
        except (compare.BenchError, TimeoutError, RuntimeError, OSError) as e:
            failures.append(f"metrics {mode}: {e}")
            log(f"FAILED: {e}")
        finally:
            server.stop()
    out = ["| workload | unit | Ir per unit, metrics off | Ir per unit, metrics on | on − off | on / off |",
           "|---|---|---|---|---|---|"]
    for name, unit, _, _ in WORKLOADS + [("scrape", "scrape", None, None)]:
        off, on = results.get(("off", name)), results.get(("on", name))
        if not off and not on:
            continue
        off_s = f"{off[0]:,.0f}" if off else "–"
        on_s = f"{on[0]:,.0f}" if on else "–"
        diff = f"{on[0] - off[0]:+,.0f}" if off and on else "–"
        ratio = f"{on[0] / off[0]:.4f}" if off and on else "–"
        out.append(f"| {name} | {unit} | {off_s} | {on_s} | {diff} | {ratio} |")
    for name, rows in annotations.items():
        out += ["", f"Metrics code in the \"on\" run, {name}: inclusive Ir per unit (callgrind_annotate --inclusive=yes):", ""]
        out += [f"    {ir:>10,.1f}  {fn}" for ir, fn in rows] or ["    (none above 1 Ir per unit)"]
    compare.finish("\n".join(out), runs=1, started=started, run=run, failures=failures, out=a.out, data=data)


if __name__ == "__main__":
    main()
