#!/usr/bin/env python3
"""The body of compare.sh: runs the same pop3bench scenarios against pop3d and Dovecot on the
same data and prints one markdown table (medians of N runs, spread min-max, ratio pop3d/Dovecot).

`--servers` may also name `minimal`: Benchmarks/minimal_responder.c (issue 17), the ceiling
for the session rows (it serves nothing else), measured in the same run as the others; and
`pop3d-base`: another pop3d binary (`--base-bin PATH`, e.g. the previous main's release build),
for a before/after ratio (`pop3d/pop3d-base`) taken in the same run.

compare.sh builds, installs Dovecot, raises RLIMIT_NOFILE and then runs this file; it is a
separate file only because JSON, /proc sampling and medians are clearer in Python than in bash.

How each number is taken (also printed under the table):
- Every server is pinned to core 0 (`taskset -c 0`; Dovecot's whole process tree inherits the
  mask from its master), pop3bench to core 1.
- Memory: PSS of anonymous and shared-memory pages (Pss_Anon + Pss_Shmem) from
  /proc/PID/smaps_rollup summed over the server's process tree (pop3d: one
  process; Dovecot: the master and every descendant), sampled once every idle session is
  logged in (pop3d: its sd_notify STATUS= "N logged in", read from a NOTIFY_SOCKET we own;
  Dovecot: the number of `pop3` processes, one per logged-in session), minus the same sum
  sampled just before pop3bench started, divided by the session count.
- Time to log in N sessions: pop3bench `idle` starts all N at once and holds each for H
  seconds after its login; its elapsed time minus H is the time until the last login (plus
  one QUIT round trip).
- CPU per session: utime+stime (clock ticks) of every live process of the server's tree plus
  the master's cutime+cstime (its reaped children: Dovecot's pop3 and pop3-login processes),
  before and after the session run at the highest concurrency, divided by the sessions done.
"""
import argparse
import json
import os
import pwd
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH_USER = "pop3bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Scenario sizes. `users` must be a multiple of every session concurrency (see mkdata.py).
FULL = dict(users=1024, messages=10, huge=10_000, huge2=100_000, big_mib=10, idle=[1000, 10_000],
            session_concurrency=[1, 16, 128], session_duration=5.0, noop_duration=5.0,
            noop_commands=1000, retr_commands=50, hold={"pop3d": 10.0, "dovecot": 30.0},
            hold_per_1000={"pop3d": 0.5, "dovecot": 25.0})
SMOKE = dict(users=128, messages=10, huge=100, huge2=1_000, big_mib=1, idle=[20, 100],
             session_concurrency=[1, 16, 128], session_duration=1.0, noop_duration=1.0,
             noop_commands=200, retr_commands=3, hold={"pop3d": 3.0, "dovecot": 5.0},
             hold_per_1000={"pop3d": 0.5, "dovecot": 12.0})
NOOP_CONCURRENCY = 100
# No single wait below may take longer than this (server start, drain, logins).
WAIT_LIMIT = 300.0
# pop3d holds two descriptors per logged-in session: the socket and the maildrop lock.
POP3D_FDS_PER_SESSION = 2


def pop3d_processes(sessions):
    """How many pop3d processes (sharing the port with SO_REUSEPORT, all pinned to core 0) it
    takes to hold `sessions` logged-in sessions under this machine's hard RLIMIT_NOFILE, which
    root cannot raise in this sandbox (20,000 here: one process holds at most ~9,990 sessions).
    10 % headroom for the kernel's uneven spread of connections over the processes."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 1
    k = 1
    while POP3D_FDS_PER_SESSION * sessions / k * 1.1 + 256 > hard:
        k += 1
    return k


def log(text):
    print(f"[compare {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------- /proc sampling

def read_stat(pid):
    """(ppid, comm, utime+stime, cutime+cstime) in ticks, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    close = text.rfind(")")
    comm = text[text.find("(") + 1:close]
    fields = text[close + 2:].split()
    # fields[0] is state (field 3); utime is field 14, so index 11.
    return int(fields[1]), comm, int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def tree(root):
    """{pid: (comm, cpu ticks, children's cpu ticks)} for root and every descendant."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st:
                stats[int(name)] = st
    children = {}
    for pid, st in stats.items():
        children.setdefault(st[0], []).append(pid)
    result, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            result[pid] = stats[pid][1:]
            todo.extend(children.get(pid, []))
    return result


def pss_kib(pids):
    """PSS of anonymous and shared-memory pages (Pss_Anon + Pss_Shmem), summed. The file-backed
    part (Pss_File: program text and shared libraries) is left out: it does not grow with
    sessions, but it shrinks when pop3bench maps the same libraries (the Swift runtime, libc)
    and takes its share of their pages, which made a server's per-session delta negative at
    small N."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                        total += int(line.split()[1])
        except OSError:
            pass  # exited between listing and reading: it holds no memory any more
    return total


def cpu_seconds(root):
    procs = tree(root)
    ticks = sum(cpu for _, cpu, _ in procs.values())
    if root in procs:
        ticks += procs[root][2]
    return ticks / CLOCK_TICKS


# ---------------------------------------------------------------- servers

class Server:
    name = "?"

    def __init__(self, run, data, port):
        self.run, self.data, self.port = run, data, port
        self.proc = None

    def root_pids(self):
        return [self.proc.pid]

    def pss(self):
        return sum(pss_kib(tree(pid)) for pid in self.root_pids())

    def cpu(self):
        return sum(cpu_seconds(pid) for pid in self.root_pids())

    def wait_port(self):
        def accepts():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(5)
                    return s.recv(512).startswith(b"+OK")
            except OSError:
                return False
        wait_until(accepts, 30, f"{self.name} greeting on port {self.port}")


class Pop3d(Server):
    name = "pop3d"

    def __init__(self, run, data, port, processes=1, extra_env=None, workers=1, cpus="0",
                 log_level="warning", log_name="pop3d.log", wrapper=None, start_timeout=30, binary=None,
                 userdb_args=None):
        """`processes`: separate pop3d processes sharing the port (SO_REUSEPORT). `workers`:
        `--workers N` of each (one master and N worker processes; 1 = the single process).
        `cpus`: the taskset CPU list every process inherits, or None for no pinning.
        `wrapper`: arguments run before pop3d's path (e.g. valgrind and its options);
        `start_timeout`: seconds to wait for READY=1 (longer under valgrind); `binary`: another
        pop3d than the release build's (e.g. a copy without DWARF for valgrind). `userdb_args`:
        the users and mail location flags instead of the data's passwd-file and
        `maildir:DATA/mail/%u/Maildir` (e.g. `--passdb sql ...`, Benchmarks/sql_logins.py)."""
        super().__init__(run, data, port)
        self.wrapper = list(wrapper or [])
        self.start_timeout = start_timeout
        self.binary = binary or os.environ.get("COMPARE_POP3D_BIN") or os.path.join(ROOT, ".build/release/pop3d")
        self.userdb_args = list(map(str, userdb_args)) if userdb_args else [
            "--passwd-file", os.path.join(data, "passwd"), "--mail", f"maildir:{data}/mail/%u/Maildir"]
        self.processes = processes
        self.workers = workers
        self.cpus = cpus
        self.log_level = log_level
        self.log_path = os.path.join(run, log_name)
        self.extra_env = extra_env or {}
        self.procs = []
        # Per sending PID (SO_PASSCRED): several processes report to one socket.
        self.logged_in_by_pid = {}
        self.ready = set()
        self.notify_path = os.path.join(run, "pop3d-notify.sock")
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.bind(self.notify_path)
        # pop3d switches to the data's owner after binding and still has to reach this socket.
        os.chmod(self.notify_path, 0o777)
        self.notify.settimeout(0.2)
        self.stop_reader = False
        threading.Thread(target=self.read_notify, daemon=True).start()

    def read_notify(self):
        # STATUS=<c> connections, <n> logged in, <s> sessions served (ServerRunner.statusLine)
        creds_size = struct.calcsize("iII")
        while not self.stop_reader:
            try:
                data, ancillary, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(creds_size))
            except (socket.timeout, OSError):
                continue
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:creds_size])[0]
            for line in data.decode(errors="replace").splitlines():
                if line == "READY=1":
                    self.ready.add(pid)
                elif line.startswith("STATUS=") and "logged in" in line:
                    try:
                        self.logged_in_by_pid[pid] = int(line.split(",")[1].split()[0])
                    except (IndexError, ValueError):
                        pass

    def root_pids(self):
        return [proc.pid for proc in self.procs]

    def start(self):
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, POP3D_USER=BENCH_USER,
                   POP3D_MAX_CONNECTIONS_PER_IP="60000", POP3D_MAX_UNAUTHENTICATED="60000")
        env.update(self.extra_env)
        if self.processes > 1:
            env["POP3D_REUSE_PORT"] = "true"
        cmd = (["taskset", "-c", self.cpus] if self.cpus else []) + self.wrapper + [
               self.binary, "serve",
               "--listen", f"127.0.0.1:{self.port}", *self.userdb_args, "--log-level", self.log_level]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.log = open(self.log_path, "ab")
        for _ in range(self.processes):
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log))
        self.proc = self.procs[0]

        def all_ready():
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"pop3d exited with {proc.returncode} during start")
            return self.ready >= set(self.root_pids())
        wait_until(all_ready, self.start_timeout, f"READY=1 from {self.processes} pop3d process(es)")
        self.wait_port()

    def count_logged_in(self):
        pids = set(self.root_pids())
        return sum(n for pid, n in self.logged_in_by_pid.items() if pid in pids)

    def wait_quiet(self):
        wait_until(lambda: self.count_logged_in() == 0, WAIT_LIMIT, "pop3d sessions to end", 0.2)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stop_reader = True
        self.notify.close()
        self.log.close()


class Dovecot(Server):
    name = "dovecot"

    def __init__(self, run, data, port, template="dovecot.conf.in", substitutions=None, cpus="0"):
        """`template`: a file of Benchmarks/ whose @KEY@s are replaced (@RUN@, @DATA@, @UID@,
        @GID@, @PORT@, and `substitutions`); `cpus`: the master's taskset list (every Dovecot
        process inherits it), or None for no pinning."""
        super().__init__(run, data, port)
        self.cpus = cpus
        user = pwd.getpwnam(BENCH_USER)
        with open(os.path.join(HERE, template)) as f:
            conf = f.read()
        for key, value in {"@RUN@": run, "@DATA@": data, "@UID@": str(user.pw_uid),
                           "@GID@": str(user.pw_gid), "@PORT@": str(port), **(substitutions or {})}.items():
            conf = conf.replace(key, value)
        self.conf = os.path.join(run, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self):
        # -F: the master stays our child, so its PID is the root of the tree we sample and stop.
        self.log = open(os.path.join(self.run, "dovecot.stderr"), "ab")
        self.proc = subprocess.Popen((["taskset", "-c", self.cpus] if self.cpus else []) + ["dovecot", "-F", "-c", self.conf],
                                     stdout=self.log, stderr=self.log)
        self.wait_port()

    def sessions(self):
        return sum(1 for comm, _, _ in tree(self.proc.pid).values() if comm == "pop3")

    def count_logged_in(self):
        return self.sessions()

    def wait_quiet(self):
        # Logged-out sessions' processes exit and are reaped by the master asynchronously.
        wait_until(lambda: self.sessions() == 0, WAIT_LIMIT, "dovecot pop3 processes to exit", 0.5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            subprocess.run(["doveadm", "-c", self.conf, "stop"], capture_output=True, timeout=60)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Minimal(Server):
    """Benchmarks/minimal_responder.c (issue 17): the ceiling for the session rows, not a
    server (no authentication, locking or limits; only the commands `pop3bench session` sends).
    Run as the data's owner (under valgrind, vgdb finds only its own user's processes);
    `wrapper`: arguments run before the responder's path (e.g. valgrind and its options)."""
    name = "minimal"

    def __init__(self, run, data, port, binary, wrapper=(), start_timeout=30, cpus="0"):
        super().__init__(run, data, port)
        self.binary, self.wrapper, self.start_timeout, self.cpus = binary, list(wrapper), start_timeout, cpus

    def start(self):
        self.log = open(os.path.join(self.run, "minimal.log"), "ab")
        cmd = (["taskset", "-c", self.cpus] if self.cpus else []) + [
               "setpriv", f"--reuid={BENCH_USER}", f"--regid={BENCH_USER}", "--init-groups", *self.wrapper,
               self.binary, str(self.port), os.path.join(self.data, "mail")]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env=dict(os.environ, USER=BENCH_USER, LOGNAME=BENCH_USER))
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self.wait_port()
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def count_logged_in(self):
        return 0

    def wait_quiet(self):
        # A session ends with QUIT's reply, written just before the responder closes the socket
        # in the same handler: a moment after pop3bench saw the last reply every close is done.
        time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Pop3dBase(Pop3d):
    """Another pop3d build (`--base-bin`, e.g. the previous main's release binary) run as its
    own server in the same run, for before/after ratios on the same machine state."""
    name = "pop3d-base"


def build_minimal(run):
    """Compiles Benchmarks/minimal_responder.c with `cc -O2` into `run`; its path."""
    binary = os.path.join(run, "minimal_responder")
    subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "minimal_responder.c")], check=True)
    os.chmod(binary, 0o755)
    return binary


# ---------------------------------------------------------------- pop3bench

class BenchError(Exception):
    pass


def pop3bench(server, scenario, *args, limit=600.0, timeout=120, allow_errors=False, on_start=None, cpus="1"):
    """Runs pop3bench on core 1 (`cpus`: another taskset CPU list, or None for no pinning).
    `timeout`: seconds a server may stay silent before pop3bench counts a timeout error (the
    10,000-session storm needs minutes for Dovecot's greetings)."""
    cmd = (["taskset", "-c", cpus] if cpus else []) + [
           os.environ.get("COMPARE_POP3BENCH_BIN") or os.path.join(ROOT, ".build/release/pop3bench"), scenario,
           "--port", str(server.port), "--json", "--quiet", "--timeout", str(timeout),
           "--max-time", str(limit), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        if on_start:
            on_start(proc, started)
        out, err = proc.communicate(timeout=limit + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"{server.name} {scenario}: no JSON (rc {proc.returncode}): {err.strip()[-300:]}")
    if report["errors"]["total"] and not allow_errors:
        raise BenchError(f"{server.name} {scenario} {' '.join(map(str, args))}: "
                         f"{report['errors']['total']} errors, first: {report['first_error']}")
    return report


def p99_ms(report, kind):
    return report["latency_us"][kind]["p99"] / 1000.0


# ---------------------------------------------------------------- data

def make_data(run, p):
    data = os.path.join(run, "data")
    log(f"creating data in {data}")
    subprocess.run([sys.executable, os.path.join(HERE, "mkdata.py"), data, "--users", str(p["users"]),
                    "--messages", str(p["messages"]), "--huge", str(p["huge"]), "--huge2", str(p["huge2"]),
                    "--big-mib", str(p["big_mib"]), "--idle", str(max(p["idle"]))], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{BENCH_USER}:{BENCH_USER}", data], check=True)
    return data


def reset_huge(data, user="huge"):
    """Makes a large Maildir cold again for both servers: Dovecot's index files and pop3d's size
    cache and login index go, and the messages Dovecot moved to cur/ go back to new/ under their
    delivered names (new/ holds no flags, RFC-less Maildir convention: `name:2,flags` in cur/)."""
    md = os.path.join(data, "mail", user, "Maildir")
    for name in os.listdir(md):
        if name.startswith("dovecot") or name in ("pop3d.sizes", "pop3d.index"):
            os.unlink(os.path.join(md, name))
    for name in os.listdir(os.path.join(md, "cur")):
        os.rename(os.path.join(md, "cur", name), os.path.join(md, "new", name.split(":2,")[0]))


# ---------------------------------------------------------------- one run against one server

def measure(server, p, data, first_run, holds, r, failures, run_number, idle_sizes, only=()):
    """Runs every scenario once against a started server, filling `r`: the throughput and
    latency scenarios when `first_run` is not None, and the idle storms of `idle_sizes`. A
    scenario that fails (pop3bench counted errors, a wait timed out) is listed in `failures`;
    the rest still run."""
    users = ["--users", "u%04d", "--password", "p%04d", "--user-count", p["users"]]
    idle_users = ["--users", "i%05d", "--password", "pi%05d"]

    def warm_up():
        # Both servers see every maildrop once before anything is measured (Dovecot builds its
        # index and moves new/ to cur/, pop3d writes pop3d.sizes), so run 1 is not colder.
        pop3bench(server, "session", *users, "--concurrency", 16, "--count", p["users"])
        if server.name == "minimal":
            return   # it serves the session rows only
        pop3bench(server, "idle", *idle_users, "--user-count", max(p["idle"]), "--hold", 0,
                  "--concurrency", 100, "--count", max(p["idle"]))

    def sessions(c):
        before = server.cpu()
        rep = pop3bench(server, "session", *users, "--concurrency", c, "--duration", p["session_duration"])
        server.wait_quiet()
        cpu = server.cpu() - before
        r[f"sess{c}"] = rep["throughput"]["sessions_per_s"]
        r[f"sess{c}_p99"] = p99_ms(rep, "session")
        if c == max(p["session_concurrency"]):
            r["cpu_per_session"] = cpu / max(rep["sessions"]["ok"], 1) * 1000

    def noop():
        # Its own user count: a multiple of the concurrency, so no two live sessions share a maildrop.
        noop_users = ["--users", "u%04d", "--password", "p%04d", "--user-count", NOOP_CONCURRENCY]
        rep = pop3bench(server, "noop", *noop_users, "--concurrency", NOOP_CONCURRENCY,
                        "--duration", p["noop_duration"], "--commands", p["noop_commands"])
        r["noop"] = rep["commands"]["noop"] / rep["elapsed_s"]
        r["noop_p99"] = p99_ms(rep, "noop")

    def retr_big():
        rep = pop3bench(server, "retr-big", "--users", "big", "--password", "big", "--concurrency", 1,
                        "--count", 1, "--commands", p["retr_commands"])
        r["retr"] = rep["throughput"]["retr_mb_per_s"]
        r["retr_p99"] = p99_ms(rep, "retr")

    def huge(user="huge", key="huge"):
        reset_huge(data, user)
        for kind in ("cold", "warm"):
            rep = pop3bench(server, "session", "--users", user, "--password", user, "--concurrency", 1,
                            "--count", 1, "--sample", 1)
            lat = rep["latency_us"]
            r[f"{key}_{kind}"] = sum(lat[k]["max"] for k in ("login", "stat", "list", "uidl")) / 1000
            server.wait_quiet()

    def idle(n):
        hold = holds[(server.name, n)]
        log(f"{server.name}: idle {n} (hold {hold:.0f} s)")
        base = server.pss()
        sample = {}

        def sample_when_logged_in(proc, started):
            try:
                wait_until(lambda: server.count_logged_in() >= n or proc.poll() is not None,
                           hold - 1, f"{n} logged-in sessions", 1.0)
            except TimeoutError:
                return
            if proc.poll() is None:
                sample["pss"] = server.pss()

        rep = pop3bench(server, "idle", *idle_users, "--user-count", n, "--concurrency", n, "--count", n,
                        "--hold", hold, limit=hold + WAIT_LIMIT, timeout=WAIT_LIMIT,
                        on_start=sample_when_logged_in)
        login_s = rep["elapsed_s"] - hold
        # The next run holds long enough to sample even if logging in gets slower.
        holds[(server.name, n)] = max(hold, 1.3 * login_s + 10)
        if "pss" not in sample:
            raise BenchError(f"{server.name}: {n} sessions were not all logged in within the {hold:.0f} s hold")
        r[f"mem{n}"] = (sample["pss"] - base) / n
        if n == max(p["idle"]):
            r["login_all"] = login_s
            r["login_p99"] = p99_ms(rep, "login")

    steps = [("warm-up", warm_up)] if first_run else []
    if first_run is not None:
        steps += [(f"session c={c}", lambda c=c: sessions(c)) for c in p["session_concurrency"]]
        steps += [("noop", noop), ("retr-big", retr_big), ("huge Maildir", huge),
                  ("huge2 Maildir", lambda: huge("huge2", "huge2"))]
    steps += [(f"idle {n}", lambda n=n: idle(n)) for n in idle_sizes]
    if server.name == "minimal":
        # The ceiling serves exactly pop3bench's session (no NOOP, no LIST n, no idle holds).
        steps = [(name, step) for name, step in steps if name == "warm-up" or name.startswith("session c=")]
    if only:
        steps = [(name, step) for name, step in steps if name in only]
    for name, step in steps:
        log(f"{server.name}: {name}")
        try:
            step()
        except (BenchError, TimeoutError) as e:
            failures.append(f"run {run_number}, {server.name}, {name}: {e}")
            log(f"FAILED: {e}")
        try:
            server.wait_quiet()
        except TimeoutError as e:
            failures.append(f"run {run_number}, {server.name}, after {name}: {e}")
            raise RuntimeError(f"{server.name} did not settle after {name}")


# ---------------------------------------------------------------- table

def rows(p):
    c = p["session_concurrency"]
    n_small, n_big = p["idle"]
    out = [(f"sess{x}", f"sessions/s, concurrency {x} ({p['messages']} msgs, RETR all)", True) for x in c]
    out += [("noop", f"NOOP/s, concurrency {NOOP_CONCURRENCY}", True),
            ("retr", f"RETR MB/s, {p['big_mib']} MiB message", True),
            ("huge_cold", f"login+STAT+LIST+UIDL ms, {p['huge']:,}-msg Maildir, cold", False),
            ("huge_warm", f"login+STAT+LIST+UIDL ms, {p['huge']:,}-msg Maildir, warm", False),
            ("huge2_cold", f"login+STAT+LIST+UIDL ms, {p['huge2']:,}-msg Maildir, cold", False),
            ("huge2_warm", f"login+STAT+LIST+UIDL ms, {p['huge2']:,}-msg Maildir, warm", False),
            (f"mem{n_small}", f"KiB PSS per idle session, {n_small:,} sessions", False),
            (f"mem{n_big}", f"KiB PSS per idle session, {n_big:,} sessions", False),
            ("login_all", f"s to log in {n_big:,} sessions", False),
            ("cpu_per_session", f"CPU ms per session (concurrency {c[-1]})", False)]
    out += [(f"sess{x}_p99", f"p99 ms, session, concurrency {x}", False) for x in c]
    out += [("noop_p99", "p99 ms, NOOP", False), ("retr_p99", "p99 ms, RETR big", False),
            ("login_p99", f"p99 ms, login ({n_big:,} idle)", False)]
    return out


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def table(results, servers, p):
    head = ["metric"] + [f"{s} median (min–max)" for s in servers]
    both = "pop3d" in servers and "dovecot" in servers
    ceiling = "pop3d" in servers and "minimal" in servers
    base = "pop3d" in servers and "pop3d-base" in servers
    if base:
        head.append("pop3d/pop3d-base")
    if both:
        head.append("pop3d/Dovecot")
    if ceiling:
        head.append("pop3d/minimal")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, _ in rows(p):
        cells, medians = [label], {}
        for s in servers:
            values = [run[key] for run in results[s] if key in run]
            if not values:
                cells.append("–")
                continue
            medians[s] = statistics.median(values)
            cells.append(f"{fmt(medians[s])} ({fmt(min(values))}–{fmt(max(values))})")
        if base:
            b, q = medians.get("pop3d-base"), medians.get("pop3d")
            cells.append(f"{q / b:.3g}" if b and q is not None else "–")
        if both:
            d, q = medians.get("dovecot"), medians.get("pop3d")
            cells.append(f"{q / d:.3g}" if d and q is not None else "–")
        if ceiling:
            m, q = medians.get("minimal"), medians.get("pop3d")
            cells.append(f"{q / m:.3g}" if m and q is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--servers", default="pop3d dovecot",
                    help="any of pop3d, dovecot and minimal (Benchmarks/minimal_responder.c, the ceiling: "
                    "session rows only)")
    ap.add_argument("--base-bin", default=os.environ.get("COMPARE_BASE_BIN"),
                    help="pop3d binary run as server `pop3d-base` (before/after in one run)")
    ap.add_argument("--out")
    ap.add_argument("--only", default="", help="comma-separated step names to run, e.g. "
                    "'huge Maildir,huge2 Maildir' (default: every step)")
    a = ap.parse_args()
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    p = SMOKE if a.smoke else FULL
    runs = 1 if a.smoke else max(a.runs, 1)
    servers = a.servers.split()
    for s in servers:
        if s not in ("pop3d", "pop3d-base", "dovecot", "minimal"):
            sys.exit(f"unknown server {s}: use pop3d, pop3d-base, dovecot and/or minimal")
    if "pop3d-base" in servers and not (a.base_bin and os.access(a.base_bin, os.X_OK)):
        sys.exit("server pop3d-base needs --base-bin PATH (an executable pop3d)")
    for table_name in ("hold", "hold_per_1000"):
        p[table_name]["pop3d-base"] = p[table_name]["pop3d"]
    run = tempfile.mkdtemp(prefix="pop3-compare.", dir="/tmp")
    data = make_data(run, p)
    holds = {(s, n): p["hold"][s] + p["hold_per_1000"][s] * n / 1000 for s in servers for n in p["idle"]
             if s in p["hold"]}
    minimal = build_minimal(run) if "minimal" in servers else None
    results = {s: [] for s in servers}
    failures = []
    started = time.monotonic()
    # pop3d runs every scenario as one process, except idle storms too large for one process's
    # descriptors here: those get a server of several processes of their own.
    split = {n: pop3d_processes(n) for n in p["idle"]}
    notes = [f"pop3d ran as {k} processes sharing the port (SO_REUSEPORT, all pinned to core 0) "
             f"for the {n:,}-session rows: it holds {POP3D_FDS_PER_SESSION} descriptors per session "
             f"and the hard RLIMIT_NOFILE here is {resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,}; "
             f"its PSS is summed over the processes." for n, k in split.items() if k > 1 and "pop3d" in servers]
    for i in range(runs):
        for s in servers:
            if s in ("pop3d", "pop3d-base"):
                plan = [(1, i == 0, [n for n in p["idle"] if split[n] == 1])]
                plan += [(split[n], None, [n]) for n in p["idle"] if split[n] > 1]
            elif s == "minimal":
                plan = [(1, i == 0, [])]
            else:
                plan = [(1, i == 0, p["idle"])]
            # Filled as it goes: a scenario that fails keeps the numbers taken before it.
            results[s].append({})
            for processes, first_run, idle_sizes in plan:
                if s == "pop3d":
                    server = Pop3d(run, data, free_port(), processes)
                elif s == "pop3d-base":
                    server = Pop3dBase(run, data, free_port(), processes, binary=a.base_bin,
                                       log_name="pop3d-base.log")
                elif s == "minimal":
                    server = Minimal(run, data, free_port(), minimal)
                else:
                    server = Dovecot(run, data, free_port())
                log(f"run {i + 1}/{runs}: {s} on 127.0.0.1:{server.port}"
                    + (f" ({processes} processes)" if processes > 1 else ""))
                try:
                    server.start()
                    measure(server, p, data, first_run, holds, results[s][-1], failures, i + 1, idle_sizes, only)
                except (BenchError, TimeoutError, RuntimeError) as e:
                    failures.append(f"run {i + 1}, {s}: {e}")
                    log(f"FAILED: {e}")
                finally:
                    server.stop()
    finish(table(results, servers, p), runs=runs, started=started, run=run, failures=failures,
           out=a.out, data=os.path.join(run, "data"), notes=notes)


def finish(text, *, runs, started, run, failures, out, data, notes=()):
    """Prints (and writes to `out`) the report with its closing line, the notes and the
    failures; deletes the data when all went well; exits 1 when anything failed."""
    load = open("/proc/loadavg").read().split()[:3]
    text += (f"\n\n{runs} run(s), {time.monotonic() - started:.0f} s; load average at the end "
             f"{' '.join(load)}; logs in {run}.\n")
    text += "".join(f"\n{note}\n" for note in notes)
    report(text, failures=failures, out=out, data=data)


def report(text, *, failures, out, data):
    """Prints `text` and the failures (and writes them to `out`); deletes `data` when all went
    well; exits 1 when anything failed."""
    if failures:
        text += "\nFailures:\n" + "".join(f"- {f}\n" for f in failures)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
    if not failures:
        shutil.rmtree(data, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
