"""deploy/fail2ban/filter.d/pop3d.conf against real pop3d log output, with Debian's
fail2ban-regex: every failed login (USER/PASS, APOP, AUTH PLAIN, AUTH LOGIN, CRAM-MD5, malformed
SASL responses) matches with the client's address (behind a balancer, the PROXY header's), no
success and no other line does, and hostile user names (a `client=` of their own, CR LF and a
forged line, bytes that are not UTF-8, NUL, 300 octets) cannot make the filter ban someone
else."""
import base64
import collections
import re
import os
import shutil
import subprocess

from conftest import ALL_MECHANISMS, USERS
from rawpop import Raw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER = os.path.join(ROOT, "deploy", "fail2ban", "filter.d", "pop3d.conf")


def fail2ban_regex(log_path, *options):
    binary = shutil.which("fail2ban-regex")
    assert binary, "fail2ban-regex missing: `make test` installs Debian's fail2ban"
    out = subprocess.run([binary, *options, log_path, FILTER], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_fail2ban_filter_matches_every_failed_login_and_nothing_else(mailhost, tmp_path):
    # Trusted: no penalty delays, so the test is quick; failures are logged all the same.
    server = mailhost.serve("--trusted-network", "127.0.0.0/8", "--trusted-network", "192.0.2.0/24",
                            "--proxy-network", "127.0.0.1/32", env=ALL_MECHANISMS)
    expected = collections.Counter()

    def session(source, lines):
        raw = Raw(server.host, server.port, source=source)
        raw.line()
        replies = [raw.cmd(line) for line in lines]
        raw.close()
        return replies

    # USER/PASS: three failures in one session (max_auth_failures closes it after them).
    replies = session("127.0.0.2", ["USER alice", "PASS wrong1", "USER alice", "PASS wrong2",
                                    "USER nobody", "PASS wrong3"])
    assert all(r.startswith(b"-ERR [AUTH]") for r in replies[1::2]), replies
    expected["127.0.0.2"] += 3
    # APOP with a wrong digest, twice.
    replies = session("127.0.0.3", ["APOP alice " + "0" * 32, "APOP bob " + "f" * 32])
    assert all(r.startswith(b"-ERR") for r in replies), replies
    expected["127.0.0.3"] += 2
    # SASL PLAIN and LOGIN.
    plain = base64.b64encode(b"\0alice\0nope").decode()
    replies = session("127.0.0.4", ["AUTH PLAIN " + plain, "AUTH LOGIN",
                                    base64.b64encode(b"bob").decode(), base64.b64encode(b"nope").decode()])
    assert replies[0].startswith(b"-ERR") and replies[-1].startswith(b"-ERR"), replies
    expected["127.0.0.4"] += 2
    # A hostile user name that carries a `client=` of its own, quotes and `=`; and a long one.
    hostile = 'x"client=6.6.6.6:1=\'y'
    replies = session("127.0.0.5", [f"USER {hostile}", "PASS z", "USER " + "n" * 240, "PASS z"])
    assert replies[1].startswith(b"-ERR [AUTH]") and replies[3].startswith(b"-ERR [AUTH]"), replies
    expected["127.0.0.5"] += 2
    # Hostile names only SASL can carry (any octets): a forged line after CR LF, a forged field
    # after a space, bytes that are not UTF-8, NUL, 300 octets. Each is one failure of 127.0.0.7.
    for name in (b"x\r\n2026-11-29T00:00:00.000Z notice login failed client=6.6.6.6:1 user=y",
                 b"x\nnotice login failed client=6.6.6.6:1 ", b"y client=1.2.3.4:5 z=\"'",
                 b"\xff\xfe\xc0\xaf", b"n" * 300):
        replies = session("127.0.0.7", ["AUTH PLAIN", base64.b64encode(b"\0" + name + b"\0nope").decode()])
        assert replies[-1].startswith(b"-ERR [AUTH]"), (name, replies)
        expected["127.0.0.7"] += 1
    replies = session("127.0.0.7", ["AUTH LOGIN", base64.b64encode(b"a\0b\r\nclient=6.6.6.6:1").decode(),
                                    base64.b64encode(b"nope").decode()])
    assert replies[-1].startswith(b"-ERR [AUTH]"), replies
    expected["127.0.0.7"] += 1
    # Malformed SASL is a failed login too (it used to go unlogged): PLAIN whose name is not
    # UTF-8 without the RFC 4616 framing, LOGIN with an empty password, CRAM-MD5 without a
    # digest; and a wrong CRAM-MD5 digest.
    replies = session("127.0.0.8", ["AUTH PLAIN " + base64.b64encode(b"\xffonly-one\0nul").decode(),
                                    "AUTH LOGIN " + base64.b64encode(b"alice").decode(), "",
                                    "AUTH CRAM-MD5", base64.b64encode(b"alice").decode()])
    assert [r[:11] for r in (replies[0], replies[2], replies[4])] == [b"-ERR [AUTH]"] * 3, replies
    expected["127.0.0.8"] += 3
    replies = session("127.0.0.8", ["AUTH CRAM-MD5", base64.b64encode(b"bob " + b"0" * 32).decode()])
    assert replies[-1].startswith(b"-ERR [AUTH]"), replies
    expected["127.0.0.8"] += 1
    # Behind a balancer (127.0.0.1 is in proxy_networks): the PROXY header's address is banned,
    # never the balancer's.
    raw = Raw(server.host, server.port, source="127.0.0.1")
    raw.send(b"PROXY TCP4 192.0.2.9 198.51.100.1 41234 110\r\n")
    assert raw.line().startswith(b"+OK")
    assert raw.cmd("USER alice").startswith(b"+OK") and raw.cmd("PASS nope").startswith(b"-ERR [AUTH]")
    assert raw.cmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0nope").decode()).startswith(b"-ERR [AUTH]")
    raw.close()
    expected["192.0.2.9"] += 2
    # Successes from another address: never matched.
    for user in ("alice", "bob"):
        raw = Raw(server.host, server.port, source="127.0.0.6")
        assert raw.login(user, USERS[user]).startswith(b"+OK")  # reads the greeting itself
        assert raw.cmd("QUIT").startswith(b"+OK")
        raw.close()

    log_path = tmp_path / "pop3d.log"
    assert server.terminate() == 0  # SIGTERM: every line written; the log stays readable
    log_path.write_text(server.output())
    failed_lines = [l for l in server.output().splitlines() if re.match(r"\S+ notice login failed ", l)]
    assert len(failed_lines) == sum(expected.values()), failed_lines
    assert all(re.search(r" mechanism=(USER|APOP|PLAIN|LOGIN|CRAM-MD5) ", l) for l in failed_lines), failed_lines

    # Every failure matched, with the right address, and nothing else.
    ips = collections.Counter(fail2ban_regex(str(log_path), "-o", "ip").split())
    assert ips == expected, (ips, expected)
    summary = fail2ban_regex(str(log_path))
    total = len(server.output().splitlines())
    assert f"Lines: {total} lines, 0 ignored, {sum(expected.values())} matched" in summary, summary
    assert "6.6.6.6" not in summary.split("Missed line(s)")[0]
    assert not {"6.6.6.6", "1.2.3.4", "127.0.0.1", "127.0.0.6"} & set(ips), ips

    # The journal form (backend = systemd: journald took the timestamp and the "<5>" off),
    # with an IPv6 client as pop3d writes it.
    journal = tmp_path / "journal.log"
    journal.write_text("notice login failed client=[2001:db8::7]:51234 connection.id=3 mechanism=PLAIN user=bob worker=2\n"
                       "info session end client=[2001:db8::7]:51234 user=bob\n")
    assert fail2ban_regex(str(journal), "-o", "ip").split() == ["2001:db8::7"]
