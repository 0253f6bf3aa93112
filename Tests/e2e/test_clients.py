"""Real POP3 clients against the built pop3d on loopback. Each test checks the bytes the
client delivered against the messages that were put into the Maildir."""
import glob
import mailbox
import os
import poplib
import shutil
import socket
import subprocess
import tempfile

import pytest

import maildata
from conftest import ALL_MECHANISMS, USERS
from fetchmailsupport import run_fetchmail

# Issue 10: the server offers only `auth_mechanisms` (default plain login); these tests
# exercise every mechanism, so they enable all of them.


def fill(mailhost, user="alice", count=5):
    originals = []
    for i in range(count):
        data = maildata.message(i + 1, body_size=2000 + 500 * i)
        if i == 1:
            data += b".leading dot line\n..two dots\n.\nlast line without newline"
        if i == 2:
            data = data.replace(b"\n", b"\r\n")
        mailhost.deliver(user, data, seconds=1_700_000_000 + i)
        originals.append(data)
    return originals


def login(server, user="alice"):
    p = poplib.POP3(server.host, server.port, timeout=20)
    p.user(user)
    p.pass_(USERS[user])
    return p


def test_poplib_list_uidl_retr_top(mailhost):
    originals = fill(mailhost)
    server = mailhost.serve(env=ALL_MECHANISMS)
    p = login(server)
    count, total = p.stat()
    assert count == len(originals)
    assert total == sum(maildata.crlf_octets(m) for m in originals)
    _, listing, _ = p.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sizes == [maildata.crlf_octets(m) for m in originals]
    _, uidls, _ = p.uidl()
    uids = [line.split()[1] for line in uidls]
    assert len(set(uids)) == len(originals)
    for i, original in enumerate(originals, start=1):
        _, lines, octets = p.retr(i)
        # poplib strips CRLF and un-stuffs dots; rebuild the CRLF text it received.
        got = b"".join(line + b"\r\n" for line in lines)
        assert got == maildata.as_crlf(original)
    _, lines, _ = p.top(1, 3)
    header, _, body = maildata.as_crlf(originals[0]).partition(b"\r\n\r\n")
    expected = header.split(b"\r\n") + [b""] + body.split(b"\r\n")[:3]
    assert lines == expected
    p.quit()
    assert len(mailhost.files("alice")) == len(originals)


def test_poplib_dele_quit_removes_exactly_marked(mailhost):
    fill(mailhost, count=4)
    before = mailhost.files("alice")
    server = mailhost.serve(env=ALL_MECHANISMS)
    p = login(server)
    _, uidls, _ = p.uidl()
    uid_of = {int(l.split()[0]): l.split()[1].decode() for l in uidls}
    p.dele(2)
    p.dele(4)
    with pytest.raises(poplib.error_proto):
        p.retr(2)  # a deleted message is gone for this session
    assert p.stat()[0] == 2
    p.quit()
    after = mailhost.files("alice")
    assert len(after) == 2
    removed = set(before) - set(after)
    assert {n.split(":")[0].split(",")[0] for n in removed} == {uid_of[2], uid_of[4]}


def test_poplib_dropped_connection_deletes_nothing(mailhost):
    fill(mailhost, count=3)
    before = mailhost.files("alice")
    server = mailhost.serve(env=ALL_MECHANISMS)
    p = login(server)
    p.dele(1)
    p.dele(2)
    # No QUIT: the session never enters UPDATE. (poplib keeps a file object on the socket,
    # so close() alone would leave the descriptor open.)
    p.sock.shutdown(socket.SHUT_RDWR)
    p.sock.close()
    # A new session can only log in once the old one has released the maildrop.
    p2 = maildata_wait_login(server)
    assert p2.stat()[0] == 3
    p2.quit()
    assert mailhost.files("alice") == before


def maildata_wait_login(server, user="alice"):
    import time
    deadline = time.monotonic() + 20
    while True:
        try:
            return login(server, user)
        except poplib.error_proto as e:
            if b"IN-USE" not in e.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, check=True).stdout


def test_curl_list_retr_uidl_dele(mailhost):
    originals = fill(mailhost, count=3)
    server = mailhost.serve(env=ALL_MECHANISMS)
    url = f"pop3://{server.host}:{server.port}"
    auth = ["-u", f"alice:{USERS['alice']}"]
    listing = curl(*auth, url + "/")
    assert listing.split(b"\r\n")[:3] == [
        f"{i} {maildata.crlf_octets(m)}".encode() for i, m in enumerate(originals, start=1)]
    for i, original in enumerate(originals, start=1):
        assert curl(*auth, f"{url}/{i}") == maildata.as_crlf(original)
    uidl = curl(*auth, "-X", "UIDL", url + "/")
    assert len([l for l in uidl.split(b"\r\n") if l]) == 3
    curl(*auth, "-X", "DELE", "-I", url + "/1")  # DELE 1 then QUIT: UPDATE removes it
    assert len(mailhost.files("alice")) == 2
    assert curl(*auth, url + "/").count(b"\r\n") == 2


def test_mpop_keep_mode_uses_uidl(mailhost, tmp_path):
    if not shutil.which("mpop"):
        pytest.fail("mpop is not installed (make test installs it)")
    originals = fill(mailhost, count=3)
    server = mailhost.serve(env=ALL_MECHANISMS)
    mbox_path = tmp_path / "mpop.mbox"
    uidls = tmp_path / "mpop.uidls"
    rc = tmp_path / "mpoprc"
    rc.write_text(
        "account test\n"
        f"host {server.host}\nport {server.port}\nuser alice\npassword {USERS['alice']}\n"
        "tls off\nauth user\n"
        f"uidls_file {uidls}\nkeep on\nonly_new on\n"
        f"delivery mbox {mbox_path}\n")
    rc.chmod(0o600)
    run = lambda: subprocess.run(["mpop", "-C", str(rc), "-q", "test"], capture_output=True,
                                 timeout=60)
    r = run()
    assert r.returncode == 0, r.stderr
    got = [bytes(m.as_bytes()) for m in mailbox.mbox(str(mbox_path))]
    assert len(got) == 3
    for original, message in zip(originals, mailbox.mbox(str(mbox_path))):
        subject = [l for l in original.split(b"\n") if l.startswith(b"Subject:")][0].strip()
        assert message["Subject"] == subject.split(b": ", 1)[1].decode()
    # Keep mode: the messages stay, and a second run fetches nothing new (UIDL).
    assert len(mailhost.files("alice")) == 3
    size_before = mbox_path.stat().st_size
    r = run()
    assert r.returncode == 0, r.stderr
    assert mbox_path.stat().st_size == size_before
    mailhost.deliver("alice", maildata.message(99))
    r = run()
    assert r.returncode == 0, r.stderr
    assert len(mailbox.mbox(str(mbox_path))) == 4


def test_fetchmail_keep_mda_to_file(mailhost, tmp_path):
    originals = fill(mailhost, count=3)
    server = mailhost.serve(env=ALL_MECHANISMS)
    r, out = run_fetchmail(server, "alice", USERS["alice"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    delivered = sorted(glob.glob(f"{out}/msg.*"))
    assert len(delivered) == 3
    bodies = {without_fetchmail_received(open(p, "rb").read().replace(b"\r\n", b"\n"))
              for p in delivered}
    want = set()
    for original in originals:
        norm = original.replace(b"\r\n", b"\n")
        want.add(norm if norm.endswith(b"\n") else norm + b"\n")
    assert bodies == want
    assert len(mailhost.files("alice")) == 3


def without_fetchmail_received(message: bytes) -> bytes:
    """fetchmail adds its own Received: header (after Return-Path); take it out again."""
    lines = message.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"Received: from 127.0.0.1"):
            end = i + 1
            while end < len(lines) and lines[end].startswith(b"\t"):
                end += 1
            return b"\n".join(lines[:i] + lines[end:])
    return message


def test_getmail6_into_maildir(mailhost, tmp_path):
    if not shutil.which("getmail"):
        pytest.fail("getmail6 is not installed (make test installs it)")
    originals = fill(mailhost, count=3)
    server = mailhost.serve(env=ALL_MECHANISMS)
    # getmail refuses to deliver as root; it switches to `user`, who needs a folder it can write.
    dest_root = tempfile.mkdtemp(prefix="pop3d-getmail-", dir="/tmp")
    os.chmod(dest_root, 0o777)
    dest = maildata.ensure_maildir(os.path.join(dest_root, "dest")) + "/"
    for sub in ("", "new", "cur", "tmp"):
        os.chmod(os.path.join(dest, sub), 0o777)
    gdir = tmp_path / "getmail"
    gdir.mkdir()
    rc = gdir / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\n"
        f"server = {server.host}\nport = {server.port}\nusername = alice\npassword = {USERS['alice']}\n"
        "[destination]\ntype = Maildir\n"
        f"path = {dest}\n"
        "user = nobody\n"
        "[options]\ndelete = false\nread_all = true\nverbose = 0\n"
        "delivered_to = false\nreceived = false\nmessage_log_syslog = false\n")
    r = subprocess.run(["getmail", "--getmaildir", str(gdir), "--rcfile", "getmailrc"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = []
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(dest, sub)):
            got.append(open(os.path.join(dest, sub, name), "rb").read())
    assert len(got) == 3
    want = {o.replace(b"\r\n", b"\n").rstrip(b"\n") for o in originals}
    assert {g.replace(b"\r\n", b"\n").rstrip(b"\n") for g in got} == want
    shutil.rmtree(dest_root)
    assert len(mailhost.files("alice")) == 3
