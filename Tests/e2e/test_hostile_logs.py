"""Issue 13 (logs), against the built pop3d: the session-end line's Dovecot fields
(`top=`, `retr=`, `del=`, `size=`, `uidl_change=`: Dovecot's pop3_logout_format, each one
`key=value` token), and the failed-login line: exactly one per failed login, whatever the
mechanism (USER, APOP, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, malformed SASL included), with
the client's address (the PROXY header's behind a balancer), `mechanism=` and the user name as
sent, which a hostile name (CR, LF, `=`, quotes, ` client=1.2.3.4`, NUL, bytes that are not
UTF-8, 300 octets) cannot leave: no second line, no field of its own; the name is recovered
octet for octet from the log, or, beyond 256 octets, cut and marked `user.truncated=N`."""
import base64
import os
import re
import zlib

import maildata
from conftest import ALL_MECHANISMS, USERS
from pop3support import wait_for
from rawpop import Raw

B64 = lambda b: base64.b64encode(b).decode()
LINE_START = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [a-z]+ ")
MAX_LOGGED_NAME = 256  # LoggedOctets.maxOctets


def serve(mailhost, *extra, env=None):
    # Trusted: no failed-login delay between the attempts below; failures are logged the same.
    return mailhost.serve("--trusted-network", "127.0.0.0/8", *extra, env={**ALL_MECHANISMS, **(env or {})})


def connect(server, source=None):
    raw = Raw(server.host, server.port, source=source)
    assert raw.line().startswith(b"+OK")
    return raw


def raw_log(server):
    server.log.flush()
    with open(server.log_path, "rb") as f:
        return f.read()


def log_fields(line):
    """(message, [(key, value)]) of one log line, read the way a logfmt reader does: the
    value is a token or a double-quoted string with backslash escapes (kept escaped)."""
    m = re.match(r"^\S+ [a-z]+ (.*?)((?: [a-z_.]+=(?:\"(?:[^\"\\]|\\.)*\"|[^\s\"]*))*)$", line)
    assert m, line
    fields = re.findall(r" ([a-z_.]+)=(\"(?:[^\"\\]|\\.)*\"|[^\s\"]*)", m.group(2))
    assert "".join(f" {k}={v}" for k, v in fields) == m.group(2), line
    return m.group(1), [(k, v[1:-1] if v.startswith('"') else v) for k, v in fields]


def unescape(value):
    """The octets behind an escaped value (LogEscaping: \\n \\r \\t \\\\ \\" \\xHH \\uHHHH)."""
    out, i, raw = bytearray(), 0, value.encode()
    while i < len(raw):
        if raw[i:i + 1] != b"\\":
            out.append(raw[i]); i += 1
        elif raw[i + 1:i + 2] in (b"n", b"r", b"t"):
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}[raw[i + 1:i + 2]]; i += 2
        elif raw[i + 1:i + 2] == b"x":
            out.append(int(raw[i + 2:i + 4], 16)); i += 4
        elif raw[i + 1:i + 2] == b"u":
            out += chr(int(raw[i + 2:i + 6], 16)).encode(); i += 6
        else:
            out += raw[i + 1:i + 2]; i += 2
    return bytes(out)


def lines_with_message(server, message):
    """The fields of every log line whose message is `message` (not merely containing it:
    a hostile name may quote it in a field of another line)."""
    found = []
    for line in raw_log(server).decode().splitlines():
        text, fields = log_fields(line)
        if text == message:
            found.append(dict(fields) | {"_line": line})
    return found


def failed_logins(server):
    return lines_with_message(server, "login failed")


def session_ends(server):
    return lines_with_message(server, "session end")


def assert_one_clean_line_per_event(server):
    """Every line of the log (split at anything a reader may take for a line end) starts with
    a timestamp and a level, and the log is valid UTF-8 with no control octet but LF."""
    data = raw_log(server)
    data.decode("utf-8")  # strict: invalid octets must have been escaped
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", data), data[-2000:]
    for line in data.decode().splitlines():
        assert LINE_START.match(line.encode()), line


# MARK: the failed-login line


HOSTILE = [
    b"evil\r\n2026-11-29T00:00:00.000Z notice login failed client=6.6.6.6:1 user=x",
    b"lf\nnotice login failed client=6.6.6.6:1",
    b"cr\ronly",
    b"a=b",
    b'double"quote',
    b"single'quote",
    b'x" client=1.2.3.4:5 user="y',
    b"x client=1.2.3.4",
    b"\xff\xfe not utf-8 \xc0\xaf",
    b"\\xff literal backslash",
    b"n" * 300,
]


def test_hostile_names_through_sasl_plain_stay_in_their_field(mailhost):
    server = serve(mailhost)
    for name in HOSTILE:
        raw = connect(server, source="127.0.0.7")
        # As a continuation line: the AUTH line itself keeps RFC 2449's 255 octets.
        assert raw.cmd("AUTH PLAIN").startswith(b"+ ")
        assert raw.cmd(B64(b"\0" + name + b"\0wrong")).startswith(b"-ERR [AUTH]"), name
        raw.cmd("QUIT")
        raw.close()
    wait_for(lambda: len(failed_logins(server)) >= len(HOSTILE), what="a failed-login line per name")
    failures = failed_logins(server)
    assert len(failures) == len(HOSTILE), [f["_line"] for f in failures]
    for name, fields in zip(HOSTILE, failures):
        keys = [k for k in fields if k != "_line"]
        truncated = len(name) > MAX_LOGGED_NAME
        assert keys == ["client", "connection.id", "mechanism", "user"] + (["user.truncated"] if truncated else []), fields
        assert fields["client"].startswith("127.0.0.7:"), fields
        assert fields["mechanism"] == "PLAIN"
        if truncated:
            assert unescape(fields["user"]) == name[:MAX_LOGGED_NAME] and fields["user.truncated"] == str(len(name))
        else:
            assert unescape(fields["user"]) == name, fields
    # No line carries a forged client, and the only failed-login lines are the real ones.
    log = raw_log(server).decode()
    assert not re.search(r"^\S+ \S+ login failed client=(6\.6\.6\.6|1\.2\.3\.4)", log, re.M), log
    assert_one_clean_line_per_event(server)


def test_nul_and_invalid_utf8_through_sasl_login_are_logged_as_octets(mailhost):
    server = serve(mailhost)
    names = [b"a\x00b", b"\x80\xff", b""]
    for name in names:
        raw = connect(server)
        assert raw.cmd("AUTH LOGIN").startswith(b"+ ")
        r = raw.cmd(B64(name) if name else "")
        if r.startswith(b"+ "):  # a UTF-8 name: the password is asked for
            r = raw.cmd(B64(b"wrong"))
        assert r.startswith(b"-ERR [AUTH]"), (name, r)
        raw.cmd("QUIT")
    wait_for(lambda: len(failed_logins(server)) >= len(names), what="three failed-login lines")
    failures = failed_logins(server)
    assert [unescape(f["user"]) for f in failures] == names, failures
    assert [f["mechanism"] for f in failures] == ["LOGIN"] * 3
    assert_one_clean_line_per_event(server)


def scram_fail(raw, name):
    nonce = B64(os.urandom(18))
    r = raw.cmd("AUTH SCRAM-SHA-256 " + B64(b"n,,n=" + name + b",r=" + nonce.encode()))
    assert r.startswith(b"+ "), r  # an unknown user gets a decoy exchange
    fields = dict(f.split("=", 1) for f in base64.b64decode(r[2:]).decode().split(","))
    return raw.cmd(B64(f"c=biws,r={fields['r']},p={B64(os.urandom(32))}".encode()))


def test_every_mechanism_and_every_malformed_response_logs_one_failed_login(mailhost):
    server = serve(mailhost)
    cram_bad = B64(b"alice not-a-digest")
    attempts = [  # (commands, mechanism, user as logged)
        (["USER alice", "PASS wrong"], "USER", b"alice"),
        (["APOP alice " + "0" * 32], "APOP", b"alice"),
        (["AUTH PLAIN " + B64(b"\0bob\0wrong")], "PLAIN", b"bob"),
        (["AUTH LOGIN", B64(b"carol"), B64(b"wrong")], "LOGIN", b"carol"),
        (["AUTH CRAM-MD5", B64(b"alice " + b"0" * 32)], "CRAM-MD5", b"alice"),
        (["AUTH CRAM-MD5", cram_bad], "CRAM-MD5", b"alice"),  # malformed: no 32-digit digest
        (["AUTH PLAIN " + B64(b"alice\0secret-alice")], "PLAIN", b""),  # no leading NUL: no name
        (["AUTH PLAIN " + B64(b"bob\0alice\0wrong")], "PLAIN", b"alice"),  # another identity
        (["AUTH LOGIN " + B64(b"alice"), ""], "LOGIN", b"alice"),  # empty password
        ("scram", "SCRAM-SHA-256", b"nobody"),
    ]
    for commands, _, user in attempts:
        raw = connect(server, source="127.0.0.8")
        if commands == "scram":
            replies = [scram_fail(raw, user)]
        else:
            replies = [raw.cmd(c) for c in commands]
        assert replies[-1].startswith(b"-ERR [AUTH]"), (commands, replies)
        raw.cmd("QUIT")
    wait_for(lambda: len(failed_logins(server)) >= len(attempts), what="a failed-login line per attempt")
    failures = failed_logins(server)
    assert [(f["mechanism"], unescape(f["user"])) for f in failures] == [(m, u) for _, m, u in attempts], \
        [f["_line"] for f in failures]
    assert all(f["client"].startswith("127.0.0.8:") for f in failures)
    # The password of the PLAIN message without its leading NUL was not logged as a name.
    assert b"secret-alice" not in raw_log(server)
    assert_one_clean_line_per_event(server)


def test_a_proxied_malformed_login_names_the_header_address(mailhost):
    server = mailhost.serve("--proxy-network", "127.0.0.1/32", "--trusted-network", "192.0.2.0/24",
                            env={**ALL_MECHANISMS, "POP3D_DISABLE_PLAINTEXT_AUTH": "false"})
    raw = Raw("127.0.0.1", server.port)
    raw.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 41234 110\r\n")
    assert raw.line().startswith(b"+OK")
    assert raw.cmd("AUTH PLAIN " + B64(b"\0\xffname\0wrong")).startswith(b"-ERR [AUTH]")
    raw.cmd("QUIT")
    wait_for(lambda: failed_logins(server), what="the failed-login line")
    [failure] = failed_logins(server)
    assert failure["client"] == "192.0.2.7:41234" and failure["proxy"].startswith("127.0.0.1:"), failure
    assert failure["mechanism"] == "PLAIN" and unescape(failure["user"]) == b"\xffname", failure


# MARK: the session-end line


def test_session_end_carries_dovecot_fields_as_single_tokens(mailhost):
    for i in range(3):
        # Message 2 has lines starting with "." (stuffed on the wire, not counted).
        data = maildata.message(i + 1, body_size=600) + (b".dot\n..two\n" if i == 1 else b"")
        mailhost.deliver("alice", data, seconds=1_700_000_000 + i)
    server = serve(mailhost)
    raw = connect(server)
    assert raw.cmd("USER alice").startswith(b"+OK")
    login = raw.cmd(f"PASS {USERS['alice']}")
    stat = raw.cmd("STAT").split()
    size = int(stat[2])
    assert login == f"+OK maildrop has 3 messages ({size} octets)".encode()
    assert raw.cmd("LIST").startswith(b"+OK")
    sizes = [int(l.split()[1]) for l in raw.multiline()]
    assert raw.cmd("UIDL").startswith(b"+OK")
    uids = [l.split()[1] for l in raw.multiline()]
    top_octets = 0
    for msg, lines in ((2, 3), (3, 0)):
        assert raw.cmd(f"TOP {msg} {lines}").startswith(b"+OK")
        top_octets += sum(len(l) + 2 for l in raw.multiline())  # unstuffed, CRLF, no terminator
    for msg in (1, 2):
        assert raw.cmd(f"RETR {msg}") == f"+OK {sizes[msg - 1]} octets".encode()
        raw.multiline()
    assert raw.cmd("DELE 2").startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")
    alice_ends = lambda: [e for e in session_ends(server) if e.get("user") == "alice"]
    wait_for(alice_ends, what="alice's session end line")
    end = alice_ends()[-1]
    crc = 0
    for uid in uids:
        crc ^= zlib.crc32(uid)
    assert end["top"] == f"2/{top_octets}", end
    assert end["retr"] == f"2/{sizes[0] + sizes[1]}", end
    assert end["del"] == f"1/{sizes[1]}", end
    assert end["size"] == str(size), end
    assert end["uidl_change"] == f"3/{crc:08x}", end
    # A session that never logged in: nothing counted, no maildrop figures.
    raw = connect(server)
    assert raw.cmd("USER alice").startswith(b"+OK") and raw.cmd("PASS wrong").startswith(b"-ERR")
    raw.cmd("QUIT")
    wait_for(lambda: len(alice_ends()) == 2, what="the failed session's end")
    failed = alice_ends()[-1]
    assert (failed["top"], failed["retr"], failed["del"], failed["size"], failed["uidl_change"]) == \
        ("0/0", "0/0", "0/0", "-", "-"), failed
    # Each Dovecot field is one token: no space, comma or quote in any of them.
    for line in raw_log(server).decode().splitlines():
        if log_fields(line)[0] == "session end":
            for key in ("top", "retr", "del", "size", "uidl_change"):
                assert re.search(rf" {key}=(\d+/\d+|\d+|-|\d+/[0-9a-f]{{8}})( |$)", line), (key, line)


def test_a_second_session_sees_the_uidl_change_the_first_made(mailhost):
    for i in range(2):
        mailhost.deliver("bob", maildata.message(i + 1), seconds=1_700_000_000 + i)
    server = serve(mailhost)
    for deletes in (True, False):
        raw = connect(server)
        assert raw.cmd("USER bob").startswith(b"+OK") and raw.cmd(f"PASS {USERS['bob']}").startswith(b"+OK")
        if deletes:
            assert raw.cmd("DELE 1").startswith(b"+OK")
        assert raw.cmd("QUIT").startswith(b"+OK")
    wait_for(lambda: len([e for e in session_ends(server) if e.get("user") == "bob"]) == 2, what="two session ends")
    first, second = [e for e in session_ends(server) if e.get("user") == "bob"]
    assert first["uidl_change"].startswith("2/") and second["uidl_change"].startswith("1/")
    assert first["uidl_change"] != second["uidl_change"]
    assert first["del"].startswith("1/") and second["del"] == "0/0"


def test_uidl_change_of_a_maildrop_listed_on_the_storage_workers(mailhost):
    # More than the 256 messages listed on the loop: listed, and hashed, on a storage worker.
    for i in range(300):
        mailhost.deliver("carol", b"Subject: %d\n\nx\n" % i, seconds=1_700_000_000 + i)
    server = serve(mailhost)
    raw = connect(server)
    assert raw.cmd("USER carol").startswith(b"+OK")
    assert raw.cmd(f"PASS {USERS['carol']}").startswith(b"+OK maildrop has 300 messages")
    assert raw.cmd("UIDL").startswith(b"+OK")
    crc = 0
    for line in raw.multiline():
        crc ^= zlib.crc32(line.split()[1])
    assert raw.cmd("QUIT").startswith(b"+OK")
    wait_for(lambda: [e for e in session_ends(server) if e.get("user") == "carol"], what="carol's session end")
    [end] = [e for e in session_ends(server) if e.get("user") == "carol"]
    assert end["uidl_change"] == f"300/{crc:08x}", end


def test_no_log_line_carries_more_than_256_octets_of_a_name(mailhost):
    # A 300-octet name with a 300-octet password: the "password longer than ..." notice and
    # the failed-login line both name the user, both cut.
    server = serve(mailhost, env={"POP3D_LOG_LEVEL": "debug"})
    raw = connect(server)
    assert raw.cmd("AUTH PLAIN").startswith(b"+ ")
    assert raw.cmd(B64(b"\0" + b"n" * 300 + b"\0" + b"p" * 300)).startswith(b"-ERR [AUTH]")
    raw.cmd("QUIT")
    wait_for(lambda: [e for e in session_ends(server) if "user.truncated" in e], what="the session end")
    named = [dict(log_fields(l)[1]) for l in raw_log(server).decode().splitlines() if " user=" in l]
    assert len(named) >= 3, named  # the notice, the failed login, the session end
    for fields in named:
        if fields["user"] != "-":
            assert fields["user"] == "n" * MAX_LOGGED_NAME and fields["user.truncated"] == "300", fields
