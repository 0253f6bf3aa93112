"""Mail data for end-to-end tests and benchmarks: Dovecot passwd-files and Maildirs
delivered the way Postfix does (write to tmp/, rename into new/)."""
import os
import random
import socket
import time

_counter = 0


def unique_name(seconds=None, host="testhost"):
    """A Maildir unique name `SECONDS.M<usec>P<pid>Q<n>.host`, increasing within a run."""
    global _counter
    _counter += 1
    now = time.time() if seconds is None else seconds
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{_counter}.{host}"


def ensure_maildir(path):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def deliver(maildir, data: bytes, seconds=None, subdir="new", info="", size_fields=False):
    """Delivers one message and returns its file path. `info` is the part after `:2,` for cur/."""
    ensure_maildir(maildir)
    name = unique_name(seconds)
    if size_fields:
        crlf = len(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        name += f",S={len(data)},W={crlf}"
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    final = name if subdir == "new" else f"{name}:2,{info}"
    dest = os.path.join(maildir, subdir, final)
    os.rename(tmp, dest)
    return dest


def message(i=1, body_size=4096, sender="alice@example.org", to="bob@example.org", rng=None):
    """A realistic RFC 5322 message with LF line endings of about body_size bytes of body."""
    rng = rng or random.Random(i)
    words = ["mail", "server", "pop3", "delivery", "queue", "lorem", "ipsum", "dolor", "sit",
             "amet", "message", "retrieve", "octet", "line", "."]
    headers = (
        f"Return-Path: <{sender}>\n"
        f"Received: from mx.example.org (mx.example.org [192.0.2.1])\n"
        f"\tby mail.example.org (Postfix) with ESMTPS id 4F{i:06X}\n"
        f"\tfor <{to}>; Thu, 26 Nov 2026 12:00:00 +0000 (UTC)\n"
        f"From: Alice <{sender}>\n"
        f"To: Bob <{to}>\n"
        f"Subject: Test message {i}\n"
        f"Date: Thu, 26 Nov 2026 12:00:{i % 60:02d} +0000\n"
        f"Message-ID: <{i}.{rng.randrange(1 << 30)}@example.org>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=us-ascii\n"
        "\n"
    )
    lines = []
    total = 0
    while total < body_size:
        n = rng.randrange(3, 14)
        line = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.05:
            line = "." + line  # lines starting with a dot exercise dot-stuffing
        lines.append(line)
        total += len(line) + 1
    return (headers + "\n".join(lines) + "\n").encode()


def write_passwd(path, users, scheme="PLAIN", home_root=None):
    """users: {name: password}. Dovecot passwd-file `user:{SCHEME}secret:uid:gid::home::`."""
    with open(path, "w") as f:
        for name, password in users.items():
            home = os.path.join(home_root, name) if home_root else ""
            f.write(f"{name}:{{{scheme}}}{password}:1000:1000::{home}::\n")
    return path


def crlf_octets(data: bytes) -> int:
    """Octets as POP3 sends a message before dot-stuffing: every line ending CRLF."""
    normalized = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not normalized.endswith(b"\r\n") and normalized:
        normalized += b"\r\n"
    return len(normalized)


def as_crlf(data: bytes) -> bytes:
    normalized = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if normalized and not normalized.endswith(b"\r\n"):
        normalized += b"\r\n"
    return normalized


def hostname():
    return socket.gethostname()


def mark_all_seen(maildir):
    """What an IMAP client does when it marks every new message read: new/X -> cur/X:2,S."""
    for name in os.listdir(os.path.join(maildir, "new")):
        os.rename(os.path.join(maildir, "new", name), os.path.join(maildir, "cur", name + ":2,S"))
