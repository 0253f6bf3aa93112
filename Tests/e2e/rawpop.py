"""A minimal raw POP3 client that shows every byte the server sends."""
import socket
import time


class Raw:
    def __init__(self, host, port, timeout=20, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text) -> bytes:
        self.send(text.encode() + b"\r\n" if isinstance(text, str) else text + b"\r\n")
        return self.line()

    def multiline(self) -> list:
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def closed(self, timeout=20) -> bool:
        """True once the server closed the connection (reads EOF) within the deadline."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def login(self, user, password):
        greeting = self.line()
        assert greeting.startswith(b"+OK"), greeting
        r = self.cmd(f"USER {user}")
        assert r.startswith(b"+OK"), r
        return self.cmd(f"PASS {password}")

    def close(self):
        self.sock.close()


def uidl_and_list(host, port, user, password):
    """The UIDL and LIST reply lines of one session, as sent (without the final dot): login,
    UIDL, LIST, QUIT; nothing deleted."""
    c = Raw(host, port)
    try:
        r = c.login(user, password)
        assert r.startswith(b"+OK"), r
        assert c.cmd("UIDL").startswith(b"+OK")
        uidl = c.multiline()
        assert c.cmd("LIST").startswith(b"+OK")
        sizes = c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
        return uidl, sizes
    finally:
        c.close()
