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
import subprocess
import tempfile

import pytest

from pop3support import NOTIFY_DEADLINE as DEADLINE, Activated, binary, needs_activate

_needs_store = {}


def store_args(tmp):
    """The full server needs a passwd-file and a mail location; the skeleton takes neither."""
    pop3d = binary()
    if pop3d not in _needs_store:
        out = subprocess.run([pop3d, "serve", "--help"], capture_output=True, text=True)
        _needs_store[pop3d] = "--passwd-file" in out.stdout + out.stderr
    if not _needs_store[pop3d]:
        return []
    passwd = os.path.join(tmp, "passwd")
    with open(passwd, "w") as f:
        f.write("")
    os.makedirs(os.path.join(tmp, "mail"), exist_ok=True)
    return ["--passwd-file", passwd, "--mail", f"maildir:{tmp}/mail/%u/Maildir"]


def read_line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def greet_ready_then_stop(server):
    """The greeting and READY=1, then SIGTERM and STOPPING=1."""
    assert read_line(server.client).startswith(b"+OK")
    server.notify.wait_for(lambda l: l == "READY=1", "READY=1")
    server.proc.send_signal(signal.SIGTERM)
    server.notify.wait_for(lambda l: l == "STOPPING=1", "STOPPING=1")


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
        serve_args = ["--log-level", "debug", "--shutdown-timeout", "5"] + store_args(tmp)
        serve_args += shlex.split(os.environ.get("POP3D_SERVE_ARGS", ""))
        server = Activated(tmp, serve_args, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
    assert server.wait_exit() == 0, server.output()


@needs_activate
def test_sigterm_drains_an_idle_session_and_exits_zero(activate):
    server = activate(fdname="pop3")
    greet_ready_then_stop(server)
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
    assert server.wait_exit() == 0, server.output()


@needs_activate
def test_no_watchdog_pings_without_watchdog_usec(activate):
    server = activate(fdname="pop3")
    greet_ready_then_stop(server)
    assert server.wait_exit() == 0
    assert "WATCHDOG=1" not in server.notify.lines


@needs_activate
def test_pop3s_socket_without_certificate_is_refused(activate):
    server = activate(fdname="pop3s")
    assert server.wait_exit() != 0
    log = server.output()
    assert "fd 3" in log and "pop3s" in log, log
    assert "READY=1" not in server.notify.lines
