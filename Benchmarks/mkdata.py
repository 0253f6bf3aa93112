#!/usr/bin/env python3
"""Creates the benchmark data set used by compare.sh for both servers:
USERS users (u0000.., password p0000..) with MESSAGES messages of about 4 KiB each, user
`big` with one 10 MiB message, user `huge` with a 10,000-message Maildir, and IDLE users
(i00000.., password pi00000..) with one small message each for the idle-session runs.
All secrets are PLAIN so pop3bench can log in as anyone.

USERS defaults to 1024, not 1000: pop3bench gives slot s its k-th session as user
(s + k * concurrency) mod users, so concurrent sessions never share a maildrop (pop3d would
rightly answer -ERR [IN-USE], Dovecot would not lock) only when the user count is a multiple
of the concurrency: 1024 fits 1, 16 and 128. The idle runs hold up to 10,000 sessions at
once, each needing its own maildrop, hence the separate IDLE users."""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
import maildata  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--huge", type=int, default=10_000)
    ap.add_argument("--huge2", type=int, default=100_000)
    ap.add_argument("--big-mib", type=int, default=10)
    ap.add_argument("--idle", type=int, default=10_000)
    a = ap.parse_args()
    mail = os.path.join(a.dir, "mail")
    os.makedirs(mail, exist_ok=True)
    users = {f"u{i:04d}": f"p{i:04d}" for i in range(a.users)}
    users["big"] = "big"
    users["huge"] = "huge"
    users["huge2"] = "huge2"
    users.update({f"i{i:05d}": f"pi{i:05d}" for i in range(a.idle)})
    maildata.write_passwd(os.path.join(a.dir, "passwd"), users)
    rng = random.Random(1)
    base = 1_700_000_000
    for i in range(a.users):
        md = os.path.join(mail, f"u{i:04d}", "Maildir")
        for j in range(a.messages):
            maildata.deliver(md, maildata.message(j + 1, body_size=3300, rng=rng), seconds=base + j)
    line = b"x" * 75 + b"\n"
    big = b"Subject: big\nFrom: a@example.org\n\n" + line * (a.big_mib * 1024 * 1024 // len(line))
    maildata.deliver(os.path.join(mail, "big", "Maildir"), big, seconds=base)
    md = os.path.join(mail, "huge", "Maildir")
    for j in range(a.huge):
        maildata.deliver(md, maildata.message(j, body_size=1000, rng=rng), seconds=base + j)
    md = os.path.join(mail, "huge2", "Maildir")
    for j in range(a.huge2):
        maildata.deliver(md, maildata.message(j, body_size=1000, rng=rng), seconds=base + j)
    small = b"Subject: hello\nFrom: a@example.org\n\nhello\n"
    for i in range(a.idle):
        maildata.deliver(os.path.join(mail, f"i{i:05d}", "Maildir"), small, seconds=base)


if __name__ == "__main__":
    main()
