"""pop3d as a master with worker processes (`workers` > 1), against the built binary.

The master takes the listeners (systemd's through systemd-socket-activate, or bound from
--listen), execs the workers, supervises them and alone talks to systemd. These tests check
what clients, the Maildir and a NOTIFY_SOCKET the test owns see: sessions on both workers, a
killed or hung worker restarted while the other's sessions go on, SIGHUP reloading every
worker, SIGTERM draining them, a crash loop stopped by the start limit, a worker that cannot
start stopping the master, and the per-host state across workers ([IN-USE], max_connections).

Which worker holds a connection is read from ss(8) and /proc (the worker whose descriptor
table has the accepted socket); which worker served a session, from the `worker=N` of its
log lines. Every wait has a deadline; the master and every worker it started are killed by
PID in teardown.
"""
import ctypes
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import maildata
from conftest import USERS
from pop3support import Activated, Notifications, Server, needs_activate, wait_for
from rawpop import Raw

DEADLINE = 20.0
STARTED = re.compile(r"worker started pid=(\d+) worker=(\d+)")
SERVING = "every worker is serving"
# An idle worker takes every connection that finds it in epoll_wait (EPOLLEXCLUSIVE wakes one
# waiter, and it accepts until EAGAIN), so a connection meant for another worker is tried in
# bursts of this many at once, up to this many bursts.
BURST = 6
BURSTS = 40


def alive(pid):
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """The PIDs whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def environment_names(pid):
    """The names of the variables in the environment `pid` started with (empty once gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return {entry.split(b"=", 1)[0].decode() for entry in f.read().split(b"\0") if entry}
    except OSError:
        return set()


def is_worker(pid):
    """True when `pid` is a pop3d worker (its master put POP3DWORKER in its environment)."""
    return "POP3DWORKER" in environment_names(pid)


def socket_inode(local_port, remote_port):
    """The inode of the established socket 127.0.0.1:local_port <-> 127.0.0.1:remote_port,
    from ss(8) (iproute2; the kernel filters, where /proc/net/tcp lists every socket)."""
    out = subprocess.run(["ss", "-tnHe", "state", "established", "src", f"127.0.0.1:{local_port}",
                          "dst", f"127.0.0.1:{remote_port}"], capture_output=True, text=True,
                         timeout=DEADLINE, check=True).stdout
    found = re.findall(r"\bino:(\d+)", out)
    return found[0] if len(found) == 1 and found[0] != "0" else None


class Master:
    """A `pop3d serve --workers N` under test: `process` is its `Activated` or `Server`,
    `notify` the NOTIFY_SOCKET it reports to (or None). Counts the connections it was sent."""

    def __init__(self, process, notify):
        self.process = process
        self.notify = notify
        self.host = process.host
        self.port = process.port
        self.opened = 0

    @property
    def pid(self):
        return self.process.proc.pid

    def log(self):
        return self.process.output()

    def started(self):
        """(worker id, pid) of every `worker started` line, in order."""
        return [(int(w), int(p)) for p, w in STARTED.findall(self.log())]

    def workers(self):
        """Worker id -> pid of the latest process started in that slot."""
        return dict(self.started())

    def wait_log(self, pattern, what=None, timeout=DEADLINE):
        """Waits for a log line matching the regular expression; returns the match."""
        return wait_for(lambda: re.search(pattern, self.log()), timeout=timeout,
                        what=what or f"log line /{pattern}/")

    def wait_serving(self):
        self.wait_log(re.escape(SERVING))
        return self.workers()

    def finish_first_client(self):
        """Under systemd-socket-activate: the connection that started pop3d gets its greeting
        (once a worker serves) and QUITs."""
        client = self.process.client
        client.settimeout(DEADLINE)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = client.recv(1)
            assert chunk, f"no greeting: {data!r}"
            data += chunk
        assert data.startswith(b"+OK"), data
        client.sendall(b"QUIT\r\n")
        while client.recv(4096):
            pass
        self.opened += 1

    def connect(self, greeting=b"+OK"):
        raw = Raw(self.host, self.port, timeout=DEADLINE)
        self.opened += 1
        if greeting is not None:
            line = raw.line()
            assert line.startswith(greeting), line
        return raw

    def holder(self, raw):
        """The id of the worker whose descriptors hold the server side of `raw` (accepted)."""
        inode = socket_inode(self.port, raw.sock.getsockname()[1])
        assert inode, "the connection is not established"
        target = f"socket:[{inode}]"
        for wid, pid in self.workers().items():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return wid
                except OSError:
                    continue
        raise AssertionError(f"no worker holds socket {target}")

    def on_worker(self, wanted):
        """A connection (greeting read) that worker `wanted` accepted. Connections are opened
        in bursts until one lands there; the others are closed (each is a session served)."""
        for _ in range(BURSTS):
            burst = [self.connect(greeting=None) for _ in range(BURST)]
            found = None
            for raw in burst:
                line = raw.line()
                assert line.startswith(b"+OK"), line
                if found is None and self.holder(raw) == wanted:
                    found = raw
                else:
                    assert raw.cmd("QUIT").startswith(b"+OK")
                    raw.close()
            if found:
                return found
        raise AssertionError(f"no connection of {BURSTS * BURST} reached worker {wanted}")

    def wait_exit(self):
        """Waits for the master to exit; returns its status and log. No worker outlives it."""
        try:
            status = self.process.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the master did not exit: {self.log()}")
        log = self.log()
        assert not any(alive(pid) for _, pid in self.started()), log
        return status, log

    def kill(self):
        """SIGKILL to the master and to every worker of it still running, by PID."""
        pids = set(children(self.pid)) | {pid for _, pid in self.started() if is_worker(pid)}
        for pid in [self.pid] + sorted(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.stop()
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=DEADLINE, what="workers to die")
        if self.notify:
            self.notify.close()


@pytest.fixture
def start_master(mailhost):
    """`start_master(*flags, ...)` runs `pop3d serve --workers 2` on the mailhost's store,
    under systemd-socket-activate (`activated`, the default) or binding --listen itself."""
    tmp = tempfile.mkdtemp(prefix="pop3d-w-")  # short: AF_UNIX paths have at most 108 octets
    started = []

    def start(*flags, workers="2", activated=True, store=None, watchdog_usec=None, env=None,
              notify=True, shutdown_timeout=5, **server_kw):
        serve_args = list(mailhost.store_args() if store is None else store)
        serve_args += ["--workers", workers, "--shutdown-timeout", str(shutdown_timeout)] + list(flags)
        if activated:
            process = Activated(tmp, serve_args, fdname="pop3", watchdog_usec=watchdog_usec, env=env)
            master = Master(process, process.notify)
        else:
            listener = Notifications(os.path.join(tmp, "notify.sock")) if notify else None
            environment = dict(env or {})
            if listener:
                environment["NOTIFY_SOCKET"] = listener.path
            process = Server(serve_args, tmp, env=environment, **server_kw)
            master = Master(process, listener)
            if server_kw.get("wait", True):
                master.opened += 1  # Server's probe that the port is open
        started.append(master)
        return master

    yield start
    for master in started:
        master.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def login(raw, user, password=None):
    raw.cmd(f"USER {user}")
    return raw.cmd(f"PASS {password or USERS[user]}")


def session_ends(log, user):
    """The worker ids on the `session end` lines of `user`, in order."""
    return [int(w) for w in re.findall(rf"session end .*\buser={user} worker=(\d+)", log)]


def wait_session_ends(master, user, expected):
    """Waits until the `session end` lines of `user` name the workers `expected`, in order
    (a session's line follows its QUIT reply)."""
    try:
        wait_for(lambda: session_ends(master.log(), user) == expected, timeout=DEADLINE,
                 what=f"{user}'s sessions to end on workers {expected}")
    except TimeoutError:
        raise AssertionError(f"{user}: {session_ends(master.log(), user)} != {expected}:\n{master.log()}")


def subject_of(lines):
    """The `Test message N` number of a RETR reply's lines (maildata.message)."""
    for line in lines:
        m = re.match(rb"Subject: Test message (\d+)$", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no Subject in {lines[:12]}")


def unique_names(mailhost, user):
    """The Maildir unique names of `user`'s messages (new/ and cur/, without the :2, info)."""
    return {name.split(":2,")[0] for name in mailhost.files(user)}


@needs_activate
def test_two_workers_under_socket_activation_serve_and_report_sums(start_master, mailhost):
    for user in ("alice", "bob"):
        mailhost.deliver(user, maildata.message(1))
    master = start_master()
    n = master.notify
    master.finish_first_client()
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    # READY=1 came once both workers were serving: each had logged its listener by then.
    log = master.log()
    assert SERVING in log and all(re.search(rf"listening .* worker={wid}\b", log) for wid in (1, 2)), log
    workers = master.workers()
    assert sorted(workers) == [1, 2], log
    assert len(master.started()) == 2, log

    # One logged-in session on each worker, both open at once.
    sessions = {}
    for wid, user in ((1, "alice"), (2, "bob")):
        raw = master.on_worker(wid)
        assert login(raw, user).startswith(b"+OK")
        sessions[wid] = raw
    n.wait_for(lambda l: re.fullmatch(r"STATUS=\d+ connections, 2 logged in, \d+ sessions served; 2 of 2 workers", l),
               "STATUS= with both workers' logged-in sessions")
    for raw in sessions.values():
        assert raw.cmd("RETR 1").startswith(b"+OK")
        assert subject_of(raw.multiline()) == 1
        assert raw.cmd("QUIT").startswith(b"+OK")

    total = master.opened
    n.wait_for(lambda l: l == f"STATUS=0 connections, 0 logged in, {total} sessions served; 2 of 2 workers",
               f"STATUS= with the sum of {total} sessions")
    wait_session_ends(master, "alice", [1])
    wait_session_ends(master, "bob", [2])
    log = master.log()
    ends = re.findall(r"session end .* worker=(\d+)", log)
    assert len(ends) == total and set(ends) == {"1", "2"}, log
    # One READY=1 for the whole service, and every notification from the master alone
    # (NotifyAccess=main): the workers never saw systemd's variables.
    assert n.drain().count("READY=1") == 1, n.lines
    assert set(n.senders) == {master.pid}, (n.senders, master.pid)
    for pid in workers.values():
        assert not environment_names(pid) & {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}


@needs_activate
def test_killed_worker_is_restarted_while_a_session_on_the_other_completes(start_master, mailhost):
    paths = [mailhost.deliver("alice", maildata.message(i)) for i in (1, 2, 3)]
    bobs = {os.path.basename(mailhost.deliver("bob", maildata.message(i))) for i in (4, 5)}
    master = start_master()
    master.finish_first_client()
    master.notify.wait_for(lambda l: l == "READY=1", "READY=1")
    master.wait_serving()

    raw = master.connect()
    assert login(raw, "alice").startswith(b"+OK")
    assert raw.cmd("STAT").startswith(b"+OK 3 ")
    survivor = master.holder(raw)
    victim = 3 - survivor
    old_pid = master.workers()[victim]
    # Bob's session, on the worker that is killed, has a deletion marked.
    lost = master.on_worker(victim)
    assert login(lost, "bob").startswith(b"+OK")
    assert lost.cmd("DELE 1").startswith(b"+OK")

    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    new_pid = wait_for(lambda: master.workers()[victim] != old_pid and master.workers()[victim],
                       timeout=5, what=f"worker {victim} to be restarted")
    restarted_after = time.monotonic() - killed_at
    log = master.log()
    exited = log.index(f'worker exited pid={old_pid} status="killed by signal 9" worker={victim}')
    assert exited < log.index(f"worker started pid={new_pid} worker={victim}"), log
    assert restarted_after < 5

    # The session on the other worker goes on as if nothing happened.
    assert raw.cmd("RETR 1").startswith(b"+OK")
    retrieved = subject_of(raw.multiline())
    assert raw.cmd("DELE 1").startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()
    kept = {os.path.basename(p) for i, p in enumerate(paths, 1) if i != retrieved}
    assert unique_names(mailhost, "alice") == kept

    # The restarted worker serves: the maildrop, its lock released, has the other two.
    again = master.on_worker(victim)
    assert master.workers()[victim] == new_pid
    reply = login(again, "alice")
    assert reply.startswith(b"+OK"), reply
    assert again.cmd("STAT").startswith(b"+OK 2 ")
    assert again.cmd("QUIT").startswith(b"+OK")
    wait_session_ends(master, "alice", [survivor, victim])

    # Bob's connection died with its worker: nothing of his was deleted, and the maildrop's
    # lock went with the process, so he logs in again at once.
    assert lost.closed(timeout=DEADLINE)
    assert unique_names(mailhost, "bob") == bobs
    again = master.connect()
    assert login(again, "bob").startswith(b"+OK")
    assert again.cmd("STAT").startswith(b"+OK 2 ")
    assert again.cmd("QUIT").startswith(b"+OK")


@needs_activate
def test_sighup_reloads_a_changed_passwd_file_in_every_worker(start_master, mailhost):
    master = start_master()
    n = master.notify
    master.finish_first_client()
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    master.wait_serving()

    # 20,000 more users: each worker parses for a noticeable while (a few tenths of a second
    # in a debug build), so a READY=1 sent before the workers finished would show.
    users = dict(USERS, alice="changed-alice", dave="secret-dave")
    users.update((f"user{i}", f"pw{i}") for i in range(20_000))
    maildata.write_passwd(mailhost.passwd + ".new", users)
    os.replace(mailhost.passwd + ".new", mailhost.passwd)
    mark = len(n.drain())
    os.kill(master.pid, signal.SIGHUP)
    reloading = n.wait_for(lambda l: l == "RELOADING=1", "RELOADING=1", start=mark)
    n.wait_for(lambda l: l.startswith("MONOTONIC_USEC="), "MONOTONIC_USEC=", start=reloading + 1)
    n.wait_for(lambda l: l == "READY=1", "READY=1 after the reload", start=reloading + 1)
    # READY=1 came only once both workers had the new file in use.
    log = master.log()
    for wid in (1, 2):
        assert re.search(rf"passwd-file reloaded .*\busers={len(users)} worker={wid}\b", log), log
    assert "every worker has reloaded" in log

    for wid in (1, 2):
        raw = master.on_worker(wid)
        assert login(raw, "dave", "secret-dave").startswith(b"+OK")
        assert raw.cmd("QUIT").startswith(b"+OK")
        raw = master.on_worker(wid)
        assert login(raw, "alice", "changed-alice").startswith(b"+OK")
        assert raw.cmd("QUIT").startswith(b"+OK")
    wait_session_ends(master, "dave", [1, 2])
    wait_session_ends(master, "alice", [1, 2])


@needs_activate
def test_sigterm_drains_both_workers_and_the_master_exits_zero(start_master, mailhost):
    for user in ("alice", "bob"):
        mailhost.deliver(user, maildata.message(1))
    before = {user: unique_names(mailhost, user) for user in ("alice", "bob")}
    master = start_master()
    n = master.notify
    master.finish_first_client()
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    workers = master.wait_serving()

    # A logged-in session on each worker, each with a deletion marked.
    sessions = []
    for wid, user in ((1, "alice"), (2, "bob")):
        raw = master.on_worker(wid)
        assert login(raw, user).startswith(b"+OK")
        assert raw.cmd("DELE 1").startswith(b"+OK")
        sessions.append(raw)

    mark = len(n.drain())
    os.kill(master.pid, signal.SIGTERM)
    n.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1", start=mark)
    # Both sessions are idle: the drain ends them at once, with no UPDATE state.
    for raw in sessions:
        assert raw.line() == b"-ERR [SYS/TEMP] Server shutting down"
        assert raw.closed(timeout=DEADLINE)
    status, log = master.wait_exit()
    assert status == 0, log
    for wid, pid in workers.items():
        assert f'worker exited pid={pid} status="exit status 0" worker={wid}' in log, log
    assert re.search(r"master stopped .*\bstatus=0\b", log), log
    # Nothing was deleted: the sessions never reached the UPDATE state.
    assert {user: unique_names(mailhost, user) for user in ("alice", "bob")} == before


def busy_session(start_master, mailhost):
    """A master with shutdown_timeout 2 and alice's session busy sending a 15 MB RETR that the
    client never reads (more than the socket buffers hold): (master, the worker id busy, the
    client's connection, which the caller must keep open: closing it ends the session)."""
    big = b"Subject: big\n\n" + b"x" * 76 + b"\n"
    mailhost.deliver("alice", big + b"y" * 76 * 200_000 + b"\n")
    master = start_master(activated=False, shutdown_timeout=2)
    master.notify.wait_for(lambda l: l == "READY=1", "READY=1")
    master.wait_serving()
    raw = master.connect()
    assert login(raw, "alice").startswith(b"+OK")
    busy = master.holder(raw)
    raw.send(b"RETR 1\r\n")  # and never read: the session stays busy sending
    assert raw.line().startswith(b"+OK")
    return master, busy, raw


def test_sigterm_waits_for_a_busy_session_until_shutdown_timeout(start_master, mailhost):
    master, busy, client = busy_session(start_master, mailhost)  # `client` open to the end
    before = unique_names(mailhost, "alice")
    n = master.notify

    term_at = time.monotonic()
    os.kill(master.pid, signal.SIGTERM)
    n.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1")
    status, log = master.wait_exit()
    took = time.monotonic() - term_at
    assert status == 0, log
    # The master waited for the busy worker, which closed its session after shutdown_timeout;
    # the idle worker had exited long before.
    assert took >= 1.8, (took, log)
    closing = log.index(f"shutdown timeout: closing 1 busy session(s) worker={busy}")
    idle_exit = re.search(rf'worker exited pid=\d+ status="exit status 0" worker={3 - busy}', log)
    assert idle_exit and idle_exit.start() < closing, log
    assert re.search(rf'worker exited pid=\d+ status="exit status 0" worker={busy}', log[closing:]), log
    assert unique_names(mailhost, "alice") == before


def test_a_reload_that_ends_during_a_drain_sends_no_ready(start_master, mailhost):
    """SIGHUP, then SIGTERM at once, with a busy session: the busy worker finishes the reload
    while it drains. The master must not answer that reload with READY=1 after STOPPING=1
    (systemd would take the stopping service for up again)."""
    master, busy, client = busy_session(start_master, mailhost)  # `client` open to the end
    n = master.notify

    mark = len(n.drain())
    os.kill(master.pid, signal.SIGHUP)
    os.kill(master.pid, signal.SIGTERM)
    stopping = n.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1", start=mark)
    status, log = master.wait_exit()
    assert status == 0, log
    # The busy worker did reload during its drain (so the case was exercised) ...
    assert re.search(rf"passwd-file reloaded .*\bworker={busy}\b", log), log
    # ... and nothing but STATUS= came after STOPPING=1.
    n.drain()
    assert "READY=1" not in n.lines[stopping:], n.lines[mark:]


def test_a_reload_that_changes_workers_says_it_waits_for_a_restart(mailhost, tmp_path):
    """`workers` is restart-only: a SIGHUP after it changed in the file names it in the
    warning (README: "those name themselves in a warning"), in every worker."""
    config = tmp_path / "pop3d.yaml"
    config.write_text("workers: 2\n")
    server = mailhost.serve("--config", str(config))
    master = Master(server, None)
    try:
        master.wait_serving()
        config.write_text("workers: 3\n")
        os.kill(server.pid, signal.SIGHUP)
        master.wait_log("every worker has reloaded")
        for wid in (1, 2):
            master.wait_log(rf"configuration reload: workers changed but take effect only after a "
                            rf"restart worker={wid}\b")
        assert "master starting workers workers=2" in master.log()
    finally:
        master.kill()


def test_a_worker_in_a_crash_loop_is_not_restarted_forever(start_master, mailhost):
    master = start_master(activated=False, env={
        "POP3D_WORKER_START_LIMIT_BURST": "3", "POP3D_WORKER_START_LIMIT_INTERVAL": "60",
        "WATCHDOG_USEC": "1000000"})
    n = master.notify
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    workers = master.wait_serving()
    n.wait_for(lambda l: l == "WATCHDOG=1", "WATCHDOG=1")

    # A setting only a starting worker reads breaks: the passwd-file is gone.
    os.rename(mailhost.passwd, mailhost.passwd + ".away")
    os.kill(workers[2], signal.SIGKILL)
    master.wait_log(r"worker 2 is not restarted any more: 3 exits within 60 s, last: exit status 1")
    n.wait_for(lambda l: l.startswith("STATUS=") and l.endswith(
        "; 1 of 2 workers; worker 2 not restarted (3 exits within 60 s, last: exit status 1)"),
        "STATUS= naming worker 2")
    restarts = [pid for wid, pid in master.started() if wid == 2]
    assert len(restarts) == 3 and len(set(restarts)) == 3, master.log()
    assert not any(alive(pid) for pid in restarts)
    # A slot given up stops the WATCHDOG=1 pings (every 0.5 s while all is well), so that
    # systemd restarts the whole service.
    mark = len(n.drain())
    n.listen(1.5)
    assert "WATCHDOG=1" not in n.lines[mark:], n.lines[mark:]

    # Worker 1 goes on serving (it read the passwd-file at its start).
    for _ in range(3):
        raw = master.connect()
        assert master.holder(raw) == 1
        assert login(raw, "alice").startswith(b"+OK")
        assert raw.cmd("QUIT").startswith(b"+OK")
    assert master.process.proc.poll() is None
    assert [pid for wid, pid in master.started() if wid == 2] == restarts, master.log()
    assert master.workers()[1] == workers[1]

    # Worker 1 dies too and cannot start again either: with no slot left the master exits 1.
    os.kill(workers[1], signal.SIGKILL)
    status, log = master.wait_exit()
    assert status == 1, log
    assert "worker 1 is not restarted any more: 3 exits within 60 s" in log
    assert "every worker failed: the master exits" in log


def test_a_reload_starts_a_given_up_worker_again(start_master, mailhost):
    """Restarts back off (immediately, then 100 ms, 200 ms, ...); a slot given up after a
    crash loop gets a new chance with the next SIGHUP, which may have fixed the cause."""
    mailhost.deliver("alice", maildata.message(1))
    master = start_master(activated=False, env={
        "POP3D_WORKER_START_LIMIT_BURST": "3", "POP3D_WORKER_START_LIMIT_INTERVAL": "60"})
    n = master.notify
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    workers = master.wait_serving()
    os.rename(mailhost.passwd, mailhost.passwd + ".away")
    os.kill(workers[2], signal.SIGKILL)
    master.wait_log(r"worker 2 is not restarted any more: 3 exits within 60 s")
    log = master.log()
    assert "worker 2 starts again in 100 ms" in log, log
    given_up = [pid for wid, pid in master.started() if wid == 2]

    # The cause is fixed and the operator reloads: worker 2 is back and serves.
    os.rename(mailhost.passwd + ".away", mailhost.passwd)
    mark = len(n.drain())
    master.process.proc.send_signal(signal.SIGHUP)
    master.wait_log(r"worker 2 is started again after the reload")
    n.wait_for(lambda l: l == "READY=1", "READY=1 after the reload", start=mark)
    n.wait_for(lambda l: l.startswith("STATUS=") and l.endswith("; 2 of 2 workers"),
               "STATUS= with both workers", start=mark)
    again = [pid for wid, pid in master.started() if wid == 2]
    assert len(again) == len(given_up) + 1, master.log()
    raw = master.on_worker(2)
    assert login(raw, "alice").startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")


def test_workers_end_when_the_master_is_killed(start_master, mailhost):
    mailhost.deliver("alice", maildata.message(1))
    master = start_master(activated=False, notify=False)
    workers = master.wait_serving()
    raw = master.connect()
    assert login(raw, "alice").startswith(b"+OK")
    os.kill(master.pid, signal.SIGKILL)
    master.process.proc.wait(timeout=DEADLINE)
    # The kernel tells each worker (PR_SET_PDEATHSIG: SIGTERM): they drain and exit, so no
    # orphan keeps the port or a maildrop.
    wait_for(lambda: not any(alive(pid) for pid in workers.values()), timeout=DEADLINE,
             what="the workers to end after their master")
    assert raw.line() == b"-ERR [SYS/TEMP] Server shutting down"
    assert raw.closed(timeout=DEADLINE)
    assert mailhost.files("alice") and len(mailhost.files("alice")) == 1


def test_workers_that_switched_user_end_when_the_master_is_killed(start_master, mailhost):
    """Started as root with `user`: each worker switches to it after start, and a change of
    uid clears PR_SET_PDEATHSIG (prctl(2)); the workers must still end with their master
    instead of serving the shared port as orphans."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (make test runs as root)")
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    master = start_master(activated=False, notify=False, env={"POP3D_USER": "nobody"})
    workers = master.wait_serving()

    def uid(pid):
        with open(f"/proc/{pid}/status") as f:
            return int([line for line in f if line.startswith("Uid:")][0].split()[2])
    wait_for(lambda: all(uid(pid) == nobody for pid in workers.values()), timeout=DEADLINE,
             what="the workers to switch to nobody")
    os.kill(master.pid, signal.SIGKILL)
    master.process.proc.wait(timeout=DEADLINE)
    wait_for(lambda: not any(alive(pid) for pid in workers.values()), timeout=DEADLINE,
             what="the workers to end after their master")


@needs_activate
def test_a_hung_worker_is_killed_and_restarted_and_stops_the_watchdog_pings(start_master, mailhost):
    master = start_master(watchdog_usec=1_000_000, env={"POP3D_WORKER_WATCHDOG_TIMEOUT": "3"})
    n = master.notify
    master.finish_first_client()
    n.wait_for(lambda l: l == "READY=1", "READY=1")
    workers = master.wait_serving()
    first = n.wait_for(lambda l: l == "WATCHDOG=1", "WATCHDOG=1")
    n.wait_for(lambda l: l == "WATCHDOG=1", "a second WATCHDOG=1", start=first + 1)

    assert "WATCHDOG_USEC" not in environment_names(workers[1]) | environment_names(workers[2])
    hung = workers[2]
    stopped_at = time.monotonic()
    os.kill(hung, signal.SIGSTOP)  # its loop writes no heartbeat any more

    def restarted():
        n.drain()  # so that every ping gets its arrival time
        return master.workers()[2] != hung and master.workers()[2]
    wait_for(restarted, timeout=DEADLINE, what="the hung worker to be replaced")
    log = master.log()
    assert re.search(rf"worker 2 \(pid {hung}\) has not answered for \d+ ms \(worker_watchdog_timeout 3 s\): killing it", log), log
    assert f'worker exited pid={hung} status="killed by signal 9 after its loop hung" worker=2' in log, log
    mark = len(n.lines)
    n.wait_for(lambda l: l == "WATCHDOG=1", "WATCHDOG=1 after the restart", start=mark)

    # Pings come every 0.5 s while all is well; they paused from at most 1 s (WATCHDOG_USEC)
    # after the hang until the replacement served, at least 2 s later.
    pings = [t for line, t in zip(n.lines, n.times) if line == "WATCHDOG=1"]
    around = [t for t in pings if t < stopped_at][-1:] + [t for t in pings if t >= stopped_at]
    gaps = [b - a for a, b in zip(around, around[1:])]
    assert max(gaps) >= 1.5, gaps
    # Worker 1 was never touched.
    assert master.workers()[1] == workers[1] and alive(workers[1])


def test_in_use_holds_across_workers(start_master, mailhost):
    mailhost.deliver("alice", maildata.message(1))
    master = start_master(activated=False, notify=False)
    master.wait_serving()
    first = master.connect()
    assert login(first, "alice").startswith(b"+OK")
    holder = master.holder(first)
    for wid in (3 - holder, holder):
        raw = master.on_worker(wid)
        reply = login(raw, "alice")
        assert reply.startswith(b"-ERR [IN-USE]"), (wid, reply)
        raw.close()
    assert first.cmd("STAT").startswith(b"+OK 1 ")
    assert first.cmd("QUIT").startswith(b"+OK")
    # Released: the other worker's next login works.
    raw = master.on_worker(3 - holder)
    assert login(raw, "alice").startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")


def test_login_delay_holds_across_workers(start_master, mailhost):
    """LOGIN-DELAY is kept with the maildrop (the mtime of pop3d.lock), so a login through one
    worker delays the next one through either worker; another user is not delayed."""
    mailhost.deliver("alice", maildata.message(1))
    master = start_master(activated=False, notify=False, env={"POP3D_LOGIN_DELAY": "3600"})
    master.wait_serving()
    first = master.connect()
    assert login(first, "alice").startswith(b"+OK")
    where = master.holder(first)
    assert first.cmd("QUIT").startswith(b"+OK")
    for wid in (where, 3 - where):  # the worker that saw the login, and the other
        def refused():
            raw = master.on_worker(wid)
            reply = login(raw, "alice")
            raw.close()
            # The QUIT's session may still hold the lock for an instant: [IN-USE] is retried.
            return None if reply.startswith(b"-ERR [IN-USE]") else reply
        reply = wait_for(refused, what=f"alice's login on worker {wid}")
        assert reply.startswith(b"-ERR [LOGIN-DELAY]"), (wid, where, reply)
    for wid, user in ((where, "bob"), (3 - where, "carol")):  # others are not delayed by alice
        raw = master.on_worker(wid)
        assert login(raw, user).startswith(b"+OK"), (wid, user)
        assert raw.cmd("QUIT").startswith(b"+OK")


def low_descriptor_limit():
    """preexec_fn: RLIMIT_NOFILE 1,100 that pop3d cannot raise (CAP_SYS_RESOURCE dropped from
    the bounding set, so the exec does not grant it): a worker carries (1,100 − 1,024) / 2 =
    38 sessions by pop3d's own count."""
    pr_capbset_drop, cap_sys_resource = 24, 24
    if ctypes.CDLL(None, use_errno=True).prctl(pr_capbset_drop, cap_sys_resource, 0, 0, 0) != 0:
        os._exit(121)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1100, 1100))


def test_a_worker_whose_descriptors_are_spoken_for_leaves_new_clients_to_the_other(start_master, mailhost):
    """A worker stops accepting at the sessions its descriptor limit carries, so the kernel
    hands new clients to the other worker (before, the first worker woken took them and then
    failed their maildrop opens with EMFILE); it accepts again when sessions end."""
    capacity = (1100 - 1024) // 2
    master = start_master(activated=False, notify=False, preexec_fn=low_descriptor_limit)
    master.wait_serving()
    held = [master.connect() for _ in range(capacity + 20)]  # every one greeted
    per_worker = {1: 0, 2: 0}
    for raw in held:
        per_worker[master.holder(raw)] += 1
    assert max(per_worker.values()) <= capacity, per_worker
    assert sum(per_worker.values()) == capacity + 20
    full = max(per_worker, key=per_worker.get)
    master.wait_log(rf"descriptor limit: {capacity} connections .* worker={full}")
    # Both workers full: a new client is refused at once, not left waiting in the kernel's
    # queue for a greeting.
    held += [master.connect() for _ in range(2 * capacity - len(held))]
    refused = master.connect(greeting=None)
    assert refused.line() == b"-ERR [SYS/TEMP] Too many connections, try again later"
    refused.close()
    master.wait_log(r"connection refused: descriptor limit \(38 connections per worker\) reached on every worker")
    # Sessions on the full worker end: it accepts again.
    for raw in [r for r in held if master.holder(r) == full][:5]:
        assert raw.cmd("QUIT").startswith(b"+OK")
        raw.close()
    again = master.wait_log(rf"accepting again: (\d+) connections .*worker={full}")
    assert capacity - 5 <= int(again.group(1)) < capacity, again.group(0)
    for raw in held:
        raw.close()


def test_a_worker_that_cannot_start_stops_the_master_with_status_1(start_master, mailhost):
    missing = os.path.join(mailhost.root, "no-such-passwd")
    master = start_master(activated=False, notify=False, wait=False,
                          store=["--passwd-file", missing, "--mail", f"maildir:{mailhost.mail_root}/%u/Maildir"])
    status, log = master.wait_exit()
    assert status == 1, log
    assert missing in log and re.search(r"worker [12] did not start \(exit status 1\)", log), log
    assert SERVING not in log


def test_workers_auto_starts_one_worker_per_usable_cpu(start_master, mailhost):
    # At most two CPUs, so that a large machine starts no crowd of debug workers.
    cpus = sorted(os.sched_getaffinity(0))[:2]
    master = start_master(activated=False, notify=False, workers="auto",
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    if len(cpus) == 1:
        # One usable CPU: the single process of old, no master.
        raw = master.connect()
        assert raw.cmd("QUIT").startswith(b"+OK")
        assert "master starting workers" not in master.log()
        return
    master.wait_serving()
    assert sorted(wid for wid, _ in master.started()) == list(range(1, len(cpus) + 1)), master.log()
    assert f"master starting workers workers={len(cpus)}" in master.log()


def test_max_connections_is_per_host_across_workers(start_master, mailhost):
    master = start_master(activated=False, notify=False, env={"POP3D_MAX_CONNECTIONS": "3"})
    master.wait_serving()
    master.wait_log(r"session end ", "the end of the port probe's session")
    held = [master.connect() for _ in range(3)]
    holders = [master.holder(raw) for raw in held]

    # The fourth is refused whichever worker takes it, even one that holds fewer than 3.
    refused_by = []
    for _ in range(BURSTS):
        burst = [master.connect(greeting=None) for _ in range(BURST)]
        for raw in burst:
            port = raw.sock.getsockname()[1]
            assert raw.line() == b"-ERR [SYS/TEMP] Too many connections, try again later"
            raw.close()
            match = master.wait_log(rf"connection refused: max_connections \(3\) reached client=127\.0\.0\.1:{port} worker=(\d)")
            refused_by.append(int(match.group(1)))
        if any(holders.count(wid) < 3 for wid in refused_by):
            break
    assert any(holders.count(wid) < 3 for wid in refused_by), (holders, refused_by)

    # One ends: the next connection is taken again.
    assert held[0].cmd("QUIT").startswith(b"+OK")
    held[0].close()

    def admitted():
        raw = master.connect(greeting=None)
        line = raw.line()
        if line.startswith(b"+OK"):
            return raw
        raw.close()
        return None
    raw = wait_for(admitted, timeout=DEADLINE, what="a connection admitted after one ended")
    assert raw.cmd("QUIT").startswith(b"+OK")
    for other in held[1:]:
        assert other.cmd("QUIT").startswith(b"+OK")
