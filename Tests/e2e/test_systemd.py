"""pop3d under systemd socket activation, against the built binary.

systemd-socket-activate plays the service manager's socket part; the test owns the
NOTIFY_SOCKET (an AF_UNIX datagram socket) and checks what pop3d tells systemd:
READY=1, STATUS=, WATCHDOG=1, RELOADING=1 + MONOTONIC_USEC= then READY=1 after SIGHUP,
STOPPING=1 then exit status 0 after SIGTERM. Every wait has a deadline; every process
started is killed by PID in teardown.
"""
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

DEADLINE = 15.0


def pop3d_binary():
    env = os.environ.get("POP3D_BIN")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=root, capture_output=True, text=True, check=True)
    return os.path.join(out.stdout.strip(), "pop3d")


_needs_store = {}


def store_args(tmp):
    """The full server needs a passwd-file and a mail location; the skeleton takes neither."""
    binary = pop3d_binary()
    if binary not in _needs_store:
        out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True)
        _needs_store[binary] = "--passwd-file" in out.stdout + out.stderr
    if not _needs_store[binary]:
        return []
    passwd = os.path.join(tmp, "passwd")
    with open(passwd, "w") as f:
        f.write("")
    os.makedirs(os.path.join(tmp, "mail"), exist_ok=True)
    return ["--passwd-file", passwd, "--mail", f"maildir:{tmp}/mail/%u/Maildir"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Notifications:
    """Collects sd_notify datagrams, one list entry per "KEY=VALUE" line."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.lines = []

    def _receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        self.lines.extend(data.decode("utf-8", "replace").splitlines())

    def wait_for(self, predicate, what, start=0):
        """Waits until a line at index >= start satisfies predicate; returns its index."""
        deadline = time.monotonic() + DEADLINE
        while True:
            for i in range(start, len(self.lines)):
                if predicate(self.lines[i]):
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} from pop3d within {DEADLINE}s; got {self.lines}")
            self._receive(left)

    def close(self):
        self.sock.close()


class Activated:
    """pop3d started by systemd-socket-activate on a free loopback port."""

    def __init__(self, tmp, fdname=None, watchdog_usec=None):
        self.port = free_port()
        self.notify = Notifications(os.path.join(tmp, "notify.sock"))
        self.stderr_path = os.path.join(tmp, "pop3d.stderr")
        cmd = ["systemd-socket-activate", "-l", f"127.0.0.1:{self.port}"]
        if fdname:
            cmd.append(f"--fdname={fdname}")
        cmd += ["-E", f"NOTIFY_SOCKET={self.notify.path}"]
        # Only WATCHDOG_USEC: sd_watchdog_enabled() would compare WATCHDOG_PID with getpid().
        if watchdog_usec:
            cmd += ["-E", f"WATCHDOG_USEC={watchdog_usec}"]
        cmd += [pop3d_binary(), "serve", "--log-level", "debug", "--shutdown-timeout", "5"] + store_args(tmp)
        cmd += shlex.split(os.environ.get("POP3D_SERVE_ARGS", ""))
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr)
        # systemd-socket-activate binds first and execs pop3d on the first connection.
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                self.client = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"systemd-socket-activate did not listen: {self.log()}")
                time.sleep(0.02)

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self):
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pop3d did not exit: {self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEADLINE)
        self.client.close()
        self.notify.close()
        self.stderr.close()


def read_line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def tmp():
    # Short path: AF_UNIX socket paths are limited to 108 bytes.
    path = tempfile.mkdtemp(prefix="pop3d-sd-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def activate(tmp):
    started = []

    def start(**kw):
        server = Activated(tmp, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _require_activate(fn):
    """make test installs systemd; a missing tool is a failure, never a silent skip."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if shutil.which("systemd-socket-activate") is None:
            pytest.fail("systemd-socket-activate not installed (make test installs systemd)")
        return fn(*args, **kwargs)
    return wrapper


needs_activate = _require_activate


@needs_activate
@pytest.mark.parametrize("fdname", ["pop3", None], ids=["named-pop3", "unnamed"])
def test_socket_activation_lifecycle(activate, fdname):
    server = activate(fdname=fdname, watchdog_usec=400_000)
    n = server.notify

    # The greeting arrives through the inherited listening socket.
    assert read_line(server.client).startswith(b"+OK")
    ready = n.wait_for(lambda l: l == "READY=1", "READY=1")
    n.wait_for(lambda l: l.startswith("STATUS="), "STATUS=")

    # WATCHDOG_USEC=400ms: pings at half of it, so two arrive well within the deadline.
    first = n.wait_for(lambda l: l == "WATCHDOG=1", "WATCHDOG=1")
    n.wait_for(lambda l: l == "WATCHDOG=1", "a second WATCHDOG=1", start=first + 1)

    server.client.sendall(b"NOOP\r\n")
    assert read_line(server.client).startswith(b"-ERR")
    server.client.sendall(b"QUIT\r\n")
    assert read_line(server.client).startswith(b"+OK")

    # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
    mark = len(n.lines)
    server.proc.send_signal(signal.SIGHUP)
    reloading = n.wait_for(lambda l: l == "RELOADING=1", "RELOADING=1", start=mark)
    n.wait_for(lambda l: l.startswith("MONOTONIC_USEC=") and l.split("=", 1)[1].isdigit(),
               "MONOTONIC_USEC=", start=reloading + 1)
    n.wait_for(lambda l: l == "READY=1", "READY=1 after reload", start=reloading + 1)
    assert ready < reloading

    # SIGTERM: STOPPING=1, drain, exit 0.
    mark = len(n.lines)
    server.proc.send_signal(signal.SIGTERM)
    n.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1", start=mark)
    assert server.wait_exit() == 0, server.log()


@needs_activate
def test_sigterm_drains_an_idle_session_and_exits_zero(activate):
    server = activate(fdname="pop3")
    assert read_line(server.client).startswith(b"+OK")
    server.notify.wait_for(lambda l: l == "READY=1", "READY=1")
    server.proc.send_signal(signal.SIGTERM)
    server.notify.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1")
    # The idle session is closed by the drain: the client sees EOF, perhaps after a last
    # "-ERR" line (RFC 1939 lets the server end a session it must stop).
    server.client.settimeout(DEADLINE)
    rest = b""
    while True:
        chunk = server.client.recv(4096)
        if not chunk:
            break
        rest += chunk
    assert rest == b"" or (rest.startswith(b"-ERR") and rest.endswith(b"\r\n") and rest.count(b"\r\n") == 1), rest
    assert server.wait_exit() == 0, server.log()


@needs_activate
def test_no_watchdog_pings_without_watchdog_usec(activate):
    server = activate(fdname="pop3")
    assert read_line(server.client).startswith(b"+OK")
    server.notify.wait_for(lambda l: l == "READY=1", "READY=1")
    server.proc.send_signal(signal.SIGTERM)
    server.notify.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1")
    assert server.wait_exit() == 0
    assert "WATCHDOG=1" not in server.notify.lines


@needs_activate
def test_pop3s_socket_without_certificate_is_refused(activate):
    server = activate(fdname="pop3s")
    assert server.wait_exit() != 0
    log = server.log()
    assert "fd 3" in log and "pop3s" in log, log
    assert "READY=1" not in server.notify.lines
