"""RFC 2449 LOGIN-DELAY across processes: two pop3d processes serving one Maildir root (they
stand in for two workers of one master, or two hosts sharing the Maildir over NFS) enforce one
delay per user, because the time of the last login is the modification time of the maildrop's
`pop3d.lock`, not a table in one process's memory."""
import ctypes
import os
import time


import maildata
from conftest import USERS
from pop3support import wait_for
from rawpop import Raw

DELAY = 3600
ENV = {"POP3D_LOGIN_DELAY": str(DELAY)}


def two_servers(mailhost):
    return mailhost.serve(env=ENV), mailhost.serve(env=ENV)


def capa(server):
    r = Raw(server.host, server.port)
    r.line()
    assert r.cmd("CAPA").startswith(b"+OK")
    lines = r.multiline()
    r.cmd("QUIT")
    return lines


def attempt(server, user):
    """The reply to PASS, once the maildrop is no longer held by a session that just QUIT
    (its lock goes with the end of that session): [IN-USE] is retried until a deadline."""
    def once():
        r = Raw(server.host, server.port)
        reply = r.login(user, USERS[user])
        if reply.startswith(b"+OK"):
            assert r.cmd("STAT").startswith(b"+OK")
            assert r.cmd("QUIT").startswith(b"+OK")
        r.close()
        return None if reply.startswith(b"-ERR [IN-USE]") else reply
    return wait_for(once, what=f"{user}'s maildrop released")


def lock_file(mailhost, user):
    return os.path.join(mailhost.maildir(user), "pop3d.lock")


def test_login_delay_holds_across_two_processes(mailhost):
    for user in ("alice", "bob"):
        mailhost.deliver(user, maildata.message(1))
    a, b = two_servers(mailhost)
    assert f"LOGIN-DELAY {DELAY}".encode() in capa(a)
    assert f"LOGIN-DELAY {DELAY}".encode() in capa(b)
    # The first login (a size count on the storage workers) is recorded with the maildrop ...
    assert attempt(a, "alice").startswith(b"+OK")
    # ... so the other process refuses the next one, and so does the first.
    assert attempt(b, "alice").startswith(b"-ERR [LOGIN-DELAY]")
    assert attempt(a, "alice").startswith(b"-ERR [LOGIN-DELAY]")
    # The delay is per user: bob logs in on B, then is refused on A.
    assert attempt(b, "bob").startswith(b"+OK")
    assert attempt(a, "bob").startswith(b"-ERR [LOGIN-DELAY]")
    # CAPA still announces the delay after refusals.
    assert f"LOGIN-DELAY {DELAY}".encode() in capa(b)


def test_in_use_wins_over_login_delay(mailhost):
    """A maildrop held by a session on one process is [IN-USE] on the other: the delay is
    checked only under the lock, so two processes racing for one user cannot both pass."""
    mailhost.deliver("alice", maildata.message(1))
    a, b = two_servers(mailhost)
    held = Raw(a.host, a.port)
    assert held.login("alice", USERS["alice"]).startswith(b"+OK")
    other = Raw(b.host, b.port)
    assert other.login("alice", USERS["alice"]).startswith(b"-ERR [IN-USE]")
    other.close()
    assert held.cmd("QUIT").startswith(b"+OK")
    assert attempt(b, "alice").startswith(b"-ERR [LOGIN-DELAY]")


def test_login_after_the_delay_through_the_other_process(mailhost):
    mailhost.deliver("alice", maildata.message(1))
    a, b = two_servers(mailhost)
    assert attempt(a, "alice").startswith(b"+OK")
    lock = lock_file(mailhost, "alice")
    # 600 s of the delay left: refused, and the refusal does not move the record.
    left_600 = time.time() - (DELAY - 600)
    os.utime(lock, (left_600, left_600))
    assert attempt(b, "alice").startswith(b"-ERR [LOGIN-DELAY]")
    assert abs(os.stat(lock).st_mtime - left_600) < 0.001
    # The delay has passed (the record set back, rather than waiting an hour): B lets alice in
    # and records that login, which A then enforces.
    passed = time.time() - DELAY - 1
    os.utime(lock, (passed, passed))
    before = time.time()
    assert attempt(b, "alice").startswith(b"+OK")
    assert os.stat(lock).st_mtime >= before - 1
    assert attempt(a, "alice").startswith(b"-ERR [LOGIN-DELAY]")


def drop_cap_fowner():
    """preexec_fn: pop3d runs as root without CAP_FOWNER (dropped from the bounding set, so the
    exec does not grant it), so it may open a lock file owned by another user but not set its
    time: a Maildir where the LOGIN-DELAY record cannot be written."""
    pr_capbset_drop, cap_fowner = 24, 3
    if ctypes.CDLL(None, use_errno=True).prctl(pr_capbset_drop, cap_fowner, 0, 0, 0) != 0:
        os._exit(121)


def test_a_record_that_cannot_be_written_is_logged_and_the_login_works(mailhost):
    # make test runs as root (it installs packages); anything else is a failure, not a skip.
    assert os.geteuid() == 0, "needs root to own the lock file as another user"
    mailhost.deliver("alice", maildata.message(1))
    plain = mailhost.serve(env=ENV)
    assert attempt(plain, "alice").startswith(b"+OK")  # creates pop3d.lock
    plain.stop()
    lock = lock_file(mailhost, "alice")
    os.chown(lock, 65534, 65534)
    long_ago = time.time() - 2 * DELAY
    os.utime(lock, (long_ago, long_ago))
    server = mailhost.serve(env=ENV, preexec_fn=drop_cap_fowner)
    # Not recorded, so not refused either: twice in a row.
    assert attempt(server, "alice").startswith(b"+OK")
    assert attempt(server, "alice").startswith(b"+OK")
    assert abs(os.stat(lock).st_mtime - long_ago) < 0.001
    wait_for(lambda: server.output().count("LOGIN-DELAY record not written") == 2,
             what="one warning per failed write")
    line = next(l for l in server.output().splitlines() if "LOGIN-DELAY record not written" in l)
    assert "futimens" in line and "warning" in line.lower(), line
