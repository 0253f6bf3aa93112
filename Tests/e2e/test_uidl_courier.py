"""Moving from Courier's POP3 server (issue 14): Debian's real `courier-pop` serves a
Maildir first (so it writes `courierpop3dsizelist`), then pop3d with `uidl_format: courier`
must list the same UIDLs and sizes byte for byte, and `pop3d uidl import --from courier`
must keep them with `uidl_format: maildir`.

Courier runs as the test's own instance: `couriertcpd` on a free loopback port, its
`courierpop3login` authenticating through the test's own `authdaemond` (userdb module)
with the test's own configuration. Courier's library and daemon have the socket
(/run/courier/authdaemon) and the configuration folder (/etc/courier) compiled in, so the
instance runs in a private mount namespace (`unshare --mount --pid`) where a tmpfs covers
/run and the test's folder covers /etc/courier: the system's files and service are never
touched. Stopped by killing `unshare` (its child, and with it the namespace, dies).
"""
import os
import shutil
import signal
import subprocess
import tempfile

from conftest import USERS
from pop3support import binary, free_port, port_open, wait_for
from rawpop import uidl_and_list

COURIER_TCPD = "/usr/sbin/couriertcpd"
AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"


def courier_pop_root():
    """Where Courier's pop3d binaries are: Debian's courier-pop conflicts with dovecot-pop3d
    (both are a "pop3-server"), so `make test-deps` unpacks its package into
    .build/courier-pop (COURIER_POP_ROOT) instead of installing it; an installed courier-pop
    (root "/") is used when there is no unpacked one."""
    env = os.environ.get("COURIER_POP_ROOT")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".build", "courier-pop")
    return os.path.abspath(here) if os.path.isdir(here) else "/"


COURIER_LOGIN = os.path.join(courier_pop_root(), "usr/lib/courier/courier/courierpop3login")
COURIER_POP3D = os.path.join(courier_pop_root(), "usr/lib/courier/courier/courierpop3d")


class CourierPOP:
    """Courier's pop3d for one user whose Maildir is `maildir` (uid 0: the Maildir is the
    test's, under a folder only root may enter)."""

    def __init__(self, tmp, user, password, maildir):
        for tool in (COURIER_TCPD, COURIER_LOGIN, COURIER_POP3D, AUTHDAEMOND, "/usr/sbin/userdb",
                     "/usr/sbin/makeuserdb", "/usr/sbin/userdbpw"):
            assert os.path.exists(tool), f"{tool} missing: run make test-deps (courier-base, courier-pop unpacked)"
        self.dir = tempfile.mkdtemp(prefix="courier-", dir=str(tmp))
        etc = os.path.join(self.dir, "etc")
        os.makedirs(etc)
        with open(os.path.join(etc, "authdaemonrc"), "w") as f:
            f.write('authmodulelist="authuserdb"\ndaemons=1\n'
                    'authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\n'
                    'DEFAULTOPTIONS=""\nLOGGEROPTS=""\n')
        self.port = free_port()
        self.log = os.path.join(self.dir, "pop3d.log")
        home = os.path.dirname(maildir)
        script = os.path.join(self.dir, "run.sh")
        with open(script, "w") as f:
            f.write(f"""set -e
mount --bind {etc} /etc/courier
mount -t tmpfs tmpfs /run
mkdir -p /run/courier/authdaemon
pw=$(printf '%s\\n' "$COURIER_TEST_PASSWORD" | userdbpw -md5)
userdb {user} set uid=0 gid=0 home={home} mail={maildir} systempw="$pw"
makeuserdb
{AUTHDAEMOND} > {self.dir}/authdaemond.log 2>&1 &
exec env -i PATH=/usr/bin:/bin:/usr/sbin {COURIER_TCPD} -address=127.0.0.1 -nodnslookup \\
  -noidentlookup -maxprocs=4 -maxperip=4 -stderr={self.log} {self.port} \\
  {COURIER_LOGIN} {COURIER_POP3D} Maildir
""")
        self.out = open(os.path.join(self.dir, "unshare.log"), "wb")
        env = dict(os.environ, COURIER_TEST_PASSWORD=password)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
             "--", "/bin/sh", script], stdout=self.out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env)
        try:
            wait_for(lambda: self.proc.poll() is not None or port_open("127.0.0.1", self.port),
                     what=f"Courier's couriertcpd on {self.port}")
            assert self.proc.poll() is None, f"Courier did not start:\n{self.output()}"
        except BaseException:
            self.stop()
            raise

    def output(self):
        text = ""
        for name in ("unshare.log", "authdaemond.log", "pop3d.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    text += f"--- {name}\n" + f.read().decode(errors="replace")
        return text

    def stop(self):
        # The namespace's init is unshare's child: killing it kills every process of the
        # namespace, and unshare reaps it and exits. (unshare --fork ignores SIGTERM while it
        # waits; if the child is not found, SIGKILL to unshare makes --kill-child do the same.)
        if self.proc.poll() is None:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    children = [int(p) for p in f.read().split()]
            except OSError:
                children = []
            for child in children:
                os.kill(child, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.out.close()
        wait_for(lambda: not port_open("127.0.0.1", self.port), what="Courier's port to close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def listing(port, user, password):
    """The raw UIDL and LIST reply lines of one session (QUIT at the end, nothing deleted)."""
    return uidl_and_list("127.0.0.1", port, user, password)


def deliver_named(maildir, name, data):
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(maildir, "new", name))


def body(i, lines):
    return (f"From: sender{i}@example.org\nTo: alice@example.org\nSubject: message {i}\n\n".encode()
            + b"".join(f"line {k} of message {i}\n".encode() for k in range(lines)))


def pop3d(*args):
    return subprocess.run([binary(), *args], capture_output=True, timeout=120)


def test_courier_uidls_served_and_imported(mailhost, tmp_path):
    md = mailhost.maildir("alice")
    # Same second, microseconds of different widths: Courier orders by the name's octets
    # (M100 < M14 < M7), pop3d's own order by microseconds. Plus one a second later.
    names = ["1790000000.M7P11Q1.testhost", "1790000000.M14P11Q2.testhost",
             "1790000000.M100P11Q3.testhost", "1790000000.M21P11Q4.testhost,S=99",
             "1790000001.M5P11Q5.testhost"]
    for i, name in enumerate(names):
        deliver_named(md, name, body(i, 3 + 7 * i))

    with CourierPOP(tmp_path, "alice", USERS["alice"], md) as courier:
        try:
            courier_uidl, courier_list = listing(courier.port, "alice", USERS["alice"])
        except BaseException:
            print(courier.output())
            raise
    sizelist = os.path.join(md, "courierpop3dsizelist")
    assert os.path.exists(sizelist), "Courier wrote no courierpop3dsizelist"
    assert len(courier_uidl) == len(names)
    assert all(line.split()[1].startswith(b"UID") for line in courier_uidl), courier_uidl
    # Courier moved every message to cur/ with ":2,".
    assert sorted(os.listdir(os.path.join(md, "cur"))) == sorted(n + ":2," for n in names)

    # pop3d with uidl_format: courier serves the same listing, byte for byte.
    server = mailhost.serve(env={"POP3D_UIDL_FORMAT": "courier"})
    uidl, sizes = listing(server.port, "alice", USERS["alice"])
    assert uidl == courier_uidl
    assert sizes == courier_list
    assert "fall back" not in server.output(), server.output()
    server.stop()

    # Mail Courier never saw keeps its maildir UIDL; Courier's file is not written.
    with open(sizelist, "rb") as f:
        before = f.read()
    late = "1790000100.M1P11Q6.testhost"
    deliver_named(md, late, body(9, 4))
    server = mailhost.serve(env={"POP3D_UIDL_FORMAT": "courier"})
    uidl, sizes = listing(server.port, "alice", USERS["alice"])
    server.stop()
    assert uidl[:-1] == courier_uidl and uidl[-1] == f"{len(names) + 1} {late}".encode()
    with open(sizelist, "rb") as f:
        assert f.read() == before

    # Import once, then uidl_format: maildir (the default) keeps every Courier UIDL.
    r = pop3d("uidl", "import", "--from", "courier", md)
    assert r.returncode == 0, r.stderr
    assert b"5 of 6 messages keep their courier UIDL" in r.stdout, r.stdout
    assert b"1 not in the source" in r.stdout, r.stdout
    server = mailhost.serve()
    uidl2, sizes2 = listing(server.port, "alice", USERS["alice"])
    server.stop()

    def by_uidl(uidl_lines, list_lines):
        number_to_size = dict(line.split() for line in list_lines)
        return {u: number_to_size[n] for n, u in (line.split() for line in uidl_lines)}

    assert by_uidl(uidl2, sizes2) == by_uidl(uidl, sizes)

    # check prints, per message, what each format gives and what is served.
    r = pop3d("uidl", "check", md)
    assert r.returncode == 0, r.stderr
    rows = [line.split(b"\t") for line in r.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 6
    served = {row[2] for row in rows}
    assert served == {line.split()[1] for line in uidl}
    assert [row[3] for row in rows].count(b"imported") == 5


def test_broken_courier_file_falls_back_and_import_changes_nothing(mailhost):
    md = mailhost.maildir("bob")
    names = ["1790000000.M1P1Q1.testhost", "1790000002.M1P1Q2.testhost"]
    for i, name in enumerate(names):
        deliver_named(md, name, body(i, 2))
    sizelist = os.path.join(md, "courierpop3dsizelist")
    # Torn: the last record has no LF.
    with open(sizelist, "wb") as f:
        f.write(b"/3 3 1790000000\n" + f"{names[0]}:2, 80 1:1790000000:0\n{names[1]}:2, 80 2:17".encode())
    r = pop3d("uidl", "import", "--from", "courier", md)
    assert r.returncode != 0
    assert b"truncated" in r.stderr and b"nothing changed" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(md, "pop3d.uidls"))

    server = mailhost.serve(env={"POP3D_UIDL_FORMAT": "courier"})
    uidl, _ = listing(server.port, "bob", USERS["bob"])
    assert uidl == [f"1 {names[0]}".encode(), f"2 {names[1]}".encode()]
    wait_for(lambda: "UIDLs fall back to maildir for this session" in server.output(), what="the fallback logged")
    assert "truncated" in server.output()
    server.stop()

    # 100 MB of garbage: refused unread, nothing changed.
    with open(sizelist, "wb") as f:
        f.truncate(100 * 1000 * 1000)
    r = pop3d("uidl", "import", "--from", "courier", md)
    assert r.returncode != 0 and b"read at most" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(md, "pop3d.uidls"))
    os.unlink(sizelist)


def test_x_uidl_import(mailhost):
    md = mailhost.maildir("carol")
    headers = [b"X-UIDL: 3f2a1b0c9d8e7f60\n", b"x-uidl:\t 3f2a1b0c9d8e7f60 \n", b"", b"X-UIDL: abc\n"]
    for i, h in enumerate(headers):
        deliver_named(md, f"17900000{i:02d}.M1P1Q{i}.testhost",
                      b"Received: by host\n" + h + f"Subject: {i}\n\nbody\n".encode())
    r = pop3d("uidl", "import", "--from", "x-uidl", md)
    assert r.returncode == 0, r.stderr
    assert b"1 duplicates renamed" in r.stdout, r.stdout
    server = mailhost.serve()
    uidl, _ = listing(server.port, "carol", USERS["carol"])
    server.stop()
    assert uidl == [b"1 3f2a1b0c9d8e7f60", b"2 3f2a1b0c9d8e7f60-2", b"3 1790000002.M1P1Q2.testhost", b"4 abc"]
    # Running it again changes nothing.
    r = pop3d("uidl", "import", "--from", "x-uidl", md)
    assert r.returncode == 0 and b"unchanged" in r.stdout, (r.stdout, r.stderr)
