"""TLS end to end: implicit TLS (RFC 8314) and STLS (RFC 2595) with real clients, the
STARTTLS injection test, stalled handshakes, certificate reload and the plaintext policy.
Certificates are made with openssl at test time; everything runs on loopback."""
import mailbox
import os
import poplib
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import maildata
from conftest import ALL_MECHANISMS, USERS
from pop3support import free_port, port_open, wait_for
from rawpop import Raw

# Issue 10: the server offers only `auth_mechanisms` (default plain login); these tests
# exercise every mechanism, so they enable all of them.


def make_cert(directory, cn, name=None):
    """A self-signed certificate for 127.0.0.1/localhost with the given CN."""
    name = name or cn
    cert = os.path.join(str(directory), f"{name}.crt")
    key = os.path.join(str(directory), f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class TLSHost:
    def __init__(self, mailhost, tmp_path, host="127.0.0.1", extra=(), env=None):
        self.cert, self.key = make_cert(tmp_path, "pop3d-test-one", "one")
        self.tls_port = free_port(host)
        self.server = mailhost.serve(
            "--listen-tls", f"{host}:{self.tls_port}", "--tls-cert", self.cert,
            "--tls-key", self.key, *extra, host=host, env={**ALL_MECHANISMS, **(env or {})})
        wait_for(lambda: port_open(host, self.tls_port), what="TLS port")
        self.host = host

    def context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx


def fill(mailhost, user="alice", count=3):
    originals = []
    for i in range(count):
        data = maildata.message(i + 1, body_size=3000 + 1000 * i)
        mailhost.deliver(user, data, seconds=1_700_000_000 + i)
        originals.append(data)
    return originals


def s_client(args, commands, timeout=30):
    """openssl s_client fed `commands` line by line; returns its stdout."""
    proc = subprocess.run(["openssl", "s_client", "-quiet", "-verify_quiet", *args],
                          input="".join(c + "\r\n" for c in commands).encode(),
                          capture_output=True, timeout=timeout)
    return proc.stdout.decode(errors="replace")


def test_openssl_s_client_implicit_tls(mailhost, tmp_path):
    fill(mailhost, count=2)
    t = TLSHost(mailhost, tmp_path)
    out = s_client(["-connect", f"127.0.0.1:{t.tls_port}", "-CAfile", t.cert, "-ign_eof"],
                   ["CAPA", "USER alice", f"PASS {USERS['alice']}", "STAT", "QUIT"])
    lines = out.split("\r\n")
    assert lines[0].startswith("+OK"), out
    assert "STLS" not in lines, out  # already TLS: RFC 2595 §4 offers STLS only in plaintext
    assert "USER" in lines and any(l.startswith("SASL ") and "PLAIN" in l for l in lines), out
    assert any(l.startswith("+OK 2 ") for l in lines), out
    assert lines[-2].startswith("+OK"), out  # QUIT


def test_openssl_s_client_starttls(mailhost, tmp_path):
    fill(mailhost, count=1)
    t = TLSHost(mailhost, tmp_path)
    out = s_client(["-connect", f"127.0.0.1:{t.server.port}", "-starttls", "pop3",
                    "-CAfile", t.cert, "-ign_eof"],
                   ["USER alice", f"PASS {USERS['alice']}", "STAT", "QUIT"])
    assert "+OK 1 " in out, out


def test_curl_pop3s_and_ssl_reqd(mailhost, tmp_path):
    originals = fill(mailhost, count=2)
    t = TLSHost(mailhost, tmp_path)
    user = f"alice:{USERS['alice']}"
    r = subprocess.run(["curl", "-sS", "--cacert", t.cert, "-u", user,
                        f"pop3s://127.0.0.1:{t.tls_port}/2"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == maildata.as_crlf(originals[1])
    r = subprocess.run(["curl", "-sS", "-k", "--ssl-reqd", "-u", user,
                        f"pop3://127.0.0.1:{t.server.port}/1"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == maildata.as_crlf(originals[0])


def test_poplib_pop3_ssl_and_stls(mailhost, tmp_path):
    originals = fill(mailhost, count=3)
    t = TLSHost(mailhost, tmp_path)
    p = poplib.POP3_SSL("127.0.0.1", t.tls_port, context=t.context(), timeout=20)
    p.user("alice")
    p.pass_(USERS["alice"])
    _, lines, _ = p.retr(3)
    assert b"\r\n".join(lines) + b"\r\n" == maildata.as_crlf(originals[2])
    p.quit()
    p = poplib.POP3("127.0.0.1", t.server.port, timeout=20)
    assert "STLS" in p.capa()
    p.stls(context=t.context())
    caps = p.capa()
    assert "STLS" not in caps
    assert "USER" in caps
    p.user("alice")
    p.pass_(USERS["alice"])
    assert p.stat()[0] == 3
    p.quit()


def _mpop(tmp_path, t, name, settings, password, user="alice"):
    mbox_path = tmp_path / f"{name}.mbox"
    rc = tmp_path / f"{name}.rc"
    rc.write_text(
        "account test\n"
        f"host 127.0.0.1\nuser {user}\npassword {password}\n"
        + settings +
        f"tls_trust_file {t.cert}\nkeep on\nuidls_file {tmp_path / (name + '.uidls')}\n"
        f"delivery mbox {mbox_path}\n")
    rc.chmod(0o600)
    r = subprocess.run(["mpop", "-C", str(rc), "-q", "test"], capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr, t.server.output())
    return [m for m in mailbox.mbox(str(mbox_path))]


@pytest.mark.parametrize("auth", ["scram-sha-256", "plain", "login", "cram-md5", "user"])
def test_mpop_implicit_tls_each_mechanism(mailhost, tmp_path, auth):
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    fill(mailhost, count=2)
    t = TLSHost(mailhost, tmp_path)
    got = _mpop(tmp_path, t, auth, f"port {t.tls_port}\ntls on\ntls_starttls off\nauth {auth}\n",
                USERS["alice"])
    assert len(got) == 2
    assert auth == "user" or f"AUTH {auth.upper()}" not in t.server.output()  # no plaintext trace


def test_mpop_starttls_scram(mailhost, tmp_path):
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    fill(mailhost, count=2)
    t = TLSHost(mailhost, tmp_path)
    got = _mpop(tmp_path, t, "stls", f"port {t.server.port}\ntls on\ntls_starttls on\nauth scram-sha-256\n",
                USERS["alice"])
    assert len(got) == 2


def test_mpop_wrong_password_over_tls_fails(mailhost, tmp_path):
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    t = TLSHost(mailhost, tmp_path)
    rc = tmp_path / "bad.rc"
    rc.write_text(f"account test\nhost 127.0.0.1\nport {t.tls_port}\nuser alice\npassword nope\n"
                  f"tls on\ntls_starttls off\ntls_trust_file {t.cert}\nauth scram-sha-256\n"
                  f"delivery mbox {tmp_path / 'bad.mbox'}\n")
    rc.chmod(0o600)
    r = subprocess.run(["mpop", "-C", str(rc), "-q", "test"], capture_output=True, timeout=60)
    assert r.returncode != 0


def test_stls_injection_is_discarded(mailhost, tmp_path):
    """CVE-2011-0411 class: CAPA pipelined after STLS in plaintext must never be answered."""
    t = TLSHost(mailhost, tmp_path)
    raw = Raw("127.0.0.1", t.server.port)
    assert raw.line().startswith(b"+OK")
    raw.send(b"STLS\r\nCAPA\r\n")
    assert raw.line().startswith(b"+OK")
    assert raw.buf == b""
    tls = t.context().wrap_socket(raw.sock, server_hostname="localhost")
    tls.settimeout(1.0)
    data = b""
    try:
        data = tls.recv(4096)
    except (socket.timeout, TimeoutError):
        pass
    assert data == b""  # nothing was answered: the injected CAPA was dropped
    tls.settimeout(20)
    tls.sendall(b"CAPA\r\n")
    assert tls.recv(4096).startswith(b"+OK")
    tls.close()


def test_stalled_handshakes_do_not_delay_others_and_time_out(mailhost, tmp_path):
    t = TLSHost(mailhost, tmp_path, env={"POP3D_TLS_HANDSHAKE_TIMEOUT": "2"})
    silent = socket.create_connection(("127.0.0.1", t.tls_port), timeout=20)
    half = socket.create_connection(("127.0.0.1", t.tls_port), timeout=20)
    # Half a ClientHello record: the TLS record header promises 512 bytes, 5 follow.
    half.sendall(b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03")
    started = time.monotonic()
    p = poplib.POP3_SSL("127.0.0.1", t.tls_port, context=t.context(), timeout=20)
    p.user("alice")
    p.pass_(USERS["alice"])
    p.stat()
    p.quit()
    assert time.monotonic() - started < 1.5  # not queued behind the stalled handshakes
    for s in (silent, half):
        deadline = time.monotonic() + 10
        s.settimeout(0.2)
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                closed = s.recv(4096) == b""
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
        assert closed, "stalled handshake was not closed by tls_handshake_timeout"
        s.close()
    assert "TLS handshake timeout" in t.server.output()


def test_plaintext_on_tls_port_fails_with_reason(mailhost, tmp_path):
    t = TLSHost(mailhost, tmp_path, extra=("--log-level", "debug"))
    raw = socket.create_connection(("127.0.0.1", t.tls_port), timeout=20)
    raw.sendall(b"USER alice\r\n")
    raw.settimeout(10)
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass
    raw.close()
    wait_for(lambda: "reason=\"TLS handshake" in t.server.output(), timeout=10,
             what="handshake failure logged with reason")


def _peer_cn(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        with ctx.wrap_socket(s) as tls:
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
            return subject["commonName"]


def test_sighup_reloads_certificates_for_new_connections_only(mailhost, tmp_path):
    fill(mailhost, count=1)
    t = TLSHost(mailhost, tmp_path)
    old_cert = open(t.cert).read()
    cert2, key2 = make_cert(tmp_path, "pop3d-test-two", "two")
    both = tmp_path / "both.pem"
    both.write_text(old_cert + open(cert2).read())
    assert _peer_cn(t.tls_port, str(both)) == "pop3d-test-one"
    old = poplib.POP3_SSL("127.0.0.1", t.tls_port, context=t.context(), timeout=20)
    old.user("alice")
    old.pass_(USERS["alice"])
    shutil.copy(cert2, t.cert)
    shutil.copy(key2, t.key)
    os.kill(t.server.pid, signal.SIGHUP)
    wait_for(lambda: "TLS certificates reloaded" in t.server.output(), what="reload")
    assert _peer_cn(t.tls_port, str(both)) == "pop3d-test-two"
    assert old.stat()[0] == 1  # the open session keeps its session and certificate
    # A broken new certificate keeps the current one.
    with open(t.cert, "w") as f:
        f.write("not a certificate\n")
    os.kill(t.server.pid, signal.SIGHUP)
    wait_for(lambda: "TLS certificate reload failed" in t.server.output(), what="failed reload")
    assert _peer_cn(t.tls_port, str(both)) == "pop3d-test-two"
    assert old.stat()[0] == 1
    old.quit()


def test_plaintext_refused_on_unsecured_address_until_stls(mailhost, tmp_path):
    """Server on 127.0.0.2, client from 127.0.0.1: neither same address nor trusted."""
    t = TLSHost(mailhost, tmp_path, host="127.0.0.2")
    raw = Raw("127.0.0.2", t.server.port, source="127.0.0.1")
    assert raw.line().startswith(b"+OK")
    assert raw.cmd("USER alice").startswith(b"-ERR [AUTH]")
    assert raw.cmd("AUTH PLAIN " + "AGFsaWNlAHNlY3JldC1hbGljZQ==").startswith(b"-ERR [AUTH]")
    assert raw.cmd("CAPA").startswith(b"+OK")
    caps = raw.multiline()
    assert b"USER" not in caps and b"STLS" in caps
    sasl = [c for c in caps if c.startswith(b"SASL")]
    assert sasl and b"PLAIN" not in sasl[0] and b"LOGIN" not in sasl[0].split()
    assert b"SCRAM-SHA-256" in sasl[0]
    assert raw.cmd("STLS").startswith(b"+OK")
    tls = _wrap_noverify_host(t.context(), raw.sock)
    f = tls.makefile("rwb")
    f.write(b"CAPA\r\n")
    f.flush()
    assert f.readline().startswith(b"+OK")
    caps = []
    while (line := f.readline().rstrip(b"\r\n")) != b".":
        caps.append(line)
    assert b"USER" in caps and b"STLS" not in caps
    sasl = [c for c in caps if c.startswith(b"SASL")][0].split()
    assert b"PLAIN" in sasl and b"LOGIN" in sasl
    f.write(b"AUTH PLAIN AGFsaWNlAHNlY3JldC1hbGljZQ==\r\n")
    f.flush()
    assert f.readline().startswith(b"+OK")
    f.write(b"QUIT\r\n")
    f.flush()
    assert f.readline().startswith(b"+OK")
    tls.close()


def _wrap_noverify_host(ctx, sock):
    # The test certificate names 127.0.0.1 only; the chain is still verified.
    ctx.check_hostname = False
    return ctx.wrap_socket(sock)
