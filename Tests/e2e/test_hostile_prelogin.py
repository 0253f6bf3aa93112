"""Hostile clients before login (issue 9, findings 5, 7 and 8; issue 10 item 4), against the
built pop3d:

- log injection: a user name with CR LF, NEL, U+2028, ESC... sent through USER, AUTH PLAIN,
  LOGIN, CRAM-MD5 and SCRAM-SHA-256 never starts a log line of its own;
- pre-login slots: `login_timeout` closes a connection that keeps talking without logging in,
  and a full `max_unauthenticated` evicts the oldest pre-login connection instead of refusing
  the new one;
- canonically equivalent user names (KELVIN SIGN "Kim", decomposed "café") are other users;
- `trusted_networks` are exempt from `max_connections_per_ip`.
"""
import base64
import os
import re
import time

import maildata
from conftest import ALL_MECHANISMS, USERS
from pop3support import wait_for
from rawpop import Raw

B64 = lambda b: base64.b64encode(b).decode()

# Every line pop3d writes starts with a timestamp, or with <N> under journald.
LINE_START = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z |<\d>)")

# A forged line as an attacker would send it: after the break, text that a log reader (or
# fail2ban) would take for a line of its own.
FORGED = "FORGED login ok user=root client=203.0.113.9"
BREAKS = {
    "crlf": "\r\n",
    "lf": "\n",
    "cr": "\r",
    "nel": "\u0085",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "vt": "\x0b",
    "ff": "\x0c",
    "esc": "\x1b[2K\r",
}


def connect(server):
    raw = Raw(server.host, server.port)
    greeting = raw.line()
    assert greeting.startswith(b"+OK"), greeting
    return raw


def serve_settled(mailhost, *args, **kw):
    """A server whose start-up probe connection (pop3support waits for the port with one) has
    ended, so that it holds no slot a limit test counts."""
    server = mailhost.serve(*args, **kw)
    wait_for(lambda: "session end" in server.output(), timeout=20, what="the probe's session end")
    return server


def log_lines(server):
    """The log split the way any reader could split it: str.splitlines() breaks at LF, CR,
    CR LF, VT, FF, FS, GS, RS, NEL, U+2028 and U+2029."""
    with open(server.log_path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    return text.splitlines()


def assert_no_forged_line(server, expect_in_log):
    lines = log_lines(server)
    bad = [line for line in lines if not LINE_START.match(line)]
    assert not bad, "lines that do not start with a timestamp:\n" + "\n".join(map(repr, bad))
    raw = open(server.log_path, "rb").read()
    assert b"\x1b" not in raw and b"\x0b" not in raw and b"\x0c" not in raw, raw[-2000:]
    # The name did reach the log (escaped): the test is not passing for want of a log line.
    assert expect_in_log in raw, raw[-2000:]


def serve_without_penalties(mailhost):
    # Trusted: no failed-login delay (0, 2, 4, 8, 15 s...) between the attempts below.
    return mailhost.serve("--trusted-network", "127.0.0.0/8", env=ALL_MECHANISMS)


def hostile_name(kind):
    return "x" + BREAKS[kind] + FORGED


def wait_for_login_failures(server, count):
    wait_for(lambda: server.output().count("login failed") >= count, timeout=30,
             what=f"{count} 'login failed' lines")


# MARK: finding 5, log injection


def test_user_pass_names_with_line_breaks_are_escaped(mailhost):
    server = serve_without_penalties(mailhost)
    # The command parser already refuses C0 controls in a command line (LF ends it)...
    for kind in ("cr", "vt", "ff", "esc"):
        raw = connect(server)
        name = hostile_name(kind).replace(" ", "_")
        assert raw.cmd(b"USER " + name.encode()).startswith(b"-ERR"), kind
        raw.cmd("QUIT")
    # ...but not the Unicode line breaks, which are valid UTF-8 in a user name.
    unicode_breaks = ("nel", "line-separator", "paragraph-separator")
    for kind in unicode_breaks:
        raw = connect(server)
        name = hostile_name(kind).replace(" ", "_")
        assert raw.cmd(b"USER " + name.encode()).startswith(b"+OK"), kind
        assert raw.cmd("PASS wrong").startswith(b"-ERR [AUTH]")
        raw.cmd("QUIT")
    wait_for_login_failures(server, len(unicode_breaks))
    assert_no_forged_line(server, b"x\\u0085FORGED_login_ok_user=root")


def assert_every_break_escaped(mailhost, fail_login):
    """Sends the hostile name of every kind in BREAKS through `fail_login(raw, name)`, a
    mechanism's exchange that must end in a failed login, each on its own connection; then no
    line of the log is forged and the escaped name is there."""
    server = serve_without_penalties(mailhost)
    for kind in BREAKS:
        raw = connect(server)
        fail_login(raw, hostile_name(kind))
        raw.cmd("QUIT")
    wait_for_login_failures(server, len(BREAKS))
    assert_no_forged_line(server, b"x\\r\\nFORGED login ok user=root")


def test_auth_plain_name_with_crlf_is_escaped(mailhost):
    def fail_login(raw, name):
        message = b"\0" + name.encode() + b"\0wrong"
        assert raw.cmd("AUTH PLAIN " + B64(message)).startswith(b"-ERR [AUTH]")
    assert_every_break_escaped(mailhost, fail_login)


def test_auth_login_name_with_crlf_is_escaped(mailhost):
    def fail_login(raw, name):
        assert raw.cmd("AUTH LOGIN").startswith(b"+ ")
        assert raw.cmd(B64(name.encode())).startswith(b"+ ")
        assert raw.cmd(B64(b"wrong")).startswith(b"-ERR [AUTH]")
    assert_every_break_escaped(mailhost, fail_login)


def test_cram_md5_name_with_crlf_is_escaped(mailhost):
    def fail_login(raw, name):
        assert raw.cmd("AUTH CRAM-MD5").startswith(b"+ ")
        response = name.encode() + b" " + b"0" * 32
        assert raw.cmd(B64(response)).startswith(b"-ERR [AUTH]")
    assert_every_break_escaped(mailhost, fail_login)


def scram_saslname(name):
    return name.replace("=", "=3D").replace(",", "=2C")


def test_scram_sha_256_name_with_crlf_is_escaped(mailhost):
    def fail_login(raw, name):
        nonce = B64(os.urandom(18))
        bare = f"n={scram_saslname(name)},r={nonce}"
        r = raw.cmd("AUTH SCRAM-SHA-256 " + B64(("n,," + bare).encode()))
        assert r.startswith(b"+ "), r  # unknown users get a decoy exchange
        fields = dict(f.split("=", 1) for f in base64.b64decode(r[2:]).decode().split(","))
        final = f"c=biws,r={fields['r']},p={B64(os.urandom(32))}"
        assert raw.cmd(B64(final.encode())).startswith(b"-ERR [AUTH]")
    assert_every_break_escaped(mailhost, fail_login)


# MARK: finding 7, pre-login slots


def test_full_prelogin_table_evicts_the_oldest_and_a_real_user_logs_in(mailhost):
    mailhost.deliver("alice", maildata.message(1))
    server = serve_settled(mailhost, env={"POP3D_MAX_UNAUTHENTICATED": "5"})
    idle = [connect(server) for _ in range(5)]
    # The table is full: the sixth connection is a real user, and gets in.
    user = connect(server)
    assert user.cmd("USER alice").startswith(b"+OK")
    assert user.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")
    assert user.cmd("STAT").startswith(b"+OK 1 ")
    # The oldest idle connection was told why and closed; the others are still served.
    assert idle[0].closed(timeout=20), "the oldest pre-login connection was not closed"
    assert idle[0].buf.startswith(b"-ERR [SYS/TEMP]"), idle[0].buf
    for raw in idle[1:]:
        assert raw.cmd("CAPA").startswith(b"+OK")
        raw.multiline()
    # The user left the table when it logged in (4 remain): one newcomer fills it, the
    # next evicts the oldest left, the second idle connection, and no later one.
    newcomers = [connect(server) for _ in range(2)]
    assert idle[1].closed(timeout=20)
    assert idle[1].buf.startswith(b"-ERR [SYS/TEMP]"), idle[1].buf
    for raw in idle[2:] + newcomers:
        assert raw.cmd("CAPA").startswith(b"+OK")
        raw.multiline()
    wait_for(lambda: server.output().count("pre-login connection evicted") >= 2, timeout=20,
             what="two eviction notices")
    assert " notice pre-login connection evicted" in server.output()
    user.cmd("QUIT")


def test_login_timeout_closes_a_chatty_connection_that_never_logs_in(mailhost):
    server = mailhost.serve(env={"POP3D_LOGIN_TIMEOUT": "2"})
    raw = connect(server)
    started = time.monotonic()
    closed_at = None
    # CAPA resets the idle timer every time; the login deadline must close it anyway.
    while time.monotonic() - started < 30:
        try:
            raw.send(b"CAPA\r\n")
            line = raw.line()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            closed_at = time.monotonic()
            break
        if line.startswith(b"-ERR"):
            assert b"login timeout" in line, line
            assert raw.closed(timeout=20)
            closed_at = time.monotonic()
            break
        assert line.startswith(b"+OK"), line
        raw.multiline()
        time.sleep(0.2)  # a client that keeps talking, slowly
    assert closed_at is not None, "the connection outlived login_timeout by 28 s"
    assert closed_at - started >= 1.5, "closed before login_timeout"
    wait_for(lambda: "reason=\"login timeout\"" in server.output(), timeout=20, what="the session end line")


def test_login_timeout_does_not_touch_a_logged_in_session(mailhost):
    server = mailhost.serve(env={"POP3D_LOGIN_TIMEOUT": "2"})
    raw = connect(server)
    assert raw.cmd("USER bob").startswith(b"+OK")
    assert raw.cmd(f"PASS {USERS['bob']}").startswith(b"+OK")
    started = time.monotonic()
    # Well past the deadline (the connection started before `started`), a bounded loop.
    while time.monotonic() - started < 5:
        assert raw.cmd("NOOP") == b"+OK"
        time.sleep(0.2)
    assert raw.cmd("QUIT").startswith(b"+OK")
    assert "login timeout" not in server.output()


# MARK: issue 10 item 4, trusted networks and max_connections_per_ip


def test_trusted_networks_are_exempt_from_max_connections_per_ip(mailhost):
    limited = serve_settled(mailhost, env={"POP3D_MAX_CONNECTIONS_PER_IP": "2"})
    held = [connect(limited) for _ in range(2)]
    third = Raw(limited.host, limited.port)
    assert third.line().startswith(b"-ERR [SYS/TEMP]")
    trusted = serve_settled(mailhost, "--trusted-network", "127.0.0.0/8",
                            env={"POP3D_MAX_CONNECTIONS_PER_IP": "2"})
    many = [connect(trusted) for _ in range(4)]
    assert many[-1].cmd("USER carol").startswith(b"+OK")
    assert many[-1].cmd(f"PASS {USERS['carol']}").startswith(b"+OK")
    for raw in held + many:
        raw.close()


# MARK: finding 8, user names compared as bytes


def write_passwd_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def test_kelvin_sign_kim_is_not_kim(mailhost, tmp_path):
    kelvin = "\u212aim"  # KELVIN SIGN + "im", canonically equivalent to "Kim"
    passwd = write_passwd_lines(tmp_path / "passwd-kim", [
        f"{kelvin}:{{PLAIN}}attacker-pw::::::",  # listed first, as in the finding
        "Kim:{PLAIN}kims-pw::::::",
    ])
    mailhost.deliver("Kim", maildata.message(1))
    server = mailhost.serve("--passwd-file", passwd)
    # The attacker's password does not open Kim's maildrop.
    raw = connect(server)
    assert raw.cmd("USER Kim").startswith(b"+OK")
    assert raw.cmd("PASS attacker-pw").startswith(b"-ERR [AUTH]")
    raw.cmd("QUIT")
    # Kim logs in with her own password and sees her mail.
    raw = connect(server)
    assert raw.cmd("USER Kim").startswith(b"+OK")
    assert raw.cmd("PASS kims-pw").startswith(b"+OK")
    assert raw.cmd("STAT").startswith(b"+OK 1 ")
    raw.cmd("QUIT")
    # The look-alike user is its own user, with its own (new, empty) Maildir.
    raw = connect(server)
    assert raw.cmd(b"USER " + kelvin.encode()).startswith(b"+OK")
    assert raw.cmd("PASS attacker-pw").startswith(b"+OK")
    assert raw.cmd("STAT").startswith(b"+OK 0 ")
    raw.cmd("QUIT")
    assert sorted(os.listdir(mailhost.mail_root)) == sorted(["Kim", kelvin])


def test_decomposed_cafe_is_not_cafe(mailhost, tmp_path):
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    passwd = write_passwd_lines(tmp_path / "passwd-cafe", [f"{composed}:{{PLAIN}}cafe-pw::::::"])
    server = mailhost.serve("--passwd-file", passwd)
    for login in (lambda r: (r.cmd(b"USER " + decomposed.encode()), r.cmd("PASS cafe-pw"))[1],
                  lambda r: r.cmd("AUTH PLAIN " + B64(b"\0" + decomposed.encode() + b"\0cafe-pw"))):
        raw = connect(server)
        assert login(raw).startswith(b"-ERR [AUTH]")
        raw.cmd("QUIT")
    # No second Maildir was created for the other spelling; the real user still logs in.
    assert not os.path.exists(os.path.join(mailhost.mail_root, decomposed))
    raw = connect(server)
    assert raw.cmd(b"USER " + composed.encode()).startswith(b"+OK")
    assert raw.cmd("PASS cafe-pw").startswith(b"+OK")
    raw.cmd("QUIT")
    assert os.listdir(mailhost.mail_root) == [composed]
