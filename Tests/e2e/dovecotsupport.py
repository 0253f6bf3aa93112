"""A real Dovecot (Debian's dovecot-pop3d and dovecot-imapd) for end-to-end tests on the same
Maildirs as pop3d: its own configuration, base_dir and log under the test's temporary folder,
POP3 and IMAP on free loopback ports, started by the test and stopped by its master's PID.
Never the system service."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from pop3support import free_port, port_open, wait_for

CONFIG = """\
base_dir = {run}/run
state_dir = {run}/state
instance_name = pop3d-test-dovecot-{pop3}
protocols = pop3 imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {run}/dovecot.log
info_log_path = {run}/dovecot.log
mail_location = maildir:{mail_root}/%u/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
first_valid_gid = {gid}
pop3_uidl_format = {uidl_format}
mail_max_userip_connections = 1000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_root}/%u
}}
service pop3 {{
  executable = {pop3_dir}/pop3
}}
service pop3-login {{
  executable = {pop3_dir}/pop3-login
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


# Debian's courier-pop (Tests/e2e/test_uidl_courier.py) conflicts with dovecot-pop3d (both
# provide pop3-server), so installing one removes the other. When dovecot-pop3d is not
# installed, its binaries are run from the package unpacked here by `make test-deps`
# (apt-get download + dpkg-deb -x, nothing installed); the rest of Dovecot is dovecot-core's.
UNPACKED_POP3 = os.environ.get("POP3D_TEST_DOVECOT_POP3_DIR",
                               "/var/cache/pop3d-tests/dovecot-pop3d/usr/lib/dovecot")  # Makefile DOVECOT_POP3_DIR


def pop3_dir():
    for d in ("/usr/lib/dovecot", UNPACKED_POP3):
        if os.path.exists(os.path.join(d, "pop3")) and os.path.exists(os.path.join(d, "pop3-login")):
            return d
    return None


def available():
    return shutil.which("dovecot") is not None and os.path.exists("/usr/lib/dovecot/imap") \
        and pop3_dir() is not None


def mail_ids():
    """Dovecot refuses to access mail as root: it and pop3d run as Debian's `mail` user."""
    pw = pwd.getpwnam("mail")
    return pw.pw_uid, pw.pw_gid


def share_maildir(mailhost, user="alice"):
    """Makes `user`'s Maildir (and the folders above it) reachable and writable for the mail
    user, as on a host where Dovecot and pop3d run as one virtual-mail user. Messages the
    test delivers as root stay readable (0644) and renamable (the folders are the user's)."""
    uid, gid = mail_ids()
    os.chmod(mailhost.root, 0o755)
    os.chmod(mailhost.passwd, 0o644)
    maildir = mailhost.maildir(user)
    for d in (mailhost.mail_root, os.path.dirname(maildir)):
        os.chmod(d, 0o755)
    os.chown(os.path.dirname(maildir), uid, gid)
    for d in (maildir, *(os.path.join(maildir, s) for s in ("new", "cur", "tmp"))):
        os.chown(d, uid, gid)
        os.chmod(d, 0o700)
    return {"POP3D_USER": "mail"}


class Dovecot:
    """`Dovecot(tmp, mailhost, uidl_format)`: started at once; `.stop()` by the master's PID."""

    def __init__(self, tmp, mailhost, uidl_format="%08Xu%08Xv"):
        uid, gid = mail_ids()
        # A short folder of its own: Dovecot's UNIX sockets live under base_dir, and a socket
        # path is limited to 108 octets (pytest's tmp_path is longer). Removed by stop().
        self.run = tempfile.mkdtemp(prefix="dc-", dir="/tmp")
        # Dovecot's auth process runs as the dovecot user: it gets a readable copy of the
        # passwd-file (pytest's folders are 0700 root).
        os.chmod(self.run, 0o755)
        passwd = os.path.join(self.run, "passwd")
        shutil.copyfile(mailhost.passwd, passwd)
        os.chmod(passwd, 0o644)
        self.pop3 = free_port()
        self.imap = free_port()
        self.conf = os.path.join(self.run, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(run=self.run, mail_root=mailhost.mail_root, passwd=passwd,
                                  uid=uid, gid=gid, uidl_format=uidl_format,
                                  pop3_dir=pop3_dir(), pop3=self.pop3, imap=self.imap))
        self.log_path = os.path.join(self.run, "dovecot.log")
        # The master daemonizes and keeps its inherited descriptors: a file, not a pipe.
        start_log = os.path.join(self.run, "start.log")
        with open(start_log, "wb") as out:
            r = subprocess.run(["dovecot", "-c", self.conf], stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=60)
        with open(start_log, "rb") as f:
            assert r.returncode == 0, f"dovecot did not start: {f.read().decode(errors='replace')}"
        self.pid_path = os.path.join(self.run, "run", "master.pid")
        self.pid = None
        try:
            wait_for(lambda: os.path.exists(self.pid_path), what="dovecot's master.pid")
            with open(self.pid_path) as f:
                self.pid = int(f.read().strip())
            wait_for(lambda: port_open("127.0.0.1", self.pop3)
                     and port_open("127.0.0.1", self.imap), what="dovecot to listen")
        except BaseException:
            self.cleanup()
            raise

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def gone():
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True
        try:
            wait_for(gone, timeout=30, what="dovecot to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)

    def cleanup(self):
        """Stops Dovecot and removes its folder (after the test has read its log)."""
        self.stop()
        shutil.rmtree(self.run, ignore_errors=True)


class Imap:
    """A minimal IMAP4rev1 client: tagged commands, literals read whole."""

    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.n = 0
        assert self._line().startswith(b"* OK"), "no IMAP greeting"

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("IMAP connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text):
        """Sends a tagged command; returns (untagged lines with literals inlined, tagged line)."""
        self.n += 1
        tag = f"a{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while True:
            line = self._line()
            # A literal {n}: its octets follow the line, then the rest of the response.
            while line.endswith(b"}") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1:-1])
                while len(self.buf) < size:
                    self._fill()
                literal, self.buf = self.buf[:size], self.buf[size:]
                line = line + b"\r\n" + literal + self._line()
            if line.startswith(tag + b" "):
                return untagged, line
            untagged.append(line)

    def login(self, user, password):
        _, done = self.cmd(f'LOGIN {user} "{password}"')
        assert done.split()[1] == b"OK", done
        _, done = self.cmd("SELECT INBOX")
        assert done.split()[1] == b"OK", done

    def uids(self):
        """`UID FETCH 1:* (UID)`: the UIDs in sequence order."""
        lines, done = self.cmd("UID FETCH 1:* (UID)")
        assert done.split()[1] == b"OK", done
        out = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == b"FETCH":
                out.append(int(line[line.index(b"UID ") + 4:].split(b")")[0].split()[0]))
        return out

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (OSError, EOFError):
            pass
        self.sock.close()
