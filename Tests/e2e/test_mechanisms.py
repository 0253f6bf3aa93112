"""Issue 10 item 5: the server advertises only what can work (`auth_mechanisms`, Dovecot's
setting; default `plain login`). A user whose secret is hashed the way `pop3d hash-password`
hashes by default ({SHA512-CRYPT}) logs in on the FIRST try with real clients at their default
authentication settings: each test counts the server's failed logins and wants none."""
import mailbox
import os
import poplib
import re
import shutil
import signal
import subprocess

import pytest

import maildata
from conftest import USERS
from fetchmailsupport import run_fetchmail
from pop3support import Server, binary, free_port, port_open, wait_for
from rawpop import Raw

DAVE_PASSWORD = "dave-hashed-pw"


def hashed(password, scheme=None):
    args = [binary(), "hash-password"] + (["--scheme", scheme] if scheme else [])
    out = subprocess.run(args, input=password + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def add_hashed_user(mailhost, name="dave", password=DAVE_PASSWORD):
    secret = hashed(password)  # the default scheme
    assert secret.startswith("{SHA512-CRYPT}$6$"), secret
    with open(mailhost.passwd, "a") as f:
        f.write(f"{name}:{secret}:1000:1000::::\n")
    for i in range(2):
        mailhost.deliver(name, maildata.message(i + 1), seconds=1_700_000_000 + i)


def failed_logins(server):
    """The server's "login failed" lines (one per failed credential check, every mechanism)."""
    return [l for l in server.output().splitlines() if "login failed" in l]


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=pop3d-mech",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def dave(mailhost):
    add_hashed_user(mailhost)
    return mailhost


# MARK: - real clients at their default authentication settings

def run_mpop(tmp_path, port, settings, password=DAVE_PASSWORD):
    """mpop with its default `auth on` (no auth line): it picks the best method offered."""
    mbox_path = tmp_path / "dave.mbox"
    rc = tmp_path / "mpoprc"
    rc.write_text(
        "account test\n"
        f"host 127.0.0.1\nport {port}\nuser dave\npassword {password}\n" + settings +
        f"keep on\nuidls_file {tmp_path / 'uidls'}\ndelivery mbox {mbox_path}\n")
    rc.chmod(0o600)
    r = subprocess.run(["mpop", "-C", str(rc), "-q", "test"], capture_output=True, timeout=60)
    return r, mbox_path


def test_mpop_default_auth_hashed_user_with_starttls(dave, tmp_path):
    """mpop with `tls on` (STLS, its default once TLS is on) and its default authentication
    logs in on the first try."""
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    cert, key = make_cert(str(tmp_path))
    server = dave.serve("--tls-cert", cert, "--tls-key", key)
    r, mbox_path = run_mpop(tmp_path, server.port, f"tls on\ntls_trust_file {cert}\n")
    assert r.returncode == 0, (r.stdout, r.stderr, server.output())
    assert len(mailbox.mbox(str(mbox_path))) == 2
    assert failed_logins(server) == [], server.output()


def test_mpop_default_auth_without_tls_sends_no_doomed_credentials(dave, tmp_path):
    """mpop's defaults (`tls off`, `auth on`) never send a password in clear, so it picks the
    strongest non-plaintext SASL mechanism offered. The old server offered SCRAM-SHA-256 and
    CRAM-MD5, which a SHA512-CRYPT secret cannot answer: mpop stopped at "authentication failed
    (method SCRAM-SHA-256)", a failed login counted against the user and the address. Now
    nothing that cannot work is offered: mpop says so before sending any credential, and the
    server counts no failure. (No mechanism can work here: a hashed secret needs the password,
    which mpop sends only under TLS; the test above is the working setup.)"""
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    server = dave.serve()
    r, _ = run_mpop(tmp_path, server.port, "tls off\n")
    assert r.returncode != 0
    assert b"cannot use a secure authentication method" in r.stderr, (r.stderr, server.output())
    assert failed_logins(server) == [], server.output()


def test_fetchmail_default_auth_hashed_user(dave, tmp_path):
    """fetchmail's default `auth any` tries CRAM-MD5 when offered, then APOP when the greeting
    has a timestamp, before USER/PASS: each failure counted against max_auth_failures."""
    server = dave.serve()
    r, out = run_fetchmail(server, "dave", DAVE_PASSWORD, tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr, server.output())
    assert len(os.listdir(out)) == 2
    assert b"authentication failed" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    assert failed_logins(server) == [], server.output()


def test_curl_default_auth_hashed_user(dave):
    """curl picks the strongest SASL mechanism offered (CRAM-MD5 before PLAIN and LOGIN) and,
    without SASL, APOP when the greeting has a timestamp; it does not fall back."""
    server = dave.serve()
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-u", f"dave:{DAVE_PASSWORD}",
                        f"pop3://{server.host}:{server.port}/"], capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stderr, server.output())
    assert len([l for l in r.stdout.split(b"\r\n") if l]) == 2
    assert failed_logins(server) == [], server.output()


def test_poplib_taking_the_offer_hashed_user(dave):
    """A poplib client that takes what the greeting offers: APOP when it carries a timestamp
    (RFC 1939 §7 says the timestamp is the offer; poplib's `timestamp` pattern finds it), else
    USER/PASS. The old greeting always carried one, so this client could never log in."""
    server = dave.serve()
    p = poplib.POP3(server.host, server.port, timeout=20)
    if p.timestamp.search(p.getwelcome()):
        p.apop("dave", DAVE_PASSWORD)
    else:
        p.user("dave")
        p.pass_(DAVE_PASSWORD)
    assert p.stat()[0] == 2
    p.quit()
    assert failed_logins(server) == [], server.output()


# MARK: - what is offered

def test_default_offers_only_plain_and_login(mailhost):
    server = mailhost.serve()
    r = Raw(server.host, server.port)
    greeting = r.line()
    assert greeting.startswith(b"+OK") and b"<" not in greeting, greeting
    assert r.cmd("CAPA").startswith(b"+OK")
    sasl = [c for c in r.multiline() if c.startswith(b"SASL")]
    assert sasl == [b"SASL PLAIN LOGIN"], sasl
    assert r.cmd("AUTH") == b"+OK"
    assert r.multiline() == [b"PLAIN", b"LOGIN"]
    assert r.cmd("AUTH CRAM-MD5").startswith(b"-ERR")
    assert r.cmd("AUTH SCRAM-SHA-256").startswith(b"-ERR")
    # APOP is refused before any credential check: no failed login, the session goes on.
    assert r.cmd(f"APOP alice {'0' * 32}").startswith(b"-ERR APOP is not enabled")
    r.cmd("USER alice")
    assert r.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")
    assert r.cmd("QUIT").startswith(b"+OK")


def test_enabled_mechanisms_are_offered_in_configured_order(mailhost, tmp_path):
    config = tmp_path / "pop3d.yaml"
    config.write_text("auth_mechanisms: [scram-sha-256, plain, apop]\n")
    server = mailhost.serve("--config", str(config))
    r = Raw(server.host, server.port)
    greeting = r.line()
    assert re.match(rb"^\+OK .*<\d+\.\d+\.\d+@[^>]+>$", greeting), greeting
    assert r.cmd("CAPA").startswith(b"+OK")
    assert [c for c in r.multiline() if c.startswith(b"SASL")] == [b"SASL SCRAM-SHA-256 PLAIN"]
    assert r.cmd("AUTH LOGIN").startswith(b"-ERR unsupported")
    assert r.cmd("QUIT").startswith(b"+OK")


def test_unknown_mechanism_is_a_start_up_error(mailhost):
    server = mailhost.serve(env={"POP3D_AUTH_MECHANISMS": "plain digest-md5"}, wait=False)
    wait_for(lambda: server.proc.poll() is not None, what="pop3d to refuse the setting")
    assert server.proc.returncode != 0
    assert "auth_mechanisms: 'digest-md5' is not one of" in server.output(), server.output()


# MARK: - the warning at start-up and on reload

WARNING = "cram-md5 is enabled but {n} users have SHA512-CRYPT secrets it cannot use"


def test_warns_at_start_and_on_reload_when_a_mechanism_cannot_work(dave):
    server = dave.serve(env={"POP3D_AUTH_MECHANISMS": "plain login cram-md5"})
    wait_for(lambda: "cram-md5 is enabled but 1 user has SHA512-CRYPT secrets it cannot use"
             in server.output(), what="the start-up warning")
    assert "plain is enabled but" not in server.output()
    for name in ("erin", "frank"):
        add_hashed_user(dave, name, "pw-" + name)
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: WARNING.format(n=3) in server.output(), what="the reload warning")


def test_no_warning_with_the_default_mechanisms(dave):
    server = dave.serve()
    wait_for(lambda: "passwd-file loaded" in server.output(), what="the passwd-file to load")
    r = Raw(server.host, server.port)
    assert r.line().startswith(b"+OK")
    assert r.cmd("QUIT").startswith(b"+OK")
    assert "auth_mechanisms:" not in server.output(), server.output()
