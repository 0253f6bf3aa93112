#!/usr/bin/env python3
"""pop3d with 1 worker (the single process) and with 2 workers (`--workers 2`: a master and two
worker processes sharing the listening sockets with EPOLLEXCLUSIVE) on this 2-core machine, where
the load generator pop3bench shares the cores (issue 12):

    sudo python3 Benchmarks/workers.py --runs 3 --out /tmp/workers.md   # after swift build -c release

Throughput: the scenarios of compare.py (`pop3bench session` at concurrency 16 and 128, 5 s;
`pop3bench noop`, 100 connections, 1,000 NOOPs each, 5 s), per CPU placement, 1 and 2 workers
in turn (the order alternates from run to run), a fresh server for each:

- split:  every pop3d process on core 0, pop3bench on core 1 (compare.py's placement): the
          server gets one core whatever its worker count, so this shows what the master/worker
          split costs, not what it gains.
- shared: nothing pinned: the server's processes and pop3bench share both cores as the
          scheduler sees fit (what a host that runs its clients elsewhere cannot show: here the
          single-threaded pop3bench takes up to a core of the two).
- own:    worker k pinned to core k-1 (1 worker: core 0; the master on core 0, it only
          supervises), pop3bench unpinned.

Per run: sessions/s or NOOP/s; CPU seconds of the server's processes, of pop3bench and of the
whole machine and of core 0 (/proc/stat: what else ran on this shared host, and whether the
server's core sat idle) over the run divided by its elapsed time ("cores busy"); and how the sessions were spread over the
workers: the `worker=N` field of the `session end` log lines (the servers log at `info`, the
default, so every session writes its end line in both modes).

Memory: anonymous PSS (Pss_Anon + Pss_Shmem, as compare.py) summed over the master and every
worker, sampled once N idle sessions are logged in (the master's STATUS= on a NOTIFY_SOCKET
this script owns), minus the same before, / N; with 2 workers at 1,000 and 10,000 sessions and
with 1 worker at 1,000 (10,000 do not fit one process's 20,000 descriptors here). The idle
storms use compare.py's placement (server on core 0, pop3bench on core 1) and a fresh server.

Every pop3bench run must end with zero errors; a failed step is listed and the exit status is 1.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

USERS = 1024            # a multiple of every session concurrency (see mkdata.py); NOOP uses u0000..u0099
SESSION_CONCURRENCY = [16, 128]
NOOP_CONCURRENCY = 100
IDLE = [1000, 10_000]
PLACEMENTS = {
    # name: (pop3d's taskset list or None, pin each worker to its own core, pop3bench's list or None)
    "split": ("0", False, "1"),
    "shared": (None, False, None),
    "own": (None, True, None),
}


def log(text):
    compare.log(text)


def make_data(run):
    data = os.path.join(run, "data")
    log(f"creating data in {data}")
    subprocess.run([sys.executable, os.path.join(compare.HERE, "mkdata.py"), data, "--users", str(USERS),
                    "--messages", "10", "--huge", "0", "--big-mib", "0", "--idle", str(max(IDLE))], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)
    return data


def worker_pids(server):
    """The live worker processes of `server` (the master's children), oldest first."""
    master = server.proc.pid
    return sorted(pid for pid in compare.tree(master) if pid != master)


def start(run, data, workers, placement, tag):
    cpus, own, _ = PLACEMENTS[placement]
    server = compare.Pop3d(run, data, compare.free_port(), workers=workers, cpus=cpus, log_level="info",
                           log_name=f"pop3d-{tag}.log")
    server.start()
    if own:
        pids = worker_pids(server) if workers > 1 else [server.proc.pid]
        for core, pid in enumerate(pids):
            os.sched_setaffinity(pid, {core % os.cpu_count()})
        if workers > 1:
            os.sched_setaffinity(server.proc.pid, {0})
    return server


class LogCursor:
    """Counts `session end` lines per `worker=` value written to a log since the last call."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def take(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        counts = {}
        for line in chunk.splitlines():
            if b"session end" not in line:
                continue
            m = re.search(rb"\bworker=(\d+)", line)
            key = int(m.group(1)) if m else 0   # 0: the single process (no worker= field)
            counts[key] = counts.get(key, 0) + 1
        return counts


def machine_busy():
    """(whole machine, core 0): seconds of CPU busy (/proc/stat minus idle and iowait), to show
    what else ran during a measurement on this shared host and whether core 0 sat idle."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(("cpu ", "cpu0 ")):
                fields = list(map(int, line.split()[1:9]))
                busy[line.split()[0]] = (sum(fields) - fields[3] - fields[4]) / compare.CLOCK_TICKS
    return busy["cpu"], busy["cpu0"]


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench(server, cursor, placement, scenario, *args):
    """One pop3bench run: (report, cores busy: server, pop3bench, whole machine; per-worker counts)."""
    cpu_server = server.cpu()
    cpu_bench = children_cpu()
    cpu_all, cpu_0 = machine_busy()
    rep = compare.pop3bench(server, scenario, *args, cpus=PLACEMENTS[placement][2])
    all_s, core0_s = machine_busy()
    all_s, core0_s = all_s - cpu_all, core0_s - cpu_0
    bench_s = children_cpu() - cpu_bench
    server_s = server.cpu() - cpu_server
    server.wait_quiet()
    # The last session-end lines may still be in flight when STATUS= says 0 logged in.
    time.sleep(0.3)
    elapsed = rep["elapsed_s"]
    return rep, server_s / elapsed, bench_s / elapsed, (all_s / elapsed, core0_s / elapsed), cursor.take()


def spread(counts, workers=2):
    """'52/48 %': the share of each worker 1..workers (0 % included)."""
    total = sum(counts.values())
    if not total:
        return "–"
    return "/".join(f"{100 * counts.get(k, 0) / total:.0f}" for k in range(1, workers + 1)) + " %"


def throughput(run, data, p, runs, placements, failures):
    users = ["--users", "u%04d", "--password", "p%04d", "--user-count", USERS]
    noop_users = ["--users", "u%04d", "--password", "p%04d", "--user-count", NOOP_CONCURRENCY]
    results = {}   # (placement, workers, metric) -> [values]
    spreads = {}   # (placement, workers, metric) -> [counts per run]

    def put(key, value):
        results.setdefault(key, []).append(value)

    for i in range(runs):
        for placement in placements:
            order = (1, 2) if i % 2 == 0 else (2, 1)
            for workers in order:
                tag = f"{placement}-w{workers}-r{i + 1}"
                log(f"run {i + 1}/{runs}: {placement}, {workers} worker(s)")
                server = None
                try:
                    server = start(run, data, workers, placement, tag)
                    cursor = LogCursor(server.log_path)
                    cursor.take()
                    for c in SESSION_CONCURRENCY:
                        rep, srv, bch, everything, counts = bench(server, cursor, placement, "session", *users,
                                                                  "--concurrency", c, "--duration", p["duration"])
                        put((placement, workers, f"sess{c}"), rep["throughput"]["sessions_per_s"])
                        put((placement, workers, f"sess{c}_p99"), compare.p99_ms(rep, "session"))
                        put((placement, workers, f"sess{c}_srv"), srv)
                        put((placement, workers, f"sess{c}_bench"), bch)
                        put((placement, workers, f"sess{c}_all"), everything[0])
                        put((placement, workers, f"sess{c}_core0"), everything[1])
                        spreads.setdefault((placement, workers, f"sess{c}"), []).append(counts)
                    rep, srv, bch, everything, counts = bench(server, cursor, placement, "noop", *noop_users,
                                                  "--concurrency", NOOP_CONCURRENCY, "--duration", p["duration"],
                                                  "--commands", p["noop_commands"])
                    put((placement, workers, "noop"), rep["commands"]["noop"] / rep["elapsed_s"])
                    put((placement, workers, "noop_p99"), compare.p99_ms(rep, "noop"))
                    put((placement, workers, "noop_srv"), srv)
                    put((placement, workers, "noop_bench"), bch)
                    put((placement, workers, "noop_all"), everything[0])
                    put((placement, workers, "noop_core0"), everything[1])
                    spreads.setdefault((placement, workers, "noop"), []).append(counts)
                except (compare.BenchError, TimeoutError, RuntimeError) as e:
                    failures.append(f"run {i + 1}, {placement}, {workers} worker(s): {e}")
                    log(f"FAILED: {e}")
                finally:
                    if server:
                        server.stop()
    return results, spreads


def memory(run, data, p, runs, failures):
    """{(workers, key): [values]}: base PSS, KiB per idle session, login time, spread."""
    idle_users = ["--users", "i%05d", "--password", "pi%05d"]
    results, spreads = {}, {}
    plans = [(2, IDLE), (1, [n for n in IDLE if compare.pop3d_processes(n) == 1])]
    for i in range(runs):
        for workers, sizes in (plans if i % 2 == 0 else plans[::-1]):
            log(f"memory run {i + 1}/{runs}: {workers} worker(s), idle {', '.join(map(str, sizes))}")
            server = None
            try:
                server = start(run, data, workers, "split", f"idle-w{workers}-r{i + 1}")
                cursor = LogCursor(server.log_path)
                time.sleep(1.0)   # the workers' start-up allocations settle
                results.setdefault((workers, "base"), []).append(server.pss())
                for n in sizes:
                    hold = p["hold"] + 0.5 * n / 1000
                    base = server.pss()
                    sample = {}

                    def when_logged_in(proc, started, n=n, hold=hold):
                        try:
                            compare.wait_until(lambda: server.count_logged_in() >= n or proc.poll() is not None,
                                               hold - 1, f"{n} logged-in sessions", 0.2)
                        except TimeoutError:
                            return
                        if proc.poll() is None:
                            sample["pss"] = server.pss()

                    cursor.take()
                    rep = compare.pop3bench(server, "idle", *idle_users, "--user-count", n, "--concurrency", n,
                                            "--count", n, "--hold", hold, limit=hold + compare.WAIT_LIMIT,
                                            timeout=compare.WAIT_LIMIT, on_start=when_logged_in)
                    server.wait_quiet()
                    time.sleep(0.3)
                    if "pss" not in sample:
                        raise compare.BenchError(f"{n} sessions not all logged in within the {hold:.0f} s hold")
                    results.setdefault((workers, f"mem{n}"), []).append((sample["pss"] - base) / n)
                    results.setdefault((workers, f"login{n}"), []).append(rep["elapsed_s"] - hold)
                    spreads.setdefault((workers, f"idle{n}"), []).append(cursor.take())
            except (compare.BenchError, TimeoutError, RuntimeError) as e:
                failures.append(f"memory run {i + 1}, {workers} worker(s): {e}")
                log(f"FAILED: {e}")
            finally:
                if server:
                    server.stop()
    return results, spreads


def cell(values):
    if not values:
        return "–"
    m = statistics.median(values)
    return f"{compare.fmt(m)} ({compare.fmt(min(values))}–{compare.fmt(max(values))})"


def ratio(a, b):
    return f"{statistics.median(b) / statistics.median(a):.2f}" if a and b else "–"


def spread_cell(runs):
    return "; ".join(spread(c) for c in runs) if runs else "–"


def report(tp, sp, mem, msp, placements):
    out = ["| placement | metric | 1 worker median (min–max) | 2 workers median (min–max) | 2 / 1 |",
           "|---|---|---|---|---|"]
    labels = [(f"sess{c}", f"sessions/s, concurrency {c}", f"p99 ms, session, concurrency {c}")
              for c in SESSION_CONCURRENCY]
    labels += [("noop", f"NOOP/s, {NOOP_CONCURRENCY} connections", "p99 ms, NOOP")]
    for placement in placements:
        for key, label, p99 in labels:
            for suffix, what in (("", label), ("_p99", p99), ("_srv", "cores busy, pop3d (all its processes)"),
                                 ("_bench", "cores busy, pop3bench"),
                                 ("_all", "cores busy, whole machine (of 2)"),
                                 ("_core0", "core 0 busy (anything)")):
                a, b = tp.get((placement, 1, key + suffix)), tp.get((placement, 2, key + suffix))
                out.append(f"| {placement} | {what} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    out += ["", "Sessions per worker (`session end` lines with worker=1/worker=2, each run):", "",
            "| placement | scenario | 2 workers: worker 1 / worker 2 |", "|---|---|---|"]
    for placement in placements:
        for key, label, _ in labels:
            out.append(f"| {placement} | {label} | {spread_cell(sp.get((placement, 2, key)))} |")
    if mem:
        out += ["", "| memory (anonymous PSS, KiB) | 1 worker (one process) median (min–max) | "
                "2 workers (master + 2) median (min–max) |", "|---|---|---|",
                f"| PSS before any session (whole service) | {cell(mem.get((1, 'base')))} | {cell(mem.get((2, 'base')))} |"]
        for n in IDLE:
            out.append(f"| KiB per idle logged-in session, {n:,} sessions | {cell(mem.get((1, f'mem{n}')))} | "
                       f"{cell(mem.get((2, f'mem{n}')))} |")
            out.append(f"| s to log in {n:,} sessions | {cell(mem.get((1, f'login{n}')))} | "
                       f"{cell(mem.get((2, f'login{n}')))} |")
        out += ["", "Idle sessions per worker (2 workers, worker 1 / worker 2, each run): "
                + "; ".join(f"{n:,}: {spread_cell(msp.get((2, f'idle{n}')))}" for n in IDLE)]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--placements", default="split,shared,own", help="comma-separated: " + ", ".join(PLACEMENTS))
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per session and NOOP run")
    ap.add_argument("--no-memory", action="store_true", help="skip the idle-session memory runs")
    ap.add_argument("--smoke", action="store_true", help="1 run, 1 s each, idle 20 and 100")
    ap.add_argument("--out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("workers.py: run as root (the data belongs to the pop3bench user; /proc of every process is read)")
    if os.cpu_count() < 2:
        sys.exit("workers.py: needs 2 cores")
    placements = [x for x in a.placements.split(",") if x]
    for x in placements:
        if x not in PLACEMENTS:
            sys.exit(f"unknown placement {x}: {', '.join(PLACEMENTS)}")
    global IDLE
    if a.smoke:
        IDLE = [20, 100]
    p = dict(duration=1.0 if a.smoke else a.duration, noop_commands=200 if a.smoke else 1000,
             hold=3.0 if a.smoke else 10.0)
    runs = 1 if a.smoke else max(1, a.runs)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    run = tempfile.mkdtemp(prefix="pop3-workers.", dir="/tmp")
    data = make_data(run)
    failures = []
    # Every maildrop opened once (pop3d.sizes written), so run 1 is not colder than the rest.
    server = start(run, data, 1, "split", "warmup")
    try:
        compare.pop3bench(server, "session", "--users", "u%04d", "--password", "p%04d", "--user-count", USERS,
                          "--concurrency", 16, "--count", USERS)
        compare.pop3bench(server, "idle", "--users", "i%05d", "--password", "pi%05d", "--user-count", max(IDLE),
                          "--hold", 0, "--concurrency", 100, "--count", max(IDLE))
        server.wait_quiet()
    finally:
        server.stop()
    tp, sp = throughput(run, data, p, runs, placements, failures)
    mem, msp = ({}, {}) if a.no_memory else memory(run, data, p, runs, failures)
    compare.finish(report(tp, sp, mem, msp, placements), runs=runs, started=started, run=run,
                   failures=failures, out=a.out, data=data)


if __name__ == "__main__":
    main()
