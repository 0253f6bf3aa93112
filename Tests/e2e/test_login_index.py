"""Issue 14, the login index end to end: a Maildir of more than 256 messages gets pop3d.index,
and every listing served from it (STAT, LIST, UIDL) is the one a listing from scratch gives,
after new mail, after another program marked a message read or removed one, and after the
index was corrupted."""
import os

import maildata
from conftest import USERS
from pop3support import wait_for
from rawpop import Raw

COUNT = 300  # above LoginIndex.minimumMessages (256)


def listing(server, user="alice"):
    r = Raw(server.host, server.port, timeout=60)
    reply = r.login(user, USERS[user])
    assert reply.startswith(b"+OK"), reply
    stat = r.cmd("STAT")
    assert stat.startswith(b"+OK"), stat
    assert r.cmd("LIST").startswith(b"+OK")
    sizes = r.multiline()
    assert r.cmd("UIDL").startswith(b"+OK")
    uids = r.multiline()
    assert r.cmd("QUIT").startswith(b"+OK")
    return stat, sizes, uids


def from_scratch(server, maildir):
    """The listing with neither the index nor the size cache (both put back afterwards)."""
    saved = {}
    for name in ("pop3d.index", "pop3d.sizes"):
        path = os.path.join(maildir, name)
        if os.path.exists(path):
            saved[path] = path + ".saved"
            os.rename(path, saved[path])
    try:
        return listing(server)
    finally:
        for name in ("pop3d.index", "pop3d.sizes"):
            path = os.path.join(maildir, name)
            if os.path.exists(path):
                os.unlink(path)
        for path, aside in saved.items():
            os.rename(aside, path)


def past_folder_times(maildir):
    """Waits until the filesystem's clock is past new/'s and cur/'s change times, as it is
    between a delivery and a real login (an index written in the same tick as a folder's
    last change is rightly not trusted by the next login)."""
    newest = max(os.stat(os.path.join(maildir, d)).st_ctime_ns for d in ("new", "cur"))
    probe = os.path.join(maildir, ".clock-probe")

    def passed():
        with open(probe, "wb") as f:
            f.write(b"x")
        t = os.stat(probe).st_ctime_ns
        os.unlink(probe)
        return t > newest
    wait_for(passed, timeout=10, what="the filesystem clock to pass the folders' times")


def test_index_listing_matches_a_listing_from_scratch(mailhost):
    for i in range(COUNT):
        mailhost.deliver("alice", maildata.message(i, body_size=200), seconds=1_700_000_000 + i)
    maildir = mailhost.maildir("alice")
    index = os.path.join(maildir, "pop3d.index")
    server = mailhost.serve()
    past_folder_times(maildir)
    first = listing(server)
    assert os.path.exists(index), "no login index written for a Maildir of 300 messages"
    assert first[0] == f"+OK {COUNT} {sum(maildata.crlf_octets(maildata.message(i, body_size=200)) for i in range(COUNT))}".encode()
    assert listing(server) == first  # warm: from the index

    # New mail, a message marked read by another program (new/ -> cur/), one removed.
    mailhost.deliver("alice", b"Subject: late\n\nlate\n", seconds=1_800_000_000)
    names = sorted(os.listdir(os.path.join(maildir, "new")))
    os.rename(os.path.join(maildir, "new", names[3]), os.path.join(maildir, "cur", names[3] + ":2,S"))
    os.unlink(os.path.join(maildir, "new", names[10]))
    changed = listing(server)
    assert changed[0].startswith(f"+OK {COUNT} ".encode())  # +1 delivered, -1 removed
    assert changed == from_scratch(server, maildir)
    assert b" 1800000000." in changed[2][-1], changed[2][-1]  # the late one is last (delivery order)
    past_folder_times(maildir)
    assert listing(server) == changed

    # A corrupted index is discarded (and says so in the log), and rebuilt.
    data = bytearray(open(index, "rb").read())
    data[len(data) // 2] ^= 0x40
    with open(index, "wb") as f:
        f.write(data)
    assert listing(server) == changed
    wait_for(lambda: "login index" in server.output() and "discarded" in server.output(),
             what="the log line of the discarded index")
    assert listing(server) == changed
    assert server.proc.poll() is None, server.output()
