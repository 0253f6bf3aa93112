"""The metrics endpoint (`metrics_listen`) against real tools: curl and Debian's promtool on a
scrape, a real Prometheus server (its own configuration, data folder and port in a temporary
folder, scraping pop3d every second on loopback, stopped by PID) asked through its HTTP API
for `up` and for the exact counts a scripted session produced, the host totals a master
serves for its workers, systemd's `metrics` socket, and a series count that does not grow
with 10,000 users logging in from many loopback addresses.

The values are those of the catalogue (issue 13): `pop3d_logins_total{mechanism,result}`,
`pop3d_retrieved_messages_total`, `pop3d_retrieved_bytes_total` (the octets of the scan
listing), `pop3d_deleted_messages_total`, `pop3d_commands_total{command}`,
`pop3d_sessions_ended_total{reason}`, `pop3d_connections_accepted_total{listener}`.
Every wait has a deadline; every process started here is stopped by its PID."""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import maildata
from conftest import USERS
from pop3support import Server, binary, free_port, needs_activate, port_open, wait_for
from rawpop import Raw

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEADLINE = 30.0
# Every family of the catalogue a single process exports (pop3d_workers and
# pop3d_worker_restarts_total only come from a master).
FAMILIES = [
    "pop3d_connections_accepted_total", "pop3d_connections_refused_total", "pop3d_connections_evicted_total",
    "pop3d_sessions", "pop3d_sessions_ended_total", "pop3d_logins_total", "pop3d_commands_total",
    "pop3d_retrieved_messages_total", "pop3d_retrieved_bytes_total", "pop3d_top_messages_total",
    "pop3d_deleted_messages_total", "pop3d_tls_handshakes_total", "pop3d_auth_penalties_total",
    "pop3d_auth_penalty_seconds_total", "pop3d_auth_queue_depth", "pop3d_storage_queue_depth",
    "pop3d_loop_turn_duration_seconds", "pop3d_start_time_seconds", "pop3d_build_info",
    "pop3d_userdb_lookups_total", "pop3d_userdb_outages_total",
]
MECHANISMS = ["user", "apop", "plain", "login", "cram-md5", "scram-sha-256"]
RESULTS = ["ok", "auth_failed", "in_use", "login_delay", "temp_failure", "unavailable"]


# MARK: scraping and the exposition format

def curl_scrape(port, tmp_path, path="/metrics"):
    """`curl` GET: (status, content type, body bytes)."""
    body = os.path.join(str(tmp_path), "scrape.txt")
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", body, "-w", "%{http_code}\n%{content_type}",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status, content_type = out.stdout.split("\n", 1)
    with open(body, "rb") as f:
        return int(status), content_type, f.read()


def scrape(port):
    """The body of GET /metrics (urllib), as text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def promtool_check(body):
    """`promtool check metrics` on a body: (exit status, its output)."""
    tool = shutil.which("promtool")
    assert tool, "promtool missing: `make test` installs Debian's prometheus"
    out = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    return out.returncode, (out.stdout + out.stderr).decode(errors="replace")


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(body):
    """The samples of an exposition: [(name, {label: value}, float)]."""
    found = []
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        found.append((m.group(1), labels, float(m.group(3))))
    return found


def total(found, name, **labels):
    """The sum over the series of `name` whose labels include `labels` (None: no such series)."""
    values = [v for n, l, v in found if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(values) if values else None


def series_lines(body):
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def assert_catalogue(body):
    """Every family of the catalogue is there from the start, every mechanism × result of
    `pop3d_logins_total` pre-created: the series count is fixed."""
    found = samples(body)
    names = {n for n, _, _ in found}
    missing = [f for f in FAMILIES if not any(n == f or n.startswith(f + "_") for n in names)]
    assert not missing, f"families missing from the scrape: {missing}\n{body[:2000]}"
    logins = {(l.get("mechanism"), l.get("result")) for n, l, _ in found if n == "pop3d_logins_total"}
    absent = [(m, r) for m in MECHANISMS for r in RESULTS if (m, r) not in logins]
    assert not absent, f"pop3d_logins_total series not pre-created: {absent}"


# MARK: Prometheus

class Prometheus:
    """A Prometheus server of our own: config and TSDB in `folder`, web on a free loopback
    port, scraping `targets` (job `pop3d`) every second."""

    def __init__(self, folder, targets):
        binary_path = shutil.which("prometheus")
        assert binary_path, "prometheus missing: `make test` installs Debian's prometheus"
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        config = os.path.join(folder, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: pop3d\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.log_path = os.path.join(folder, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary_path, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(folder, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=folder)
        wait_for(lambda: self.proc.poll() is not None or self.ready(), timeout=DEADLINE,
                 interval=0.2, what="Prometheus to be ready")
        assert self.proc.poll() is None, f"prometheus exited: {self.output()}"

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr):
        """The instant vector of `expr`: [(labels, value)]."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        return [(item["metric"], float(item["value"][1])) for item in answer["data"]["result"]]

    def value(self, expr):
        """The one value of `expr`, or None while it has none (or several)."""
        result = self.query(expr)
        return result[0][1] if len(result) == 1 else None

    def wait_values(self, checks, timeout=DEADLINE):
        """Waits until every (expr, predicate, wanted) holds; fails naming what did not."""
        last = {}

        def holds():
            for expr, _, _ in checks:
                last[expr] = self.value(expr)
            return all(last[e] is not None and ok(last[e]) for e, ok, _ in checks)
        try:
            wait_for(holds, timeout=timeout, interval=0.5, what="the counts in Prometheus")
        except TimeoutError:
            lines = [f"  {e}: {last.get(e)} (want {w})" for e, ok, w in checks
                     if last.get(e) is None or not ok(last[e])]
            raise AssertionError("Prometheus did not reach the expected values within "
                                 f"{timeout}s:\n" + "\n".join(lines))

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def prometheus(tmp_path, request):
    """`prometheus(targets)` starts a Prometheus scraping them; every one is stopped by PID."""
    started = []

    def start(targets):
        server = Prometheus(os.path.join(str(tmp_path), f"prometheus{len(started)}"), targets)
        started.append(server)
        return server

    def stop_all():
        for server in started:
            server.stop()
    request.addfinalizer(stop_all)
    return start


# MARK: the scripted session

def scripted_session(host, port):
    """alice (3 messages delivered) logs in with USER/PASS, RETR 1, RETR 2, DELE 3, QUIT; a
    second connection fails a PASS; a third sends CAPA. Returns the octets of messages 1 and
    2 as LIST gives them."""
    raw = Raw(host, port)
    assert raw.login("alice", USERS["alice"]).startswith(b"+OK")
    assert raw.cmd("LIST").startswith(b"+OK")
    sizes = {int(n): int(s) for n, s in (line.split() for line in raw.multiline())}
    assert len(sizes) == 3, sizes
    for n in (1, 2):
        assert raw.cmd(f"RETR {n}").startswith(b"+OK")
        raw.multiline()
    assert raw.cmd("DELE 3").startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()

    bad = Raw(host, port)
    assert bad.line().startswith(b"+OK")
    assert bad.cmd("USER bob").startswith(b"+OK")
    assert bad.cmd("PASS wrong").startswith(b"-ERR")
    assert bad.cmd("QUIT").startswith(b"+OK")
    bad.close()

    capa = Raw(host, port)
    assert capa.line().startswith(b"+OK")
    assert capa.cmd("CAPA").startswith(b"+OK")
    capa.multiline()
    assert capa.cmd("QUIT").startswith(b"+OK")
    capa.close()
    return sizes[1] + sizes[2]


def deliver_three(mailhost):
    for i in range(1, 4):
        mailhost.deliver("alice", maildata.message(i, body_size=1000 * i))


def session_checks(retrieved_bytes, selector=""):
    """What the scripted session must have produced (exact where one session decides it)."""
    s = f",{selector}" if selector else ""
    return [
        (f'pop3d_logins_total{{mechanism="user",result="ok"{s}}}', lambda v: v == 1, "1"),
        (f'pop3d_logins_total{{mechanism="user",result="auth_failed"{s}}}', lambda v: v == 1, "1"),
        (f"pop3d_retrieved_messages_total{{{selector}}}", lambda v: v == 2, "2"),
        (f"pop3d_retrieved_bytes_total{{{selector}}}", lambda v: v == retrieved_bytes, str(retrieved_bytes)),
        (f"pop3d_deleted_messages_total{{{selector}}}", lambda v: v == 1, "1"),
        (f'pop3d_commands_total{{command="RETR"{s}}}', lambda v: v == 2, "2"),
        (f'pop3d_sessions_ended_total{{reason="quit"{s}}}', lambda v: v >= 1, ">= 1"),
        (f"sum(pop3d_connections_accepted_total{{{selector}}})", lambda v: v >= 3, ">= 3"),
    ]


# MARK: tests

def test_curl_scrape_is_200_in_the_exposition_format_and_passes_promtool(mailhost, tmp_path):
    mport = free_port()
    server = mailhost.serve("--metrics-listen", f"127.0.0.1:{mport}")
    # The metrics listener's line comes after the POP3 port answers (serve() waits for that).
    wait_for(lambda: re.search(rf"listening address=127\.0\.0\.1:{mport} .*metrics=/metrics", server.output()),
             timeout=DEADLINE, what="the metrics listening line")
    status, content_type, body = curl_scrape(mport, tmp_path)
    assert status == 200
    assert content_type == CONTENT_TYPE
    code, lint = promtool_check(body)
    assert code == 0 and lint == "", lint
    status, _, _ = curl_scrape(mport, tmp_path, "/")
    assert status == 404
    # After a session the body still passes (counters that moved, histogram buckets filled).
    deliver_three(mailhost)
    scripted_session(server.host, server.port)
    _, _, body = curl_scrape(mport, tmp_path)
    code, lint = promtool_check(body)
    assert code == 0 and lint == "", lint
    assert_catalogue(body.decode())


def test_a_bad_metrics_listen_stops_the_start(mailhost):
    with pytest.raises(RuntimeError) as failed:
        mailhost.serve("--metrics-listen", "127.0.0.1")
    assert "metrics_listen: '127.0.0.1' is not HOST:PORT" in str(failed.value)


def test_prometheus_scrapes_pop3d_and_sees_the_sessions_exact_counts(mailhost, prometheus):
    mport = free_port()
    server = mailhost.serve("--metrics-listen", f"127.0.0.1:{mport}")
    deliver_three(mailhost)
    prom = prometheus([f"127.0.0.1:{mport}"])
    prom.wait_values([('up{job="pop3d"}', lambda v: v == 1, "1")])
    retrieved = scripted_session(server.host, server.port)
    prom.wait_values(session_checks(retrieved, 'job="pop3d"'))


def worker_pids(master_pid):
    """The worker processes of a master (their environment carries POP3DWORKER)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != master_pid:
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if b"POP3DWORKER=" in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def listening_inode(port):
    """The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp, state 0A)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
                return fields[9]
    return None


def socket_inodes(pid):
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            found.add(m.group(1))
    return found


def test_the_master_serves_the_host_totals_and_no_worker_holds_the_metrics_socket(mailhost, tmp_path):
    mport = free_port()
    server = mailhost.serve("--workers", "2", "--metrics-listen", f"127.0.0.1:{mport}")
    workers = []
    try:
        wait_for(lambda: "every worker is serving" in server.output(), timeout=DEADLINE, what="workers serving")
        workers = worker_pids(server.pid)
        assert len(workers) == 2, workers
        inode = listening_inode(mport)
        assert inode, "nobody listens on the metrics port"
        assert inode in socket_inodes(server.pid), "the master holds the metrics socket"
        for pid in workers:
            assert inode not in socket_inodes(pid), f"worker {pid} inherited the metrics socket"
        assert len(re.findall(rf"listening address=127\.0\.0\.1:{mport} ", server.output())) == 1, server.output()

        deliver_three(mailhost)
        retrieved = scripted_session(server.host, server.port)
        # More sessions at once, so that both workers are likely to serve some.
        extra = 12

        def capa_session(_):
            raw = Raw(server.host, server.port)
            assert raw.line().startswith(b"+OK")
            assert raw.cmd("CAPA").startswith(b"+OK")
            raw.multiline()
            assert raw.cmd("QUIT").startswith(b"+OK")
            raw.close()
        with concurrent.futures.ThreadPoolExecutor(max_workers=extra) as pool:
            list(pool.map(capa_session, range(extra), timeout=DEADLINE))
        served_by = set(re.findall(r"session end .*worker=(\d)", server.output()))

        status, content_type, body = curl_scrape(mport, tmp_path)
        assert status == 200 and content_type == CONTENT_TYPE
        code, lint = promtool_check(body)
        assert code == 0 and lint == "", lint

        def exactly(n):
            return (lambda v: v == n), str(n)
        # Every count one of these sessions decides is exact: the sum over both workers.
        # Connections: also the start-up probe of `Server`, which closes without a command.
        want = {
            ("pop3d_logins_total", (("mechanism", "user"), ("result", "ok"))): exactly(1),
            ("pop3d_logins_total", (("mechanism", "user"), ("result", "auth_failed"))): exactly(1),
            ("pop3d_retrieved_messages_total", ()): exactly(2),
            ("pop3d_retrieved_bytes_total", ()): exactly(retrieved),
            ("pop3d_deleted_messages_total", ()): exactly(1),
            ("pop3d_commands_total", (("command", "RETR"),)): exactly(2),
            ("pop3d_commands_total", (("command", "CAPA"),)): exactly(1 + extra),
            ("pop3d_commands_total", (("command", "QUIT"),)): exactly(3 + extra),
            ("pop3d_sessions_ended_total", (("reason", "quit"),)): exactly(3 + extra),
            ("pop3d_connections_accepted_total", ()): ((lambda v: v >= 3 + extra), f">= {3 + extra}"),
            ("pop3d_workers", ()): exactly(2),
        }
        last = {}

        def exact():
            found = samples(scrape(mport))
            for name, labels in want:
                last[(name, labels)] = total(found, name, **dict(labels))
            return all(last[k] is not None and ok(last[k]) for k, (ok, _) in want.items())
        try:
            wait_for(exact, timeout=DEADLINE, interval=0.5, what="the host totals")
        except TimeoutError:
            wrong = [f"  {k}: {last.get(k)} (want {text})" for k, (ok, text) in want.items()
                     if last.get(k) is None or not ok(last[k])]
            raise AssertionError(f"sessions served by workers {sorted(served_by)}; the master's totals are "
                                 "not the sums:\n" + "\n".join(wrong))
    finally:
        server.stop()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@needs_activate
def test_a_systemd_socket_named_metrics_is_served(mailhost, tmp_path):
    pport, mport = free_port(), free_port()
    log_path = os.path.join(str(tmp_path), "activated.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", f"127.0.0.1:{pport}", "-l", f"127.0.0.1:{mport}",
             "--fdname=pop3:metrics", binary(), "serve"] + mailhost.store_args(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: port_open("127.0.0.1", mport), timeout=DEADLINE, what="the metrics socket")
            # The first connection starts pop3d (systemd-socket-activate execs it, same PID).
            status, content_type, _ = curl_scrape(mport, tmp_path)
            assert (status, content_type) == (200, CONTENT_TYPE)
            with open(log_path, "rb") as f:
                text = f.read().decode(errors="replace")
            assert re.search(rf"listening address=127\.0\.0\.1:{mport} inherited=true metrics=/metrics", text), text
            raw = Raw("127.0.0.1", pport)
            assert raw.login("alice", USERS["alice"]).startswith(b"+OK")
            raw.close()
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@needs_activate
def test_a_metrics_socket_without_a_pop3_socket_is_a_start_up_error(mailhost, tmp_path):
    mport = free_port()
    log_path = os.path.join(str(tmp_path), "activated.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", f"127.0.0.1:{mport}", "--fdname=metrics", binary(), "serve"]
            + mailhost.store_args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: port_open("127.0.0.1", mport), timeout=DEADLINE, what="the metrics socket")
            assert proc.wait(timeout=DEADLINE) == 1
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    with open(log_path, "rb") as f:
        text = f.read().decode(errors="replace")
    assert "systemd passed no pop3 or pop3s socket (only metrics)" in text, text


# MARK: cardinality

USER_COUNT = 10_000
LOGINS_OK = 1_500
LOGINS_FAILED = 500


def source_address(i):
    """A loopback address of its own for login `i`: 127.0.1.1, 127.0.1.2, ... (never 127.0.0.x)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def test_the_series_count_does_not_grow_with_users_or_client_addresses(tmp_path):
    root = str(tmp_path)
    mail_root = os.path.join(root, "mail")
    users = {f"u{n:05d}": f"p{n:05d}" for n in range(USER_COUNT)}
    passwd = maildata.write_passwd(os.path.join(root, "passwd"), users)
    for n in range(LOGINS_OK):
        maildata.ensure_maildir(os.path.join(mail_root, f"u{n:05d}", "Maildir"))
    mport = free_port()
    # Plaintext from 127.0.x.y to 127.0.0.1 is not "this host talking to itself": allowed
    # explicitly, without trusted_networks (which would also exempt the failures from penalties).
    server = Server(["--passwd-file", passwd, "--mail", f"maildir:{mail_root}/%u/Maildir",
                     "--metrics-listen", f"127.0.0.1:{mport}"], root,
                    env={"POP3D_DISABLE_PLAINTEXT_AUTH": "false"})
    try:
        before = scrape(mport)

        def login(i):
            ok = i < LOGINS_OK
            n = i if ok else USER_COUNT - 1 - (i - LOGINS_OK)
            raw = Raw(server.host, server.port, timeout=30, source=source_address(i))
            try:
                assert raw.line().startswith(b"+OK")
                assert raw.cmd(f"USER u{n:05d}").startswith(b"+OK")
                reply = raw.cmd(f"PASS {'p' if ok else 'wrong'}{n:05d}")
                raw.cmd("QUIT")
                return ok == reply.startswith(b"+OK")
            finally:
                raw.close()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(login, range(LOGINS_OK + LOGINS_FAILED), timeout=180))
        assert all(results), f"{results.count(False)} logins did not get the reply they should"
        elapsed = time.monotonic() - started

        after = scrape(mport)
        assert len(series_lines(after)) == len(series_lines(before)), (
            f"{len(series_lines(before))} series before {LOGINS_OK + LOGINS_FAILED} logins "
            f"({elapsed:.1f}s), {len(series_lines(after))} after")
        assert not re.search(r"\bu\d{5}\b", after), "a user name in the scrape"
        assert not re.search(r"\b127\.\d+\.\d+\.\d+\b", after), "a client address in the scrape"
        assert_catalogue(before)
        found = samples(after)
        assert total(found, "pop3d_logins_total", mechanism="user", result="ok") == LOGINS_OK
        assert total(found, "pop3d_logins_total", mechanism="user", result="auth_failed") == LOGINS_FAILED
    finally:
        server.stop()
