"""deploy/fail2ban/filter.d/pop3d.conf against real pop3d log output, with Debian's
fail2ban-regex: every failed login (USER/PASS, APOP, AUTH PLAIN, AUTH LOGIN) matches with the
client's address, no success and no other line does, and a hostile user name that carries
its own `client=` cannot make the filter ban someone else."""
import base64
import collections
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
    server = mailhost.serve("--trusted-network", "127.0.0.0/8", env=ALL_MECHANISMS)
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
    # Successes from another address: never matched.
    for user in ("alice", "bob"):
        raw = Raw(server.host, server.port, source="127.0.0.6")
        assert raw.login(user, USERS[user]).startswith(b"+OK")  # reads the greeting itself
        assert raw.cmd("QUIT").startswith(b"+OK")
        raw.close()

    log_path = tmp_path / "pop3d.log"
    assert server.terminate() == 0  # SIGTERM: every line written; the log stays readable
    log_path.write_text(server.output())
    failed_lines = [l for l in server.output().splitlines() if " login failed " in l]
    assert len(failed_lines) == sum(expected.values()), failed_lines

    # Every failure matched, with the right address, and nothing else.
    ips = collections.Counter(fail2ban_regex(str(log_path), "-o", "ip").split())
    assert ips == expected, (ips, expected)
    summary = fail2ban_regex(str(log_path))
    total = len(server.output().splitlines())
    assert f"Lines: {total} lines, 0 ignored, {sum(expected.values())} matched" in summary, summary
    assert "6.6.6.6" not in summary.split("Missed line(s)")[0]

    # The journal form (backend = systemd: journald took the timestamp and the "<5>" off),
    # with an IPv6 client as pop3d writes it.
    journal = tmp_path / "journal.log"
    journal.write_text("notice login failed client=[2001:db8::7]:51234 connection.id=3 user=bob worker=2\n"
                       "info session end client=[2001:db8::7]:51234 user=bob\n")
    assert fail2ban_regex(str(journal), "-o", "ip").split() == ["2001:db8::7"]
