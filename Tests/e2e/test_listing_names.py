"""Issue 17's login listing end to end: names are compared as octets (two Maildir names that
differ only in Unicode normalization are two messages, as they are two files), and a name whose
S=/W= fields disagree with its file is listed with the file's real size the first time it is
seen and at every later login (the size cache is then consulted, never the name)."""
import os

import maildata
from conftest import USERS
from rawpop import Raw

# "é" precomposed (U+00E9) and decomposed (e + U+0301): canonically equivalent Unicode,
# different octets, so different files.
COMPOSED = "1700000000.M1P1.caf\u00e9"
DECOMPOSED = "1700000000.M1P1.cafe\u0301"


def login(server, user):
    r = Raw(server.host, server.port, timeout=30)
    reply = r.login(user, USERS[user])
    assert reply.startswith(b"+OK"), reply
    return r


def put(maildir, name, data, folder="new"):
    path = os.path.join(maildir, folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def listing(r):
    assert r.cmd("LIST").startswith(b"+OK")
    sizes = {}
    for line in r.multiline():
        n, size = line.split()
        sizes[int(n)] = int(size)
    return sizes


def retr_octets(r, n):
    assert r.cmd(f"RETR {n}").startswith(b"+OK")
    return sum(len(line) + 2 for line in r.multiline())


def test_names_that_differ_only_in_normalization_are_two_messages(mailhost):
    md = mailhost.maildir("alice")
    one, two = b"Subject: one\n\n1\n", b"Subject: second\n\nthe second\n"
    put(md, COMPOSED, one)
    put(md, DECOMPOSED, two)
    server = mailhost.serve()
    for _ in range(2):  # the first login measures and caches both, the second reads the cache
        r = login(server, "alice")
        stat = r.cmd("STAT")
        assert stat == f"+OK 2 {maildata.crlf_octets(one) + maildata.crlf_octets(two)}".encode(), stat
        assert r.cmd("UIDL").startswith(b"+OK")
        uidls = [line.split()[1] for line in r.multiline()]
        assert len(set(uidls)) == 2, uidls
        assert sorted(listing(r).values()) == sorted([maildata.crlf_octets(one), maildata.crlf_octets(two)])
        assert r.cmd("QUIT").startswith(b"+OK")


def test_size_fields_that_disagree_with_the_file_are_caught_at_first_sight(mailhost):
    md = mailhost.maildir("alice")
    honest = maildata.message(1, body_size=300)
    mailhost.deliver("alice", honest, size_fields=True)
    server = mailhost.serve()
    r = login(server, "alice")  # a first login with one honest name: its W= is used
    assert r.cmd("QUIT").startswith(b"+OK")
    lying = [maildata.message(i, body_size=300 + i) for i in (2, 3, 4)]
    size = [len(b) for b in lying]
    names = [f"1800000002.M2P1.host,S={size[0] - 1},W={maildata.crlf_octets(lying[0])}",   # S= wrong
             f"1800000003.M3P1.host,S={size[1]},W={size[1] - 1}",                           # W= < file
             f"1800000004.M4P1.host,S={size[2]},W={2 * size[2] + 3}:2,S"]                   # W= > 2x+2
    for name, data in zip(names, lying):
        put(md, name, data, folder="cur" if ":" in name else "new")
    expected = [maildata.crlf_octets(b) for b in [honest] + lying]
    for _ in range(2):
        r = login(server, "alice")
        sizes = listing(r)
        assert [sizes[n] for n in sorted(sizes)] == expected, sizes
        for n in sorted(sizes):
            assert retr_octets(r, n) == expected[n - 1]
        assert r.cmd("QUIT").startswith(b"+OK")
