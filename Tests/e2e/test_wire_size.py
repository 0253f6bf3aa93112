"""Issue 10 item 1: STAT, LIST and RETR agree on every message, octet for octet, against the
built binary. The rule (README "Mail storage"): a line ends at CRLF, a bare LF or a bare CR,
and every line end is sent as CRLF; an unterminated last line is ended with CRLF."""
from rawpop import Raw

from conftest import USERS

MESSAGES = [
    b"\r",                                   # LIST said 3, RETR sent 2
    b"Subject: c\r\rbody\r",                 # LIST said 19, RETR sent 18
    b"From: mac\rSubject: cr only\r\r.dot line\rlast\r",   # classic Mac line ends
    b"Subject: lf\n\nbody\n.\n..x\nno newline at end",
    b"Subject: crlf\r\n\r\nbody\r\n",
    b"Subject: mixed\r\n\rline\r\r\nbare\rcr\n",
]


def wire_lines(data: bytes):
    """The lines a client must receive (after unstuffing), written the slow obvious way."""
    lines, current, i = [], b"", 0
    while i < len(data):
        c = data[i:i + 1]
        if c == b"\r":
            lines.append(current)
            current = b""
            if data[i + 1:i + 2] == b"\n":
                i += 1
        elif c == b"\n":
            lines.append(current)
            current = b""
        else:
            current += c
        i += 1
    if current:
        lines.append(current)
    return lines


def read_stuffed(raw):
    """Lines of a multi-line reply up to '.', unstuffed, and the unstuffed octets (CRLF each)."""
    lines = []
    while (line := raw.line()) != b".":
        assert b"\r" not in line and b"\n" not in line, line
        if line.startswith(b"."):
            assert line.startswith(b".."), line  # every leading dot is stuffed
            line = line[1:]
        lines.append(line)
    return lines, sum(len(l) + 2 for l in lines)


def test_stat_list_retr_top_agree_for_bare_cr_messages(mailhost):
    for i, data in enumerate(MESSAGES):
        mailhost.deliver("alice", data, seconds=1_700_000_000 + i)
    server = mailhost.serve()
    raw = Raw(server.host, server.port)
    raw.line()
    raw.cmd("USER alice")
    assert raw.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")
    want = [sum(len(l) + 2 for l in wire_lines(m)) for m in MESSAGES]
    assert raw.cmd("STAT") == f"+OK {len(MESSAGES)} {sum(want)}".encode()
    assert raw.cmd("LIST").startswith(b"+OK")
    assert raw.multiline() == [f"{n} {size}".encode() for n, size in enumerate(want, start=1)]
    for n, data in enumerate(MESSAGES, start=1):
        assert raw.cmd(f"LIST {n}") == f"+OK {n} {want[n - 1]}".encode()
        assert raw.cmd(f"RETR {n}") == f"+OK {want[n - 1]} octets".encode()
        lines, octets = read_stuffed(raw)
        assert (lines, octets) == (wire_lines(data), want[n - 1]), data
    # TOP counts the lines the client sees: the Mac message's headers, blank line, 1 body line.
    assert raw.cmd("TOP 3 1").startswith(b"+OK")
    assert read_stuffed(raw)[0] == [b"From: mac", b"Subject: cr only", b"", b".dot line"]
    assert raw.cmd("QUIT").startswith(b"+OK")
