"""Starting and stopping the built pop3d for end-to-end tests. Every wait has a deadline;
every process started here is stopped by its PID."""
import os
import signal
import socket
import subprocess
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


class Server:
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

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
