#!/usr/bin/env python3
"""Logins per second with users from PostgreSQL (issue 15), five servers side by side in one run:

    sudo python3 Benchmarks/sql_logins.py --runs 3 --out /tmp/sql.md   # after swift build -c release
    sudo make bench-sql BENCH_ARGS="--runs 3"                             # the same, building release and installing what is missing

- file:        pop3d with a passwd-file of the same users (`--passwd-file`), the baseline;
- sql:         pop3d with `--passdb sql`, auth cache on (its default size) and warm: every
               user logged in once before the measurement, so the database is not asked;
- sql-nocache: pop3d with `--passdb sql --auth-cache-size 0`: one query per login;
- dovecot:     Dovecot 2.3 with its pgsql driver (Debian's dovecot-pgsql), passdb sql and
               userdb sql, auth cache off (`auth_cache_size = 0`): two queries per login;
- dovecot-file: Dovecot 2.3 with a passwd-file of the same users: what Dovecot's own
               process-per-session model costs without any database, to read its SQL row by.

The users live in a throwaway PostgreSQL cluster (initdb into a folder under /tmp as the
`postgres` user, listening only on a Unix socket in that folder, stopped by its PID and
removed at the end; never the system's cluster), in a PostfixAdmin-style table
`mailbox(username, password, maildir, active, domain)`: N users `u0000@example.org`...
with `{PLAIN}` secrets (so hashing costs nothing and the user database is what is measured)
and maildrops of a few small messages under `DATA/mail/example.org/uNNNN/` (the `maildir`
column, PostfixAdmin's `example.org/u0000/`; the home is `DATA/mail/` || maildir, the mail
location `maildir:%h` for pop3d and `maildir:~` for Dovecot). The passwd-file of variant
`file` holds the same users, secrets and homes.

Placement as compare.py: the mail server (and every process it starts) on core 0, pop3bench
on core 1; PostgreSQL's processes on core 0 too (`--pg-cpus`), with the mail server: the
figures are what one core does for logins, the database included.

Each run starts every variant in turn on a fresh server (the order rotates from run to run,
so each variant takes each place), warms it up with one session per user (`--count N`:
pop3d's auth cache, its size cache and login index, Dovecot's indexes and its move of new/
to cur/, PostgreSQL's buffers), then runs `pop3bench session` (login, STAT, LIST, UIDL, RETR
of each small message, QUIT) at `--concurrency C` for `--duration D` seconds. Each session
logs in once, so sessions/s are logins/s. Per run and variant: logins/s, the login latency's
p50 and p99 (USER sent to +OK of PASS), and the CPU the mail server and PostgreSQL spent
(utime+stime of their process trees, /proc, the masters' reaped children included) per login,
and its inverse, logins per CPU second of both together: on this shared 2-core host the
wall-clock rate moves with whatever else runs, the CPU a login costs much less. The table
gives medians (min–max) over the runs and the medians' ratios to the passwd-file's.
Every pop3bench run must end with zero errors; a failed step is listed and the exit status is 1.
"""
import argparse
import os
import pwd
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "e2e"))
import compare as c  # noqa: E402
import maildata  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
# The database role pop3d and Dovecot connect as (initdb's superuser; `trust` on the socket).
PG_USER = "pop3bench"
DOMAIN = "example.org"
VARIANTS = ("file", "sql", "sql-nocache", "dovecot", "dovecot-file")
LABELS = {
    "file": "pop3d, passwd-file",
    "sql": "pop3d, SQL, auth cache warm",
    "sql-nocache": "pop3d, SQL, `--auth-cache-size 0`",
    "dovecot": "Dovecot 2.3 pgsql, `auth_cache_size = 0`",
    "dovecot-file": "Dovecot 2.3, passwd-file",
}
# pop3d's password query (the README's PostfixAdmin example): $1 is the whole user name.
POP3D_QUERY = "SELECT password, '{mailroot}/' || maildir AS home FROM mailbox WHERE username = $1 AND active"
# Seconds one cluster start or stop may take.
PG_WAIT = 60
# Debian's dovecot-pop3d installed, else unpacked by `make test-deps` (Makefile DOVECOT_POP3_DIR).
DOVECOT_POP3_DIRS = ("/usr/lib/dovecot", "/var/cache/pop3d-tests/dovecot-pop3d/usr/lib/dovecot")


def log(text):
    c.log(text)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# ---------------------------------------------------------------- PostgreSQL

class Cluster:
    """A throwaway PostgreSQL cluster, as Tests/SQLTests/Cluster.swift makes one: initdb into
    a fresh folder under /tmp as `postgres` (initdb refuses root), the server listening only
    on a Unix socket in that folder (`-k DIR -h ''`), started pinned to `cpus`, stopped by the
    postmaster's PID (SIGINT: fast shutdown) and removed by `stop()`."""

    def __init__(self, cpus):
        self.pid = None
        self.dir = tempfile.mkdtemp(prefix="pop3-pg.", dir="/tmp")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        # The socket's folder: pop3d connects as pop3bench, Dovecot's auth process as dovecot.
        os.chmod(self.dir, 0o755)
        data = os.path.join(self.dir, "data")
        self.as_postgres([f"{PG_BIN}/initdb", "-D", data, "-U", PG_USER, "-A", "trust", "--no-sync",
                          "-E", "UTF8"], "initdb.log")
        pin = ["taskset", "-c", cpus] if cpus else []
        self.as_postgres(pin + [f"{PG_BIN}/pg_ctl", "-D", data, "-o", f"-k {self.dir} -h ''",
                                "-l", os.path.join(self.dir, "server.log"), "-w", "-t", str(PG_WAIT), "start"],
                         "pg_ctl.log")
        with open(os.path.join(data, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def as_postgres(self, cmd, log_name):
        with open(os.path.join(self.dir, log_name), "ab") as out:
            r = subprocess.run(["runuser", "-u", "postgres", "--"] + cmd, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=PG_WAIT + 30)
        if r.returncode != 0:
            with open(os.path.join(self.dir, log_name), errors="replace") as f:
                raise RuntimeError(f"{os.path.basename(cmd[0])} failed ({r.returncode}): {f.read()[-500:]}")

    @property
    def conninfo(self):
        return f"host={self.dir} dbname=postgres user={PG_USER}"

    def psql(self, sql):
        subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-U", PG_USER,
                        "-d", "postgres", "-f", "-"], input=sql, text=True, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)

    def cpu(self):
        """CPU seconds of the postmaster and every backend (live ones, and the reaped ones'
        through the postmaster's cutime+cstime)."""
        return c.cpu_seconds(self.pid)

    def stop(self):
        if self.pid:
            pid, self.pid = self.pid, None
            try:
                os.kill(pid, signal.SIGINT)
                c.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), PG_WAIT, "the postmaster to exit", 0.05)
            except ProcessLookupError:
                pass
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def fill(cluster, users):
    """PostfixAdmin's `mailbox` table cut to the columns a login reads (its types), N users."""
    cluster.psql(f"""
CREATE TABLE mailbox (
  username varchar(255) PRIMARY KEY,
  password varchar(255) NOT NULL,
  maildir varchar(255) NOT NULL,
  active boolean NOT NULL DEFAULT true,
  domain varchar(255) NOT NULL
);
INSERT INTO mailbox (username, password, maildir, active, domain)
  SELECT 'u' || lpad(i::text, 4, '0') || '@{DOMAIN}', '{{PLAIN}}p' || lpad(i::text, 4, '0'),
         '{DOMAIN}/u' || lpad(i::text, 4, '0') || '/', true, '{DOMAIN}'
  FROM generate_series(0, {users - 1}) AS i;
ANALYZE mailbox;
""")


# ---------------------------------------------------------------- mail data

def make_data(run, users, messages):
    """DATA/mail/example.org/uNNNN/ (Maildirs of `messages` small messages each) and
    DATA/passwd: the same users, {PLAIN} secrets and homes as the table."""
    data = os.path.join(run, "data")
    mailroot = os.path.join(data, "mail")
    log(f"creating {users} maildrops in {mailroot}")
    os.makedirs(data)
    with open(os.path.join(data, "passwd"), "w") as f:
        for i in range(users):
            home = f"{mailroot}/{DOMAIN}/u{i:04d}/"
            f.write(f"u{i:04d}@{DOMAIN}:{{PLAIN}}p{i:04d}::::{home}::\n")
            for j in range(messages):
                maildata.deliver(home, maildata.message(j + 1, body_size=400), seconds=1_700_000_000 + j)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{c.BENCH_USER}:{c.BENCH_USER}", data], check=True)
    return data, mailroot


# ---------------------------------------------------------------- servers

def dovecot_pop3_dir():
    for d in DOVECOT_POP3_DIRS:
        if os.path.exists(os.path.join(d, "pop3")) and os.path.exists(os.path.join(d, "pop3-login")):
            return d
    sys.exit("sql_logins.py: Dovecot's pop3 and pop3-login not found (apt-get install dovecot-pop3d, "
             "or make test-deps, which unpacks them)")


def make_server(variant, run, data, mailroot, cluster, a):
    port = c.free_port()
    if variant.startswith("dovecot"):
        if variant == "dovecot":
            with open(os.path.join(HERE, "dovecot-sql.conf.ext.in")) as f:
                ext = f.read()
            for key, value in {"@PGHOST@": cluster.dir, "@PGUSER@": PG_USER,
                               "@CONNECTIONS@": str(a.sql_connections), "@MAILROOT@": mailroot}.items():
                ext = ext.replace(key, value)
            path = os.path.join(run, "dovecot-sql.conf.ext")
            with open(path, "w") as f:
                f.write(ext)
            os.chmod(path, 0o644)
            users = {"@DRIVER@": "sql", "@PASSDB_ARGS@": path, "@USERDB_ARGS@": path}
        else:
            passwd = os.path.join(data, "passwd")
            users = {"@DRIVER@": "passwd-file", "@PASSDB_ARGS@": f"scheme=PLAIN username_format=%u {passwd}",
                     "@USERDB_ARGS@": f"username_format=%u {passwd}"}
        return c.Dovecot(run, data, port, template="dovecot-userdb.conf.in",
                         substitutions={"@POP3_DIR@": dovecot_pop3_dir(), **users}, cpus=a.server_cpus or None)
    if variant == "file":
        args = ["--passwd-file", os.path.join(data, "passwd")]
    else:
        args = ["--passdb", "sql", "--sql-connect", cluster.conninfo,
                "--sql-password-query", POP3D_QUERY.format(mailroot=mailroot),
                "--sql-connections", a.sql_connections]
        if variant == "sql-nocache":
            args += ["--auth-cache-size", 0]
    return c.Pop3d(run, data, port, cpus=a.server_cpus or None, binary=a.pop3d_bin,
                   log_name=f"pop3d-{variant}.log", userdb_args=args + ["--mail", "maildir:%h"])


def user_args(a):
    return ["--users", f"u%04d@{DOMAIN}", "--password", "p%04d", "--user-count", a.users]


def one_run(variant, run, data, mailroot, cluster, a):
    server = make_server(variant, run, data, mailroot, cluster, a)
    log(f"{variant} on 127.0.0.1:{server.port}")
    try:
        server.start()
        # Warm-up: every user once (caches, indexes, the database's buffers).
        c.pop3bench(server, "session", *user_args(a), "--concurrency", a.concurrency, "--count", a.users,
                    cpus=a.bench_cpus or None)
        server.wait_quiet()
        cpu_server, cpu_pg = server.cpu(), cluster.cpu()
        rep = c.pop3bench(server, "session", *user_args(a), "--concurrency", a.concurrency,
                          "--duration", a.duration, cpus=a.bench_cpus or None)
        server.wait_quiet()
        cpu_server, cpu_pg = server.cpu() - cpu_server, cluster.cpu() - cpu_pg
    finally:
        server.stop()
    logins = max(rep["sessions"]["ok"], 1)
    lat = rep["latency_us"]["login"]
    return {"rate": rep["throughput"]["sessions_per_s"], "p50": lat["p50"] / 1000, "p99": lat["p99"] / 1000,
            "cpu_server": cpu_server / logins * 1000, "cpu_pg": cpu_pg / logins * 1000,
            "per_cpu": logins / max(cpu_server + cpu_pg, 1 / c.CLOCK_TICKS)}


# ---------------------------------------------------------------- table

fmt = c.fmt  # the same number format as compare.py's tables


def cell(values):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})" if values else "–"


def table(results, variants):
    lines = ["| server | logins/s | ratio to passwd-file | login p50 ms | login p99 ms "
             "| CPU ms/login, server | CPU ms/login, PostgreSQL | logins per CPU second | ratio to passwd-file |",
             "|" + "---|" * 9]
    base = results.get("file")
    base_rate = statistics.median(r["rate"] for r in base) if base else None
    base_cpu = statistics.median(r["per_cpu"] for r in base) if base else None
    for v in variants:
        rs = results[v]
        if not rs:
            lines.append(f"| {LABELS[v]} |" + " – |" * 8)
            continue
        rate = statistics.median(r["rate"] for r in rs)
        per_cpu = statistics.median(r["per_cpu"] for r in rs)
        cols = [cell([r["rate"] for r in rs]), f"{rate / base_rate:.3g}" if base_rate else "–"] + \
               [cell([r[k] for r in rs]) for k in ("p50", "p99", "cpu_server", "cpu_pg")] + \
               [cell([r["per_cpu"] for r in rs]), f"{per_cpu / base_cpu:.3g}" if base_cpu else "–"]
        lines.append(f"| {LABELS[v]} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=1000, help="users in the table and the passwd-file (≤ 10,000)")
    ap.add_argument("--messages", type=int, default=2, help="small messages per maildrop")
    ap.add_argument("--concurrency", type=int, default=50, help="pop3bench sessions at once (divides --users)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each measured pop3bench run")
    ap.add_argument("--sql-connections", type=int, default=2,
                    help="pop3d's --sql-connections and Dovecot's maxconns (pop3d's default: 2)")
    ap.add_argument("--variants", default=" ".join(VARIANTS), help=f"any of: {' '.join(VARIANTS)}")
    ap.add_argument("--server-cpus", default="0", help="taskset list of the mail server ('' = not pinned)")
    ap.add_argument("--pg-cpus", default="0", help="taskset list of PostgreSQL ('' = not pinned)")
    ap.add_argument("--bench-cpus", default="1", help="taskset list of pop3bench ('' = not pinned)")
    ap.add_argument("--pop3d-bin", default=os.path.join(c.ROOT, ".build/release/pop3d"))
    ap.add_argument("--pop3bench-bin", default=os.path.join(c.ROOT, ".build/release/pop3bench"))
    ap.add_argument("--out")
    a = ap.parse_args()
    variants = a.variants.split()
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"sql_logins.py: unknown variant {v}: use {' '.join(VARIANTS)}")
    if not 1 <= a.users <= 10_000 or a.concurrency < 1 or a.users % a.concurrency:
        # pop3bench gives slot s its k-th session as user (s + k * concurrency) mod users: only
        # a multiple keeps two live sessions off one maildrop (pop3d: -ERR [IN-USE]).
        sys.exit("sql_logins.py: --users must be 1..10000 and a multiple of --concurrency")
    if os.geteuid() != 0:
        sys.exit("sql_logins.py: run as root (initdb as postgres, the data belongs to pop3bench)")
    for path in (a.pop3d_bin, a.pop3bench_bin, f"{PG_BIN}/initdb"):
        if not os.access(path, os.X_OK):
            sys.exit(f"sql_logins.py: {path} missing (swift build -c release; apt-get install postgresql)")
    os.environ["COMPARE_POP3BENCH_BIN"] = a.pop3bench_bin
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    command = "sudo python3 Benchmarks/sql_logins.py " + shlex.join(sys.argv[1:])
    load_before = loadavg()
    started = time.monotonic()
    run = tempfile.mkdtemp(prefix="pop3-sql.", dir="/tmp")
    data, mailroot = make_data(run, a.users, a.messages)
    cluster = Cluster(a.pg_cpus)
    results = {v: [] for v in variants}
    failures = []
    try:
        fill(cluster, a.users)
        for i in range(a.runs):
            k = i % len(variants)
            for v in variants[k:] + variants[:k]:
                log(f"run {i + 1}/{a.runs}: {v}")
                try:
                    results[v].append(one_run(v, run, data, mailroot, cluster, a))
                    r = results[v][-1]
                    log(f"  {r['rate']:,.0f} logins/s, login p99 {r['p99']:.1f} ms, "
                        f"CPU ms/login {r['cpu_server']:.3f} + PostgreSQL {r['cpu_pg']:.3f}")
                except (c.BenchError, TimeoutError, RuntimeError, subprocess.SubprocessError) as e:
                    failures.append(f"run {i + 1}, {v}: {e}")
                    log(f"FAILED: {e}")
    finally:
        cluster.stop()
    text = (f"    {command}\n\n{table(results, variants)}\n\n"
            f"{a.users:,} users, {a.messages} messages of ~0.5 KB per maildrop, `pop3bench session` at "
            f"concurrency {a.concurrency} for {a.duration:g} s after a warm-up of one session per user; "
            f"{a.sql_connections} database connection(s) for pop3d (`--sql-connections`) and Dovecot "
            f"(`maxconns`); mail server on core(s) {a.server_cpus or 'any'}, PostgreSQL on {a.pg_cpus or 'any'}, "
            f"pop3bench on {a.bench_cpus or 'any'}. Medians (min–max) of {a.runs} run(s), the variants' "
            f"order rotating; load average before {load_before}, after {loadavg()}; "
            f"{time.monotonic() - started:.0f} s; logs in {run}.\n")
    c.report(text, failures=failures, out=a.out, data=data)


if __name__ == "__main__":
    main()
