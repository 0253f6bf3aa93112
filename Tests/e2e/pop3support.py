"""Starting and stopping the built pop3d for end-to-end tests. Every wait has a deadline;
every process started here is stopped by its PID."""
import os
import signal
import socket
import subprocess
import threading
import time

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
