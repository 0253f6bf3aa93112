#!/usr/bin/env python3
"""What metrics cost (issue 13): pop3d with metrics off and on, side by side in one run:

    sudo python3 Benchmarks/metrics.py --runs 5 --out /tmp/metrics.md   # after swift build -c release

The scenarios of compare.py (`pop3bench session` at concurrency 16 and 128, 5 s; `pop3bench
noop`, 100 connections, 1,000 NOOPs each, 5 s), with compare.py's placement (every pop3d
process on core 0, pop3bench on core 1), a fresh server for each mode and run:

- off: no `metrics_listen`: no registry, no loop-turn observer, no counter calls.
- on:  `POP3D_METRICS_LISTEN=127.0.0.1:<free port>`, and a scraper thread of this script
       fetching `GET /metrics` once a second over one keep-alive connection for as long as
       the server runs, as Prometheus would (every scrape must be a 200 with pop3d's
       series). The off runs get no scraper.

Off and on alternate within each run and the order flips from run to run (off, on; on, off;
...). Each run also has one `--workers 2` pair (a master and two workers; with metrics on the
master serves `/metrics`, summing the workers' snapshots) for sessions/s at concurrency 128.

Per scenario: sessions/s or NOOP/s, p99, and pop3d's CPU seconds (utime+stime of every
process of the server, /proc) per 1,000 sessions or per 1,000,000 NOOPs. The table gives
medians (min–max) over the runs, the ratio of the medians on/off, and the median (min–max) of
the per-run on/off ratios (each run's pair ran back to back, so that ratio sees less of the
drift of this shared machine). Every "on" server must count what pop3bench did: at the end
its `/metrics` must show at least the NOOPs and sessions pop3bench counted (metrics really
on), and every pop3bench run must end with zero errors; a failed step is listed and the
exit status is 1.
"""
import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

USERS = 1024            # a multiple of every session concurrency (see mkdata.py); NOOP uses u0000..u0099
SESSION_CONCURRENCY = [16, 128]
NOOP_CONCURRENCY = 100
WORKERS_CONCURRENCY = 128
SCRAPE_INTERVAL = 1.0   # seconds, as a Prometheus job with scrape_interval: 1s
SCRAPE_TIMEOUT = 10.0   # seconds for one scrape (Prometheus' default scrape_timeout)
MODES = ("off", "on")


def log(text):
    compare.log(text)


def make_data(run):
    data = os.path.join(run, "data")
    log(f"creating data in {data}")
    subprocess.run([sys.executable, os.path.join(compare.HERE, "mkdata.py"), data, "--users", str(USERS),
                    "--messages", "10", "--huge", "0", "--big-mib", "0", "--idle", "0"], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)
    return data


class Scraper(threading.Thread):
    """GET /metrics every SCRAPE_INTERVAL seconds over one HTTP/1.1 keep-alive connection
    (opened again if the server closed it, as Prometheus' client does). Counts the scrapes,
    keeps the failures (not a 200, no pop3d series, a connection error) and the last body."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.reconnects = 0
        self.latencies = []
        self.body = b""
        self.conn = None

    def scrape(self):
        """One GET /metrics: (status, body); raises OSError/HTTPException on a broken connection."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=SCRAPE_TIMEOUT)
        self.conn.request("GET", "/metrics", headers={"Accept": "text/plain;version=0.0.4"})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.will_close:
            self.conn.close()
            self.conn = None
        return resp.status, body

    def once(self):
        started = time.monotonic()
        try:
            try:
                status, body = self.scrape()
            except (OSError, http.client.HTTPException):
                # An idle keep-alive connection the server closed: one new connection, one retry.
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                self.reconnects += 1
                status, body = self.scrape()
        except (OSError, http.client.HTTPException) as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            with self.lock:
                self.failures.append(f"{type(e).__name__}: {e}")
            return None
        took = time.monotonic() - started
        with self.lock:
            if status != 200 or b"pop3d_build_info" not in body:
                self.failures.append(f"status {status}, {len(body)} octets")
                return None
            self.ok += 1
            self.latencies.append(took)
            self.body = body
        return body

    def run(self):
        next_at = time.monotonic()
        while not self.stopping.is_set():
            self.once()
            next_at += SCRAPE_INTERVAL
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self.stopping.set()
        if self.is_alive():
            self.join(SCRAPE_TIMEOUT + 5)
        if self.conn is not None:
            self.conn.close()

    def counts(self):
        with self.lock:
            return self.ok, len(self.failures)


def series_sum(body, family, **labels):
    """Sum of the samples of `family` in an exposition body whose labels include `labels`."""
    total = 0.0
    pattern = re.compile(rb"^" + re.escape(family.encode()) + rb"(\{[^}]*\})?\s+(\S+)", re.M)
    for m in pattern.finditer(body):
        text = (m.group(1) or b"").decode()
        if all(f'{k}="{v}"' in text for k, v in labels.items()):
            total += float(m.group(2))
    return total


class Instance:
    """One pop3d (compare.Pop3d, compare.py's placement) with metrics off or on; with them on,
    a scraper runs from its start to its stop."""

    def __init__(self, run, data, mode, workers, tag):
        self.mode = mode
        env = {}
        self.metrics_port = None
        if mode == "on":
            self.metrics_port = compare.free_port()
            env["POP3D_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_port}"
        self.server = compare.Pop3d(run, data, compare.free_port(), extra_env=env, workers=workers,
                                    log_name=f"pop3d-{tag}.log")
        self.scraper = None
        # What pop3bench did against this server, for the final check of the counts.
        self.noops = 0
        self.sessions = 0

    def __enter__(self):
        try:
            self.server.start()
            if self.mode == "on":
                self.scraper = Scraper(self.metrics_port)
                if self.scraper.once() is None:
                    raise RuntimeError(f"first scrape of 127.0.0.1:{self.metrics_port} failed: "
                                       f"{self.scraper.failures[-1]}")
                self.scraper.start()
        except BaseException:
            self.server.stop()   # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, *exc):
        if self.scraper:
            self.scraper.stop()
        self.server.stop()
        return False

    def check_counts(self):
        """Metrics on: the server's /metrics shows at least what pop3bench counted (with
        workers the master sees each worker's snapshot of its last heartbeat: wait for it)."""
        if self.mode != "on":
            return
        seen = {}

        def caught_up():
            body = self.scraper.once()
            if body is None:
                return False
            seen["noop"] = series_sum(body, "pop3d_commands_total", command="NOOP")
            seen["sessions"] = series_sum(body, "pop3d_sessions_ended_total")
            return seen["noop"] >= self.noops and seen["sessions"] >= self.sessions
        try:
            compare.wait_until(caught_up, 15, "the metrics to count pop3bench's work", 0.5)
        except TimeoutError:
            raise compare.BenchError(f"/metrics shows {seen.get('noop')} NOOPs and {seen.get('sessions')} "
                                     f"ended sessions, pop3bench counted {self.noops} and {self.sessions}")


def bench(inst, scenario, *args):
    """One pop3bench run: (report, pop3d CPU seconds, scrapes during it)."""
    server = inst.server
    cpu = server.cpu()
    scrapes = inst.scraper.counts()[0] if inst.scraper else 0
    rep = compare.pop3bench(server, scenario, *args)
    cpu = server.cpu() - cpu
    scrapes = (inst.scraper.counts()[0] if inst.scraper else 0) - scrapes
    server.wait_quiet()
    inst.sessions += rep["sessions"]["ok"]
    inst.noops += rep["commands"].get("noop", 0)
    return rep, cpu, scrapes


def one_server(run, data, mode, workers, tag, steps, failures, label, scrape_log):
    log(f"{label}: metrics {mode}" + (f", {workers} workers" if workers > 1 else ""))
    try:
        with Instance(run, data, mode, workers, tag) as inst:
            for step in steps:
                step(inst)
            inst.check_counts()
            if inst.scraper:
                ok, failed = inst.scraper.counts()
                scrape_log.append((tag, ok, failed, inst.scraper.reconnects, list(inst.scraper.latencies),
                                   len(inst.scraper.body)))
                if failed:
                    raise compare.BenchError(f"{failed} failed scrapes, first: {inst.scraper.failures[0]}")
    except (compare.BenchError, TimeoutError, RuntimeError) as e:
        failures.append(f"{label}, metrics {mode}, {workers} worker(s): {e}")
        log(f"FAILED: {e}")


def measure(run, data, runs, duration, noop_commands, workers_pairs, failures):
    users = ["--users", "u%04d", "--password", "p%04d", "--user-count", USERS]
    noop_users = ["--users", "u%04d", "--password", "p%04d", "--user-count", NOOP_CONCURRENCY]
    results = {}    # (mode, key) -> [values per run]; key "sess16", "sess16_p99", "sess16_cpu", ...
    per_run = {}    # (run, mode, key) -> value, for the paired ratios
    scrape_log = []

    def putter(i, mode):
        def put(key, value):
            results.setdefault((mode, key), []).append(value)
            per_run[(i, mode, key)] = value
        return put

    for i in range(runs):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for mode in order:
            put = putter(i, mode)

            def sessions(inst, c, put=put):
                rep, cpu, scrapes = bench(inst, "session", *users, "--concurrency", c, "--duration", duration)
                put(f"sess{c}", rep["throughput"]["sessions_per_s"])
                put(f"sess{c}_p99", compare.p99_ms(rep, "session"))
                put(f"sess{c}_cpu", cpu / max(rep["sessions"]["ok"], 1) * 1000)
                put(f"sess{c}_busy", cpu / rep["elapsed_s"])
                put(f"sess{c}_scrapes", scrapes)

            def noop(inst, put=put):
                rep, cpu, scrapes = bench(inst, "noop", *noop_users, "--concurrency", NOOP_CONCURRENCY,
                                          "--duration", duration, "--commands", noop_commands)
                put("noop", rep["commands"]["noop"] / rep["elapsed_s"])
                put("noop_p99", compare.p99_ms(rep, "noop"))
                put("noop_cpu", cpu / max(rep["commands"]["noop"], 1) * 1_000_000)
                put("noop_busy", cpu / rep["elapsed_s"])
                put("noop_scrapes", scrapes)

            steps = [lambda inst, c=c: sessions(inst, c) for c in SESSION_CONCURRENCY] + [noop]
            one_server(run, data, mode, 1, f"{mode}-r{i + 1}", steps, failures,
                       f"run {i + 1}/{runs}", scrape_log)
        if i < workers_pairs:
            for mode in order:
                put = putter(i, mode)

                def sessions_w2(inst, put=put):
                    rep, cpu, scrapes = bench(inst, "session", *users, "--concurrency", WORKERS_CONCURRENCY,
                                              "--duration", duration)
                    put("w2", rep["throughput"]["sessions_per_s"])
                    put("w2_p99", compare.p99_ms(rep, "session"))
                    put("w2_cpu", cpu / max(rep["sessions"]["ok"], 1) * 1000)
                    put("w2_busy", cpu / rep["elapsed_s"])
                    put("w2_scrapes", scrapes)

                one_server(run, data, mode, 2, f"{mode}-w2-r{i + 1}", [sessions_w2], failures,
                           f"run {i + 1}/{runs}", scrape_log)
    return results, per_run, scrape_log


def cell(values):
    if not values:
        return "–"
    m = statistics.median(values)
    return f"{compare.fmt(m)} ({compare.fmt(min(values))}–{compare.fmt(max(values))})"


def ratios(results, per_run, key, runs):
    off, on = results.get(("off", key)), results.get(("on", key))
    of_medians = f"{statistics.median(on) / statistics.median(off):.3f}" if off and on else "–"
    paired = [per_run[(i, "on", key)] / per_run[(i, "off", key)] for i in range(runs)
              if (i, "on", key) in per_run and per_run.get((i, "off", key))]
    if not paired:
        return of_medians, "–"
    return of_medians, f"{statistics.median(paired):.3f} ({min(paired):.3f}–{max(paired):.3f})"


def report(results, per_run, scrape_log, runs):
    rows = []
    for c in SESSION_CONCURRENCY:
        rows += [(f"sess{c}", f"sessions/s, concurrency {c}"),
                 (f"sess{c}_p99", f"p99 ms, session, concurrency {c}"),
                 (f"sess{c}_cpu", f"pop3d CPU s per 1,000 sessions, concurrency {c}"),
                 (f"sess{c}_busy", f"cores busy, pop3d, session concurrency {c}")]
    rows += [("noop", f"NOOP/s, {NOOP_CONCURRENCY} connections"),
             ("noop_p99", "p99 ms, NOOP"),
             ("noop_cpu", "pop3d CPU s per 1,000,000 NOOPs"),
             ("noop_busy", "cores busy, pop3d, NOOP")]
    rows += [("w2", f"sessions/s, concurrency {WORKERS_CONCURRENCY}, --workers 2"),
             ("w2_p99", f"p99 ms, session, concurrency {WORKERS_CONCURRENCY}, --workers 2"),
             ("w2_cpu", f"pop3d CPU s per 1,000 sessions (master + workers), --workers 2"),
             ("w2_busy", "cores busy, pop3d (master + workers), --workers 2")]
    out = ["| scenario | metrics off, median (min–max) | metrics on, median (min–max) | on / off (medians) "
           "| on / off per run, median (min–max) |", "|---|---|---|---|---|"]
    for key, label in rows:
        off, on = results.get(("off", key)), results.get(("on", key))
        if not off and not on:
            continue
        a, b = ratios(results, per_run, key, runs)
        out.append(f"| {label} | {cell(off)} | {cell(on)} | {a} | {b} |")
    if scrape_log:
        ok = sum(s[1] for s in scrape_log)
        failed = sum(s[2] for s in scrape_log)
        reconnects = sum(s[3] for s in scrape_log)
        lat = sorted(x for s in scrape_log for x in s[4])
        during = {key: results.get(("on", f"{key}_scrapes"), []) for key in
                  [f"sess{c}" for c in SESSION_CONCURRENCY] + ["noop", "w2"]}
        out += ["", f"Scrapes of the \"on\" servers: {ok} answered 200 with pop3d's series, {failed} failed, "
                f"{reconnects} new connections after the server closed an idle one; "
                f"{len(scrape_log)} servers; scrape time median {1000 * statistics.median(lat):.1f} ms, "
                f"max {1000 * max(lat):.1f} ms; last body {scrape_log[-1][5]:,} octets (--workers 2: "
                f"{next((s[5] for s in scrape_log if '-w2-' in s[0]), 0):,}). Scrapes during each "
                "measurement (per run): " + "; ".join(f"{k} {', '.join(str(int(v)) for v in vs)}"
                                                      for k, vs in during.items() if vs) + "."]
    return "\n".join(out)


def machine_line():
    def first(path, prefix):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"
    mem_kib = first("/proc/meminfo", "MemTotal").split()[0]
    return (f"{os.cpu_count()} cores, \"{first('/proc/cpuinfo', 'model name')}\", "
            f"{int(mem_kib) / 1024 / 1024:.0f} GB, kernel {os.uname().release}, Python {sys.version.split()[0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per session and NOOP run")
    ap.add_argument("--workers-pairs", type=int, default=None,
                    help="runs that also get the --workers 2 pair (default: every run)")
    ap.add_argument("--smoke", action="store_true", help="1 run, 1 s each")
    ap.add_argument("--out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("metrics.py: run as root (the data belongs to the pop3bench user; /proc of every process is read)")
    if os.cpu_count() < 2:
        sys.exit("metrics.py: needs 2 cores")
    runs = 1 if a.smoke else max(1, a.runs)
    duration = 1.0 if a.smoke else a.duration
    noop_commands = 200 if a.smoke else 1000
    workers_pairs = runs if a.workers_pairs is None else a.workers_pairs
    started = time.monotonic()
    started_at = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    load_start = " ".join(open("/proc/loadavg").read().split()[:3])
    run = tempfile.mkdtemp(prefix="pop3-metrics.", dir="/tmp")
    data = make_data(run)
    failures = []
    # Every maildrop opened once (pop3d.sizes written), so run 1 is not colder than the rest.
    log("warm-up")
    server = compare.Pop3d(run, data, compare.free_port(), log_name="pop3d-warmup.log")
    try:
        server.start()
        compare.pop3bench(server, "session", "--users", "u%04d", "--password", "p%04d", "--user-count", USERS,
                          "--concurrency", 16, "--count", USERS)
        server.wait_quiet()
    finally:
        server.stop()
    results, per_run, scrape_log = measure(run, data, runs, duration, noop_commands, workers_pairs, failures)
    text = report(results, per_run, scrape_log, runs)
    text = (f"Machine: {machine_line()}; load average at the start {load_start}; "
            f"started {started_at}.\n\n"
            + text)
    compare.finish(text, runs=runs, started=started, run=run, failures=failures, out=a.out, data=data)


if __name__ == "__main__":
    main()
