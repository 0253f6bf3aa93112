"""Issue 16: the SHA-256 behind UIDLs of long or unprintable Maildir names moved from a
hand-written digest to OpenSSL. A UIDL is what a leave-on-server client remembers, so the
hashed ones must stay the same octets: FIPS 180-4 SHA-256 of the unique name in lower-case hex,
as Python's hashlib computes it. Run against the binary before the move as well
(POP3D_BIN=/tmp/before/pop3d) to see that both give these."""
import hashlib
import os

import maildata
from conftest import USERS
from rawpop import Raw


def names():
    """Unique names RFC 1939 §7 does not allow as UIDLs: longer than 70 octets (around the
    119/120-octet padding boundary of SHA-256), with a space, with a non-ASCII letter."""
    out = []
    for i, length in enumerate([71, 119, 120, 200]):
        stem = f"{1_700_000_000 + i}.M{length}P1."
        out.append((stem + "h" * length)[:length])
    out.append("1700000100.M1 P2.host")
    out.append("1700000101.M\u00fc.host")
    return out


def test_hashed_uidls_are_sha256_hex_of_the_unique_name(mailhost):
    md = mailhost.maildir("alice")
    maildata.ensure_maildir(md)
    expected = []
    for i, name in enumerate(names()):
        # The S= field is not part of the unique name, so it does not change the UIDL.
        with open(os.path.join(md, "new", f"{name},S=12"), "wb") as f:
            f.write(b"Subject: x\n\n")
        expected.append(f"{i + 1} {hashlib.sha256(name.encode()).hexdigest()}".encode())
    server = mailhost.serve()
    r = Raw(server.host, server.port)
    assert r.login("alice", USERS["alice"]).startswith(b"+OK")
    assert r.cmd("UIDL").startswith(b"+OK")
    assert r.multiline() == expected
    r.cmd("QUIT")
