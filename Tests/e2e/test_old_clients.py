"""Issue 14, the clients people still run: RFC 1725 `LAST` behind `pop3_enable_last` (mutt's and
neomutt's `pop_last`, Perl's Net::POP3 `last`), and Dovecot's `pop3_client_workarounds`
(`outlook-no-nuls`, `oe-ns-eoh`) with LIST sizes equal to what RETR then sends.

Debian's mutt is driven for real (fetch-mail under a pseudo-terminal, `test_real_mutt_...`);
`mutt_fetch_mail` below also replays the exact command sequence of mutt's `pop_fetch_mail`
(pop.c: STAT, LAST when `pop_last` is set, RETR last+1 … count, QUIT) so that each reply can be
checked, and Net::POP3 (Perl's libnet) is a second real client that sends LAST.
"""
import os
import pty
import select
import signal
import subprocess
import time

from rawpop import Raw

from conftest import USERS

LAST_ON = {"POP3D_POP3_ENABLE_LAST": "true"}


def login(server, user="alice"):
    raw = Raw(server.host, server.port)
    r = raw.login(user, USERS[user])
    assert r.startswith(b"+OK"), r
    return raw


def retr(raw, n):
    """RETR n: the announced size and the octets sent (unstuffed, CRLF each line)."""
    r = raw.cmd(f"RETR {n}")
    assert r.startswith(b"+OK ") and r.endswith(b" octets"), r
    lines = raw.multiline()
    return int(r.split()[1]), lines


def mutt_fetch_mail(server):
    """mutt's pop_fetch_mail with pop_last set and pop_delete unset: returns (LAST's reply,
    the message numbers fetched). On -ERR, mutt takes last = 0 and fetches everything."""
    raw = login(server)
    stat = raw.cmd("STAT")
    assert stat.startswith(b"+OK"), stat
    count = int(stat.split()[1])
    last_reply = raw.cmd("LAST") if count > 0 else b""
    last = int(last_reply.split()[1]) if last_reply.startswith(b"+OK") else 0
    fetched = []
    for n in range(last + 1, count + 1):
        retr(raw, n)
        fetched.append(n)
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()
    return last_reply, fetched


def test_last_off_is_an_unknown_command_and_mutt_fetches_everything_again(mailhost):
    for i in range(3):
        mailhost.deliver("alice", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), seconds=1_700_000_000 + i)
    server = mailhost.serve()
    first = mutt_fetch_mail(server)
    second = mutt_fetch_mail(server)
    assert first == (b"-ERR unknown command", [1, 2, 3])
    assert second == (b"-ERR unknown command", [1, 2, 3])  # the complaint LAST answers
    # Nothing was marked seen: LAST off changes no file.
    assert all(":2," not in name for name in mailhost.files("alice"))


def test_mutt_pop_last_fetches_only_new_mail_across_sessions(mailhost):
    for i in range(3):
        mailhost.deliver("alice", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), seconds=1_700_000_000 + i)
    server = mailhost.serve(env=LAST_ON)
    raw = login(server)
    assert raw.cmd("UIDL").startswith(b"+OK")
    uidls = raw.multiline()
    assert raw.cmd("QUIT").startswith(b"+OK")

    assert mutt_fetch_mail(server) == (b"+OK 0", [1, 2, 3])
    # The RETRed messages carry the seen flag now, in cur/ (as Dovecot leaves them).
    cur = os.listdir(os.path.join(mailhost.maildir("alice"), "cur"))
    assert len(cur) == 3 and all(name.endswith(":2,S") for name in cur), cur
    assert mutt_fetch_mail(server) == (b"+OK 3", [])
    for i in range(3, 5):
        mailhost.deliver("alice", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), seconds=1_700_000_000 + i)
    assert mutt_fetch_mail(server) == (b"+OK 3", [4, 5])
    assert mutt_fetch_mail(server) == (b"+OK 5", [])
    # The flags changed no UIDL.
    raw = login(server)
    assert raw.cmd("UIDL").startswith(b"+OK")
    assert raw.multiline()[:3] == uidls
    raw.close()


def test_last_rset_dele_top_and_authorization_state(mailhost):
    for i in range(4):
        mailhost.deliver("alice", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), seconds=1_700_000_000 + i)
    server = mailhost.serve(env=LAST_ON)
    raw = Raw(server.host, server.port)
    raw.line()
    assert raw.cmd("LAST") == b"-ERR command not valid in this state"
    raw.cmd("USER alice")
    assert raw.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")
    assert raw.cmd("CAPA").startswith(b"+OK")
    assert b"LAST" not in b"\n".join(raw.multiline())  # not a capability
    assert raw.cmd("LAST") == b"+OK 0"
    assert raw.cmd("TOP 4 0").startswith(b"+OK")
    raw.multiline()
    assert raw.cmd("LAST") == b"+OK 0"  # TOP is no access (Dovecot's rule)
    retr(raw, 3)
    assert raw.cmd("LAST") == b"+OK 3"
    assert raw.cmd("DELE 2").startswith(b"+OK")
    assert raw.cmd("LAST") == b"+OK 3"
    assert raw.cmd("RSET").startswith(b"+OK")
    assert raw.cmd("LAST") == b"+OK 0"  # back to its value at login; RETR 3 forgotten
    retr(raw, 1)
    assert raw.cmd("QUIT").startswith(b"+OK")
    # Only what was RETRed after the RSET is marked seen.
    seen = sorted(n for n in mailhost.files("alice") if n.endswith(":2,S"))
    assert len(seen) == 1 and seen[0].startswith("1700000000."), mailhost.files("alice")
    raw = login(server)
    assert raw.cmd("LAST") == b"+OK 1"
    raw.close()


def test_last_starts_where_dovecot_or_imap_left_the_seen_flags(mailhost):
    """A Maildir coming from Dovecot: the messages it gave out carry S; LAST starts after them."""
    mailhost.deliver("alice", b"Subject: 1\r\n\r\n1\r\n", seconds=1_700_000_000, subdir="cur", info="S")
    mailhost.deliver("alice", b"Subject: 2\r\n\r\n2\r\n", seconds=1_700_000_001, subdir="cur", info="FS")
    mailhost.deliver("alice", b"Subject: 3\r\n\r\n3\r\n", seconds=1_700_000_002, subdir="cur", info="F")
    mailhost.deliver("alice", b"Subject: 4\r\n\r\n4\r\n", seconds=1_700_000_003)
    server = mailhost.serve(env=LAST_ON)
    assert mutt_fetch_mail(server) == (b"+OK 2", [3, 4])
    flags = sorted(name.split(":2,")[1] for name in mailhost.files("alice"))
    assert flags == ["FS", "FS", "S", "S"]


def test_net_pop3_last(mailhost, tmp_path):
    """Perl's Net::POP3 (core libnet), a real client library with a `last` method."""
    for i in range(2):
        mailhost.deliver("alice", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), seconds=1_700_000_000 + i)
    server = mailhost.serve(env=LAST_ON)
    script = tmp_path / "last.pl"
    script.write_text(r"""
use strict; use Net::POP3;
my ($host, $port, $user, $pass) = @ARGV;
my $pop = Net::POP3->new($host, Port => $port, Timeout => 20) or die "connect: $@";
defined $pop->login($user, $pass) or die "login failed";
my $before = $pop->last;
my $msg = $pop->get(2) or die "get failed";
my $after = $pop->last;
$pop->quit;
print "before=$before after=$after lines=", scalar(@$msg), "\n";
""")
    out = subprocess.run(["perl", str(script), server.host, str(server.port), "alice", USERS["alice"]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "before=0 after=2 lines=3", out.stdout
    out = subprocess.run(["perl", str(script), server.host, str(server.port), "alice", USERS["alice"]],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "before=2 after=2 lines=3", (out.stdout, out.stderr)


WORKAROUND_MESSAGES = [
    b"Subject: nuls\r\n\r\nbefore\x00after\x00\r\n\x00\r\n",
    b"Subject: headers only\r\nFrom: a@example.org\r\n",
    b"Subject: unterminated header",
    b"",
    b"Subject: normal\n\nbody\n.dot\n",
]


def expected_lines(data, workarounds):
    """The plain rule's lines (CRLF, LF or bare CR end a line), then the workarounds."""
    lines, current, i = [], b"", 0
    while i < len(data):
        c = data[i:i + 1]
        if c in (b"\r", b"\n"):
            lines.append(current)
            current = b""
            if c == b"\r" and data[i + 1:i + 2] == b"\n":
                i += 1
        else:
            current += c
        i += 1
    if current:
        lines.append(current)
    if "outlook-no-nuls" in workarounds:
        lines = [l.replace(b"\x00", b"\x80") for l in lines]
    if "oe-ns-eoh" in workarounds and b"" not in lines:
        lines.append(b"")
    return lines


def check_listing_equals_retr(server, workarounds):
    raw = login(server)
    want = [expected_lines(m, workarounds) for m in WORKAROUND_MESSAGES]
    sizes = [sum(len(l) + 2 for l in lines) for lines in want]
    assert raw.cmd("STAT") == f"+OK {len(sizes)} {sum(sizes)}".encode()
    assert raw.cmd("LIST").startswith(b"+OK")
    assert raw.multiline() == [f"{n} {s}".encode() for n, s in enumerate(sizes, start=1)]
    for n in range(1, len(sizes) + 1):
        announced, lines = retr(raw, n)
        assert (announced, lines) == (sizes[n - 1], want[n - 1]), (n, workarounds)
        assert sum(len(l) + 2 for l in lines) == announced
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()
    return want


def test_client_workarounds_keep_list_equal_to_retr(mailhost):
    # Names with Dovecot's S= and W= (the plain rule's size) must not be trusted under oe-ns-eoh
    # (the headers-only message's W= is 2 short of it). Not on the unterminated ones, whose W=
    # (as maildata and Dovecot count it) differs from the plain rule anyway (README).
    for i, data in enumerate(WORKAROUND_MESSAGES):
        mailhost.deliver("alice", data, seconds=1_700_000_000 + i, size_fields=(i in (0, 1, 4)))
    plain = mailhost.serve()
    sent = check_listing_equals_retr(plain, [])
    assert b"\x00" in sent[0][2]  # off: NULs go out as they are
    plain.stop()
    # Same Maildir, its size cache written under the plain rule: the workaround's sizes follow.
    both = ["outlook-no-nuls", "oe-ns-eoh"]
    server = mailhost.serve(env={"POP3D_POP3_CLIENT_WORKAROUNDS": ",".join(both)})
    sent = check_listing_equals_retr(server, both)
    assert all(b"\x00" not in l for lines in sent for l in lines)
    assert sent[1][-1] == b"" and sent[3] == [b""]
    # And back: the plain sizes again.
    server.stop()
    check_listing_equals_retr(mailhost.serve(), [])


def test_each_workaround_alone(mailhost):
    for i, data in enumerate(WORKAROUND_MESSAGES):
        mailhost.deliver("alice", data, seconds=1_700_000_000 + i)
    for one in (["outlook-no-nuls"], ["oe-ns-eoh"]):
        server = mailhost.serve(env={"POP3D_POP3_CLIENT_WORKAROUNDS": one[0]})
        check_listing_equals_retr(server, one)
        server.stop()


def test_unknown_workaround_stops_the_start(mailhost):
    try:
        server = mailhost.serve(env={"POP3D_POP3_CLIENT_WORKAROUNDS": "outlook-no-nuls,oe-ns-eho"})
    except RuntimeError as error:
        assert "pop3_client_workarounds: 'oe-ns-eho'" in str(error)
    else:
        server.stop()
        raise AssertionError("pop3d started with an unknown workaround")


def run_mutt_fetch_mail(root, port, timeout=60):
    """Debian's mutt: `<fetch-mail><quit>` under a pseudo-terminal (mutt is a curses program),
    appending to the mbox `root/spool`; returns how many messages the spool holds after it."""
    rc = os.path.join(root, "muttrc")
    spool = os.path.join(root, "spool")
    with open(rc, "w") as f:
        f.write(f"""
set pop_host="pop://alice@127.0.0.1:{port}"
set pop_pass="{USERS['alice']}"
set pop_last=yes
set pop_delete=no
set pop_authenticators="user"
set ssl_starttls=no
set ssl_force_tls=no
set mbox_type=mbox
set spoolfile="{spool}"
set folder="{root}"
set move=no
set quit=yes
set wait_key=no
""")
    open(spool, "a").close()
    pid, fd = pty.fork()
    if pid == 0:  # the child: only exec
        os.environ.update({"TERM": "xterm", "HOME": root})
        os.execvp("mutt", ["mutt", "-n", "-F", rc, "-f", spool, "-e", "push <fetch-mail><quit>"])
    deadline = time.monotonic() + timeout
    exited = False
    while time.monotonic() < deadline and not exited:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                os.read(fd, 65536)  # the screen; drained so mutt never blocks on it
            except OSError:
                pass
        exited = os.waitpid(pid, os.WNOHANG)[0] == pid
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    assert exited, "mutt did not finish its fetch-mail"
    with open(spool, "rb") as f:
        return sum(1 for line in f if line.startswith(b"Subject: m"))


def test_real_mutt_pop_last(mailhost, tmp_path):
    for i in range(3):
        mailhost.deliver("alice", f"From: a@example.org\r\nSubject: m{i}\r\n\r\nbody {i}\r\n".encode(),
                         seconds=1_700_000_000 + i)
    off = mailhost.serve()
    off_root = tmp_path / "off"
    off_root.mkdir()
    assert run_mutt_fetch_mail(str(off_root), off.port) == 3
    assert run_mutt_fetch_mail(str(off_root), off.port) == 6  # LAST off: everything again
    off.stop()
    on = mailhost.serve(env=LAST_ON)
    on_root = tmp_path / "on"
    on_root.mkdir()
    assert run_mutt_fetch_mail(str(on_root), on.port) == 3
    assert run_mutt_fetch_mail(str(on_root), on.port) == 3  # nothing new: nothing fetched
    mailhost.deliver("alice", b"From: a@example.org\r\nSubject: m3\r\n\r\nbody 3\r\n", seconds=1_700_000_003)
    assert run_mutt_fetch_mail(str(on_root), on.port) == 4  # only the new one
