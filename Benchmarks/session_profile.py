#!/usr/bin/env python3
"""Per-session cost of a POP3 server (issue 17): system calls by name and user-space instructions
per `pop3bench session` session, for pop3d and for the minimal C responder (the ceiling).

    sudo python3 Benchmarks/session_profile.py                         # after swift build -c release
    sudo python3 Benchmarks/session_profile.py --pop3d /tmp/before/pop3d --servers pop3d
    sudo python3 Benchmarks/session_profile.py --pop3d before=/tmp/before/pop3d --pop3d after=.build/release/pop3d
    sudo python3 Benchmarks/session_profile.py --servers minimal --no-callgrind

Data: USERS users (u0000.., the compare.py/mkdata.py layout) with 10 messages of about 4 KiB
each, created under /tmp (or `--data DIR`: an existing mkdata.py directory). Every server is
pinned to core 0, pop3bench to core 1. Before anything is measured a warm-up session visits
every maildrop once (pop3d writes its size caches), so the figures are the steady state.

A session is pop3bench's `session` scenario: connect, greeting, USER, PASS, STAT, LIST, UIDL,
RETR of every message, QUIT. Each figure is taken over two windows of a fixed number of
sessions (COUNTS, default 128 and 512, at concurrency 16) in the same server process, and is
(window 2 - window 1) / (sessions 2 - sessions 1): whatever a window costs regardless of its
sessions (the perf or callgrind start and stop, the idle loop turns until the server is quiet)
cancels out.

- System calls: `perf stat -e 'syscalls:sys_enter_*' -p PID` (the kernel's syscall-entry
  tracepoints, one counter per system call, counted in the kernel) around each window. Chosen
  over `strace -f -c` because it does not stop the server at every call (strace's ptrace
  stops slow it down several times and change how many events each epoll_wait returns, hence
  the counts); `--strace` uses `strace -f -c -p PID` instead where perf is missing. perf
  starts disabled and is enabled and disabled through its control FIFO (`-D -1 --control`,
  acknowledged), so a window holds exactly its sessions. Every thread of the process counts
  (the warm-up starts pop3d's worker pool before the windows). The per-window median of RUNS repetitions is reported.
- Instructions: the server runs under `valgrind --tool=callgrind` (pop3d: a copy without DWARF,
  which valgrind 3.19 cannot read); around each window the counters are zeroed and dumped
  (`callgrind_control -z` / `-d`); Ir (instructions executed in user space by every thread)
  per session from the two dumps as above. Deterministic to a fraction of a percent, unlike
  times on this shared machine. The top functions are the per-session difference of the two
  dumps' `callgrind_annotate --inclusive=yes` (and of the exclusive, self, figures),
  Swift names demangled with `swift demangle --simplified`.

The minimal responder (Benchmarks/minimal_responder.c) is built with `cc -O2` into the run
directory. pop3d runs with its default log level `info` (the session-end line is written, as
in production) unless `--log-level` says otherwise.
"""
import argparse
import os
import re
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from metrics_callgrind import total_ir  # noqa: E402  (Ir of a callgrind dump)

HERE = compare.HERE
MESSAGES = 10
# The CPU-time windows are this many times the syscall windows (see syscalls()).
CPU_SCALE = 4
# Where a pop3d session's instructions go (issue 17's items), from the per-session difference of
# the two dumps: (label, "incl" or "self", regex). "incl": the largest inclusive figure of the
# functions matching (a specialized copy and its thunk both match: the largest, not the sum);
# "self": the sum of the matching functions' own instructions.
AREAS = [
    ("RETR: POP3Connection.openMessage (open, read, encode)", "incl", r"POP3Connection\.openMessage\("),
    ("RETR encoder: MessageEncoder.encode", "incl", r"MessageEncoder\.encode"),
    ("login listing: Maildrop.open", "incl", r"Maildrop\.open\(path:"),
    ("  of which Maildrop.list", "incl", r"Maildrop\.list\("),
    ("session end: POP3Connection.connectionClosed", "incl", r"POP3Connection\.connectionClosed\("),
    ("  of which log lines written: LogHandler.log (at info: the session-end line)", "incl", r"LogHandler\.log\(event:"),
    ("reference counting (self: swift_retain/release, RefCounts, unowned, weak)", "self",
     r"^(swift_(retain|release|unowned|weak|nonatomic_retain|nonatomic_release|bridgeObject)|"
     r"bool swift::RefCounts|swift::RefCounts|swift::HeapObjectSideTableEntry)"),
    ("malloc and free (self: glibc malloc.c, swift_allocObject, swift_slowAlloc/Dealloc)", "self",
     r"malloc/malloc\.c:|^swift_(allocObject|slowAlloc|slowDealloc|deallocClassInstance|deallocObject)"),
]


def log(text):
    print(f"[session_profile {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def make_server(kind, a, run, data, callgrind_prefix=None):
    wrapper = []
    if callgrind_prefix:
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind_prefix}.%p"]
    if kind == "minimal":
        return compare.Minimal(run, data, compare.free_port(), a.minimal_bin, wrapper, start_timeout=120)
    env = {"USER": compare.BENCH_USER, "LOGNAME": compare.BENCH_USER}
    binary = a.binaries[kind]
    if callgrind_prefix:
        # valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes: a copy without it
        # keeps the symbol table (as Benchmarks/metrics_callgrind.py does).
        binary = os.path.join(run, f"{kind}-nodwarf")
        if not os.path.exists(binary):
            subprocess.run(["objcopy", "--strip-debug", a.binaries[kind], binary], check=True)
        # Started as the data's owner (setpriv execs: the PID is pop3d's) so vgdb finds it.
        wrapper = ["setpriv", f"--reuid={compare.BENCH_USER}", f"--regid={compare.BENCH_USER}",
                   "--init-groups", *wrapper]
    return compare.Pop3d(run, data, compare.free_port(), extra_env=env, log_level=a.log_level,
                         log_name=f"{kind}{'-callgrind' if callgrind_prefix else ''}.log", wrapper=wrapper,
                         start_timeout=120 if callgrind_prefix else 30, binary=binary)


def bench(server, a, count):
    os.environ["COMPARE_POP3BENCH_BIN"] = a.pop3bench
    rep = compare.pop3bench(server, "session", "--users", "u%04d", "--password", "p%04d",
                            "--user-count", a.users, "--concurrency", a.concurrency, "--count", count,
                            timeout=300)
    server.wait_quiet()
    if rep["sessions"]["ok"] != count:
        raise compare.BenchError(f"{server.name}: {rep['sessions']['ok']} of {count} sessions ok")
    return rep


def warm_up(server, a):
    bench(server, a, a.users)


# ---------------------------------------------------------------- system calls

def cpu_ticks(pid):
    """(utime, stime) of every thread of `pid` so far, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_window(server, a, count):
    """The server's (user, system) CPU ticks over one window of `count` sessions, untraced."""
    before = cpu_ticks(server.proc.pid)
    bench(server, a, count)
    after = cpu_ticks(server.proc.pid)
    return after[0] - before[0], after[1] - before[1]


def perf_window(server, a, count):
    """{syscall name: count} over one window of `count` sessions."""
    out = os.path.join(server.run, f"perf-{server.name}-{count}.csv")
    if a.strace:
        cmd = ["strace", "-f", "-c", "-U", "name,calls", "-o", out, "-p", str(server.proc.pid)]
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)   # attached to every thread (strace prints nothing to wait for)
        if tracer.poll() is not None:
            raise RuntimeError(f"strace exited: {tracer.stderr.read().strip()[-300:]}")
        try:
            bench(server, a, count)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(60)
    else:
        # perf starts with its counters disabled (-D -1) and enables them on our command,
        # acknowledging once they count: the window is exactly the sessions, however long
        # opening ~350 counters per thread takes on a loaded machine.
        ctl, ack = out + ".ctl", out + ".ack"
        for fifo in (ctl, ack):
            if os.path.exists(fifo):
                os.unlink(fifo)
            os.mkfifo(fifo, 0o600)
        ack_fd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)   # so perf's open for writing succeeds
        tracer = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out, "-D", "-1", "--control",
                                   f"fifo:{ctl},{ack}", "-e", "syscalls:sys_enter_*", "-p", str(server.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ctl_fd = os.open(ctl, os.O_RDWR)

        def command(word):
            os.write(ctl_fd, word.encode() + b"\n")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if tracer.poll() is not None:
                    raise RuntimeError(f"perf exited: {tracer.stderr.read().strip()[-300:]}")
                ready, _, _ = select.select([ack_fd], [], [], 0.2)
                if ready and b"ack" in os.read(ack_fd, 64):
                    return
            raise RuntimeError(f"perf did not acknowledge '{word}' within 60 s")
        try:
            command("enable")
            bench(server, a, count)
            command("disable")
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(60)
            os.close(ctl_fd)
            os.close(ack_fd)
    counts = {}
    with open(out) as f:
        for line in f:
            if a.strace:
                # "name calls" rows between the dashed lines (-U name,calls)
                m = re.match(r"\s*([a-z_0-9]+)\s+(\d+)\s*$", line)
                if m and m.group(1) != "total":
                    counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
                continue
            fields = line.strip().split(",")
            if len(fields) < 3 or not fields[2].startswith("syscalls:sys_enter_"):
                continue
            try:
                n = int(fields[0])
            except ValueError:
                continue     # <not counted> / <not supported>
            if n:
                counts[fields[2][len("syscalls:sys_enter_"):]] = n
    return counts


def syscalls(kind, a, run, data):
    """{name: per-session count} (median over the runs of the two-window difference)."""
    server = make_server(kind, a, run, data)
    per_run = []
    try:
        server.start()
        warm_up(server, a)
        n1, n2 = a.counts
        for i in range(a.runs):
            w1 = perf_window(server, a, n1)
            w2 = perf_window(server, a, n2)
            per = {k: (w2.get(k, 0) - w1.get(k, 0)) / (n2 - n1) for k in set(w1) | set(w2)}
            # Windows CPU_SCALE times larger without perf, for the user/system split of the CPU
            # time (/proc counts in clock ticks of 10 ms: a few hundred sessions are a few ticks).
            c1, c2 = cpu_window(server, a, n1 * CPU_SCALE), cpu_window(server, a, n2 * CPU_SCALE)
            cpu = {k: (c2[j] - c1[j]) / ((n2 - n1) * CPU_SCALE) / compare.CLOCK_TICKS * 1000
                   for j, k in enumerate((" utime", " stime"))}
            log(f"{kind}: syscalls run {i + 1}: {sum(per.values()):.2f} per session; CPU ms per session "
                f"user {cpu[' utime']:.3f}, system {cpu[' stime']:.3f}")
            per_run.append((per, cpu))
    finally:
        server.stop()
    names = set().union(*(r[0] for r in per_run))
    return {k: statistics.median(r[0].get(k, 0.0) for r in per_run) for k in names}, \
        [sum(r[0].values()) for r in per_run], \
        {k: statistics.median(r[1][k] for r in per_run) for k in (" utime", " stime")}


# ---------------------------------------------------------------- instructions

def callgrind_control(*args):
    out = subprocess.run(["runuser", "-u", compare.BENCH_USER, "--", "callgrind_control", *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(map(str, args))}: {out.stderr.strip() or out.stdout.strip()}")


def functions(path, inclusive):
    """{function: Ir} from callgrind_annotate (names demangled, object paths cut)."""
    out = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
                          path], capture_output=True, text=True, timeout=600).stdout
    out = re.sub(r"\s*\[/[^\]]*\]", "", out)
    try:
        out = subprocess.run(["swift", "demangle", "--simplified"], input=out, capture_output=True, text=True,
                             timeout=600).stdout or out
    except OSError:
        pass
    result = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(?:\?\?\?:)?(.*)$", line)
        if not m or not m.group(2).strip() or m.group(2).strip().startswith(("PROGRAM TOTALS", "file:function")):
            continue
        name = m.group(2).strip()
        result[name] = result.get(name, 0) + int(m.group(1).replace(",", ""))
    return result


def instructions(kind, a, run, data):
    """(Ir per session, [(inclusive Ir per session, function)], [(self Ir per session, function)])."""
    prefix = os.path.join(run, f"callgrind.{kind}")
    server = make_server(kind, a, run, data, callgrind_prefix=prefix)
    dumps = []
    try:
        server.start()
        pid = server.proc.pid
        warm_up(server, a)
        for count in a.counts:
            before = set(os.listdir(run))
            callgrind_control("-z", pid)
            bench(server, a, count)
            callgrind_control("-d", f"sessions-{count}", pid)
            compare.wait_until(lambda: {f for f in os.listdir(run) if f.startswith(os.path.basename(prefix))}
                               - before, 60, "callgrind dump", 0.2)
            time.sleep(0.5)   # written completely
            new = [os.path.join(run, f) for f in set(os.listdir(run)) - before
                   if f.startswith(os.path.basename(prefix))]
            dumps.append(max(new, key=os.path.getmtime))
    finally:
        server.stop()
    n1, n2 = a.counts
    ir = (total_ir(dumps[1]) - total_ir(dumps[0])) / (n2 - n1)
    log(f"{kind}: {ir:,.0f} Ir per session")
    tops, full = [], {}
    for inclusive in (True, False):
        f1, f2 = functions(dumps[0], inclusive), functions(dumps[1], inclusive)
        per = {name: (f2.get(name, 0) - f1.get(name, 0)) / (n2 - n1) for name in set(f1) | set(f2)}
        full["incl" if inclusive else "self"] = per
        # The frames that hold the whole run ((below main), main, the event loop's run) say nothing.
        per = {name: v for name, v in per.items() if v < 0.995 * ir}
        tops.append(sorted(((v, k) for k, v in per.items()), reverse=True)[:a.top])
    areas = []
    for label, kind, pattern in AREAS:
        values = [v for name, v in full[kind].items() if re.search(pattern, name)]
        if values:
            areas.append((label, max(values) if kind == "incl" else sum(values)))
    return ir, tops[0], tops[1], areas


# ---------------------------------------------------------------- report

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pop3d", action="append", metavar="[LABEL=]PATH",
                    help="a pop3d binary (default .build/release/pop3d); repeat to measure several in one "
                    "run, e.g. --pop3d before=/tmp/before/pop3d --pop3d after=.build/release/pop3d")
    ap.add_argument("--pop3bench", default=os.path.join(compare.ROOT, ".build/release/pop3bench"))
    ap.add_argument("--servers", default="pop3d minimal", help="'pop3d', 'minimal' or both")
    ap.add_argument("--data", help="an existing mkdata.py directory (default: a new one with USERS users)")
    ap.add_argument("--users", type=int, default=128, help="a multiple of the concurrency")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--counts", default="128,512", help="the two windows' session counts")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the syscall windows (median)")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--strace", action="store_true", help="count syscalls with strace -f -c, not perf")
    ap.add_argument("--no-syscalls", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    a.counts = [int(x) for x in a.counts.split(",")]
    if len(a.counts) != 2 or a.counts[1] <= a.counts[0]:
        sys.exit("--counts: two increasing session counts, e.g. 128,512")
    if a.users % a.concurrency:
        sys.exit("--users must be a multiple of --concurrency (no two live sessions share a maildrop)")
    if os.geteuid() != 0:
        sys.exit("session_profile.py: run as root (perf tracepoints, setpriv, the data's owner)")
    a.binaries = {}
    for i, spec in enumerate(a.pop3d or [os.path.join(compare.ROOT, ".build/release/pop3d")]):
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", label) or ("pop3d" if len(a.pop3d or [1]) == 1 else f"pop3d{i + 1}")
        if label in a.binaries or label == "minimal":
            sys.exit(f"--pop3d: label {label} given twice")
        a.binaries[label] = os.path.abspath(path)
    servers = []
    for s in a.servers.split():
        if s == "pop3d":
            servers += list(a.binaries)
        elif s == "minimal":
            servers.append(s)
        else:
            sys.exit(f"unknown server {s}")
    # perf stat opens one counter per tracepoint and thread.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    run = tempfile.mkdtemp(prefix="pop3-session-profile.", dir="/tmp")
    os.chmod(run, 0o777)   # callgrind (as the data's owner) writes its dumps here
    if a.data:
        data = a.data
    else:
        data = os.path.join(run, "data")
        subprocess.run([sys.executable, os.path.join(HERE, "mkdata.py"), data, "--users", str(a.users),
                        "--messages", str(MESSAGES), "--huge", "0", "--huge2", "0", "--big-mib", "0",
                        "--idle", "0"], check=True)
        subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)
    if "minimal" in servers:
        a.minimal_bin = compare.build_minimal(run)
    a.pop3bench = os.path.abspath(a.pop3bench)

    lines = [f"Sessions: pop3bench session, {a.users} users x {MESSAGES} messages (~4 KiB), concurrency "
             f"{a.concurrency}; windows of {a.counts[0]} and {a.counts[1]} sessions, figures = difference / "
             f"{a.counts[1] - a.counts[0]}. pop3d (log level {a.log_level}): "
             + ", ".join(f"{label} = {path}" for label, path in a.binaries.items()) + ".", ""]
    failures = []
    sys_results, ir_results = {}, {}
    for s in servers:
        try:
            if not a.no_syscalls:
                log(f"{s}: system calls ({'strace -f -c' if a.strace else 'perf stat syscalls:sys_enter_*'})")
                sys_results[s] = syscalls(s, a, run, data)
            if not a.no_callgrind:
                log(f"{s}: instructions (callgrind)")
                ir_results[s] = instructions(s, a, run, data)
        except (compare.BenchError, TimeoutError, RuntimeError, OSError, subprocess.CalledProcessError) as e:
            failures.append(f"{s}: {e}")
            log(f"FAILED: {e}")

    if sys_results:
        method = "strace -f -c -p PID" if a.strace else "perf stat -e 'syscalls:sys_enter_*' -p PID"
        lines += [f"System calls per session ({method}; median of {a.runs} runs):", ""]
        names = sorted(set().union(*(r[0] for r in sys_results.values())),
                       key=lambda k: -max(r[0].get(k, 0) for r in sys_results.values()))
        lines.append("| syscall | " + " | ".join(sys_results) + " |")
        lines.append("|---|" + "---|" * len(sys_results))
        for k in names:
            vals = [r[0].get(k, 0.0) for r in sys_results.values()]
            if max(abs(v) for v in vals) < 0.005:
                continue
            lines.append(f"| {k} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
        lines.append("| **total** | " + " | ".join(
            f"**{sum(r[0].values()):.2f}** ({min(r[1]):.2f}–{max(r[1]):.2f})" for r in sys_results.values()) + " |")
        lines.append("")
        lines += [f"CPU ms per session (/proc/PID/stat utime and stime, {compare.CLOCK_TICKS} ticks/s, two more "
                  f"windows of {CPU_SCALE}x the sessions without perf; a timing: it moves with the machine's load; median of {a.runs}):", "",
                  "| server | user | system |", "|---|---|---|"]
        lines += [f"| {s} | {r[2][' utime']:.3f} | {r[2][' stime']:.3f} |" for s, r in sys_results.items()]
        lines.append("")
    if ir_results:
        lines += ["User-space instructions per session (callgrind Ir, every thread):", ""]
        lines += [f"- {s}: {r[0]:,.0f}" for s, r in ir_results.items()]
        for s, (ir, _, _, areas) in ir_results.items():
            if areas and s != "minimal":
                lines += ["", f"{s}: where the instructions go (Ir per session, share of the session):", "",
                          "| area | Ir per session | share |", "|---|---|---|"]
                lines += [f"| {label} | {v:,.0f} | {v / ir * 100:.1f} % |" for label, v in areas]
        for s, (ir, inclusive, own, _) in ir_results.items():
            for title, rows in ((f"inclusive", inclusive), (f"self", own)):
                lines += ["", f"{s}: top {a.top} functions by {title} Ir per session (frames holding the "
                          "whole run left out):", ""]
                lines += [f"    {v:>10,.0f}  {v / ir * 100 if ir else 0:5.1f} %  {fn[:150]}" for v, fn in rows]
        lines.append("")
    text = "\n".join(lines)
    compare.finish(text, runs=a.runs, started=started, run=run, failures=failures, out=a.out,
                   data=data if not a.data else os.path.join(run, "no-data"))


if __name__ == "__main__":
    main()
