"""pop3bench end to end: against the built pop3d (counts equal what was asked, no errors) and
against tiny fake servers in this process that misbehave on purpose (errors counted by kind,
never as successes, non-zero exit)."""
import json
import os
import subprocess

import pytest

import maildata
from conftest import USERS
from pop3support import StubServer, binary

# Every pop3bench run is bounded twice: by its own --max-time and by this subprocess timeout.
RUN_TIMEOUT = 60


def bench(*args, port):
    cmd = [binary("pop3bench"), *args, "--port", str(port), "--json", "--quiet",
           "--timeout", "10", "--max-time", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON from {cmd}: rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}")
    return proc.returncode, report


@pytest.fixture
def filled(mailhost):
    for user in USERS:
        for i in range(3):
            data = maildata.message(i + 1, body_size=1500 + 700 * i)
            if i == 1:
                data += b".leading dot\n..two dots\n.\nlast line"
            mailhost.deliver(user, data, seconds=1_700_000_000 + i)
    return mailhost


def test_session_against_pop3d(filled):
    server = filled.serve()
    rc, r = bench("session", "--passwd-file", filled.passwd, "--concurrency", "3", "--count", "9",
                  port=server.port)
    assert r["errors"]["total"] == 0, r["first_error"]
    assert rc == 0
    assert r["sessions"] == {"started": 9, "ok": 9, "failed": 0}
    c = r["commands"]
    assert (c["connect"], c["login"], c["stat"], c["list"], c["uidl"], c["quit"]) == (9, 9, 9, 9, 9, 9)
    assert c["retr"] == 27
    expected = sum(maildata.crlf_octets(open(os.path.join(filled.maildir(u), "new", f), "rb").read())
                   for u in USERS for f in os.listdir(os.path.join(filled.maildir(u), "new")))
    # Each user's maildrop is read three times (9 sessions round-robin over 3 users).
    assert r["retr_octets"] == 3 * expected
    assert r["latency_us"]["retr"]["count"] == 27


@pytest.mark.parametrize("auth", ["apop", "plain"])
def test_session_other_logins_against_pop3d(filled, auth):
    """APOP checks pop3bench's own MD5 against the server's; AUTH PLAIN its SASL framing."""
    server = filled.serve(env={"POP3D_AUTH_MECHANISMS": "plain login apop"})
    rc, r = bench("session", "--passwd-file", filled.passwd, "--auth", auth, "--concurrency", "3",
                  "--count", "6", port=server.port)
    assert (rc, r["errors"]["total"]) == (0, 0), r["first_error"]
    assert r["sessions"]["ok"] == 6 and r["commands"]["login"] == 6


def test_connect_against_pop3d(mailhost):
    server = mailhost.serve()
    rc, r = bench("connect", "--concurrency", "5", "--count", "25", port=server.port)
    assert (rc, r["errors"]["total"]) == (0, 0), r["first_error"]
    assert r["sessions"]["ok"] == 25
    assert r["commands"]["connect"] == 25 and r["commands"]["quit"] == 25
    assert r["commands"]["login"] == 0


def test_noop_pipelined_against_pop3d(filled):
    server = filled.serve()
    rc, r = bench("noop", "--passwd-file", filled.passwd, "--concurrency", "3", "--count", "3",
                  "--commands", "200", "--depth", "16", port=server.port)
    assert (rc, r["errors"]["total"]) == (0, 0), r["first_error"]
    assert r["sessions"]["ok"] == 3
    assert r["commands"]["noop"] == 600
    assert r["latency_us"]["noop"]["count"] == 600


def test_refuses_non_loopback_target():
    proc = subprocess.run([binary("pop3bench"), "connect", "--host", "192.0.2.1", "--port", "110"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode != 0
    assert "loopback" in proc.stderr


class FakeServer(StubServer):
    """A scripted POP3 server on loopback: one thread, one client at a time, stopped by close()."""

    MESSAGE = b"Subject: x\r\n\r\nhello\r\n..dot\r\n"

    def __init__(self, list_size=None, refuse_pass=False):
        self.list_size = list_size if list_size is not None else len(self.MESSAGE) - 1  # un-stuffed
        self.refuse_pass = refuse_pass
        super().__init__()

    def handle(self, conn):
        with conn:
            try:
                self.session(conn)
            except OSError:
                pass

    def session(self, conn):
        conn.sendall(b"+OK fake ready\r\n")
        f = conn.makefile("rb")
        for raw in f:
            cmd = raw.strip().split(b" ")
            verb = cmd[0].upper()
            if verb == b"USER":
                conn.sendall(b"+OK\r\n")
            elif verb == b"PASS":
                conn.sendall(b"-ERR [AUTH] no\r\n" if self.refuse_pass else b"+OK logged in\r\n")
            elif verb == b"STAT":
                conn.sendall(b"+OK 1 %d\r\n" % self.list_size)
            elif verb == b"LIST":
                conn.sendall(b"+OK\r\n1 %d\r\n.\r\n" % self.list_size)
            elif verb == b"UIDL":
                conn.sendall(b"+OK\r\n1 uid-one\r\n.\r\n")
            elif verb == b"RETR":
                conn.sendall(b"+OK\r\n" + self.MESSAGE + b".\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"+OK bye\r\n")
                return
            else:
                conn.sendall(b"-ERR what\r\n")


@pytest.fixture
def fake():
    servers = []

    def make(**kw):
        s = FakeServer(**kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def test_fake_server_with_right_sizes_is_clean(fake):
    # Guards the two tests below: the fake server itself is correct when told the right size.
    server = fake()
    rc, r = bench("session", "--users", "x", "--password", "y", "--count", "2", port=server.port)
    assert (rc, r["errors"]["total"], r["sessions"]["ok"]) == (0, 0, 2), r["first_error"]
    assert r["retr_octets"] == 2 * (len(FakeServer.MESSAGE) - 1)


def test_retr_size_mismatch_is_counted(fake):
    server = fake(list_size=999)
    rc, r = bench("session", "--users", "x", "--password", "y", "--count", "3", port=server.port)
    assert rc != 0
    assert r["errors"]["size_mismatch"] == 3  # one per bad RETR
    assert r["errors"]["total"] == 3
    assert r["sessions"] == {"started": 3, "ok": 0, "failed": 3}


def test_retr_size_mismatch_allowed_errors_exit_zero(fake):
    server = fake(list_size=7)
    rc, r = bench("session", "--users", "x", "--password", "y", "--count", "1", "--allow-errors",
                  port=server.port)
    assert rc == 0
    assert r["errors"]["size_mismatch"] == 1


def test_pass_refused_counts_auth_errors(fake):
    server = fake(refuse_pass=True)
    rc, r = bench("session", "--users", "x", "--password", "y", "--count", "4", "--concurrency", "2",
                  port=server.port)
    assert rc != 0
    assert r["errors"]["auth"] == 4
    assert r["sessions"]["ok"] == 0 and r["sessions"]["failed"] == 4
    assert r["commands"]["login"] == 0 and r["commands"]["retr"] == 0


# --- TLS transports: STLS (RFC 2595) on the plain port, implicit TLS (RFC 8314) on the TLS port.

@pytest.fixture
def tls_host(filled, tmp_path):
    from test_tls import TLSHost
    return TLSHost(filled, tmp_path)


def tls_port(t, transport):
    return t.tls_port if transport == "tls" else t.server.port


@pytest.mark.parametrize("transport", ["tls", "stls"])
def test_connect_over_tls_against_pop3d(tls_host, transport):
    rc, r = bench("connect", "--transport", transport, "--concurrency", "4", "--count", "12",
                  port=tls_port(tls_host, transport))
    assert (rc, r["errors"]["total"]) == (0, 0), r["first_error"]
    assert r["sessions"] == {"started": 12, "ok": 12, "failed": 0}
    assert r["commands"]["connect"] == 12 and r["commands"]["quit"] == 12
    assert r["commands"]["tls"] == 12
    assert r["latency_us"]["tls"]["count"] == 12
    assert r["errors"]["tls"] == 0


@pytest.mark.parametrize("transport,auth", [("tls", "user"), ("stls", "user"), ("stls", "apop")])
def test_session_over_tls_against_pop3d(filled, tls_host, transport, auth):
    """With STLS, APOP still answers the timestamp of the plaintext greeting."""
    rc, r = bench("session", "--transport", transport, "--auth", auth, "--passwd-file", filled.passwd,
                  "--concurrency", "3", "--count", "6", port=tls_port(tls_host, transport))
    assert (rc, r["errors"]["total"]) == (0, 0), r["first_error"]
    assert r["sessions"] == {"started": 6, "ok": 6, "failed": 0}
    c = r["commands"]
    assert (c["connect"], c["tls"], c["login"], c["stat"], c["quit"]) == (6, 6, 6, 6, 6)
    assert c["retr"] == 18
    assert r["latency_us"]["tls"]["count"] == 6


def test_implicit_tls_against_plain_port_counts_tls_errors(mailhost):
    server = mailhost.serve()
    rc, r = bench("connect", "--transport", "tls", "--concurrency", "2", "--count", "4", port=server.port)
    assert rc == 1
    assert r["sessions"] == {"started": 4, "ok": 0, "failed": 4}
    assert r["errors"]["tls"] + r["errors"]["greeting"] == 4 == r["errors"]["total"], r["errors"]
    assert r["commands"]["tls"] == 0 and r["latency_us"]["tls"]["count"] == 0
    assert r["commands"]["connect"] == 0


def test_stls_refused_counts_tls_errors(mailhost):
    server = mailhost.serve()  # no certificate: STLS answers -ERR
    rc, r = bench("connect", "--transport", "stls", "--count", "3", port=server.port)
    assert rc == 1
    assert r["errors"]["tls"] == 3 == r["errors"]["total"], r["errors"]
    assert r["sessions"]["ok"] == 0 and r["commands"]["tls"] == 0
