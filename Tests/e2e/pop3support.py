"""Starting and stopping the built pop3d for end-to-end tests. Every wait has a deadline;
every process started here is stopped by its PID."""
import functools
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bin_dir():
    env = os.environ.get("POP3D_BIN_DIR")
    if env:
        return env
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    return out


def binary(name="pop3d"):
    env = os.environ.get("POP3D_BIN") if name == "pop3d" else None
    return env or os.path.join(bin_dir(), name)


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=20.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class LoggedProcess:
    """A child process (`self.proc`) whose stdout and stderr go to `self.log` at
    `self.log_path`; read its log, stop it by its PID. Shared by `Server` and the processes the
    multi-host tests start in network namespaces."""

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def terminate(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig`, waits up to `timeout` s, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


class StubServer:
    """A TCP server on 127.0.0.1:0 in a thread, for tests of a client (pop3bench): accepts until
    `close()`, each connection with a 10 s timeout handed to `handle(conn)`."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            self.handle(conn)

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(timeout=10)


class Server(LoggedProcess):
    """A running `pop3d serve`. stderr goes to a log file that failing tests print."""

    def __init__(self, args, tmpdir, host="127.0.0.1", port=None, env=None, wait=True, preexec_fn=None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = os.path.join(str(tmpdir), f"pop3d-{self.port}.log")
        self.args = [binary(), "serve", "--listen", f"{host}:{self.port}"
                     if ":" not in host else f"[{host}]:{self.port}"] + list(args)
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("LISTEN_FDS", None)
        if env:
            full_env.update(env)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=full_env, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        if wait:
            try:
                wait_for(lambda: self.proc.poll() is not None or port_open(self.host, self.port),
                         what=f"pop3d to listen on {self.port}")
            except TimeoutError:
                self.stop()
                raise
            if self.proc.poll() is not None:
                raise RuntimeError(f"pop3d exited with {self.proc.returncode}:\n{self.output()}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=30):
        status = self.terminate(sig, timeout)
        self.log.close()
        return status

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# How long a test waits for one thing pop3d tells systemd, or for a socket-activated start.
NOTIFY_DEADLINE = 15.0


def needs_activate(fn):
    """For tests that run systemd-socket-activate: make test installs systemd, so a missing
    tool is a failure, never a silent skip."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if shutil.which("systemd-socket-activate") is None:
            pytest.fail("systemd-socket-activate not installed (make test installs systemd)")
        return fn(*args, **kwargs)
    return wrapper


class Notifications:
    """Collects sd_notify datagrams on an AF_UNIX socket the test owns (NOTIFY_SOCKET), one
    `lines` entry per "KEY=VALUE" line, with its arrival time (time.monotonic()) in `times`
    and the sending PID in `senders` (SCM_CREDENTIALS, as systemd checks NotifyAccess=)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.path = path
        self.lines = []
        self.times = []
        self.senders = []

    def _receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
        except socket.timeout:
            return False
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("iII", payload[:12])[0]  # struct ucred: pid, uid, gid
        lines = data.decode("utf-8", "replace").splitlines()
        self.lines.extend(lines)
        self.times.extend([time.monotonic()] * len(lines))
        self.senders.extend([sender] * len(lines))
        return True

    def drain(self):
        """Takes every datagram already queued, without waiting; returns self.lines."""
        while self._receive(0):
            pass
        return self.lines

    def listen(self, seconds):
        """Receives for `seconds`: for tests that something does NOT come."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._receive(end - time.monotonic())
        return self.lines

    def wait_for(self, predicate, what, start=0):
        """Waits until a line at index >= start satisfies predicate; returns its index."""
        deadline = time.monotonic() + NOTIFY_DEADLINE
        while True:
            for i in range(start, len(self.lines)):
                if predicate(self.lines[i]):
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} from pop3d within {NOTIFY_DEADLINE}s; got {self.lines}")
            self._receive(left)

    def close(self):
        self.sock.close()


class Activated(LoggedProcess):
    """`pop3d serve serve_args` started by systemd-socket-activate on a free loopback port,
    with a NOTIFY_SOCKET the test owns (`self.notify`); stderr in the log. `env` reaches pop3d
    through -E: systemd-socket-activate passes on nothing else but TERM, PATH, USER and HOME.
    It execs pop3d (same PID) on the first connection, `self.client`."""

    def __init__(self, tmp, serve_args, fdname=None, watchdog_usec=None, env=None):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.notify = Notifications(os.path.join(tmp, "notify.sock"))
        self.log_path = os.path.join(tmp, "pop3d.stderr")
        cmd = ["systemd-socket-activate", "-l", f"127.0.0.1:{self.port}"]
        if fdname:
            cmd.append(f"--fdname={fdname}")
        environment = {"NOTIFY_SOCKET": self.notify.path}
        # Only WATCHDOG_USEC: sd_watchdog_enabled() would compare WATCHDOG_PID with getpid().
        if watchdog_usec:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        environment.update(env or {})
        for key, value in environment.items():
            cmd += ["-E", f"{key}={value}"]
        cmd += [binary(), "serve"] + list(serve_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)

        def connect():
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-socket-activate exited: {self.output()}")
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=NOTIFY_DEADLINE)
            except OSError:
                return None
        self.client = wait_for(connect, timeout=NOTIFY_DEADLINE, what="systemd-socket-activate to listen")

    def wait_exit(self):
        try:
            return self.proc.wait(timeout=NOTIFY_DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pop3d did not exit: {self.output()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=NOTIFY_DEADLINE)
        self.client.close()
        self.notify.close()
        self.log.close()
