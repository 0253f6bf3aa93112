"""Hostile authentication traffic (issue 9, findings 6 and 9): the hashing pool cannot be
starved from outside, absurd cost parameters in the passwd-file are refused, and a
passwd-file reload neither freezes the loop nor replaces the users with nothing."""
import ctypes
import ctypes.util
import os
import signal
import socket
import statistics
import threading
import time

from pop3support import wait_for
from rawpop import Raw

_libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def crypt(password, setting):
    """libxcrypt's crypt(3), as the server verifies (Python's crypt module is going away)."""
    out = _libcrypt.crypt(password.encode(), setting.encode())
    assert out and not out.startswith(b"*"), out
    return out.decode()


# SHA512-CRYPT with 200,000 rounds: about 0.1 s of CPU per attempt here, within the cap of
# 1,000,000, so that a few hundred attempts are many seconds of work for the pool.
SLOW_SETTING = "$6$rounds=200000$hostileauthsalt$"


def slow_passwd(path, users):
    lines = [f"{u}:{{SHA512-CRYPT}}{crypt(pw, SLOW_SETTING)}::::::\n" for u, pw in users.items()]
    path.write_text("".join(lines))
    return str(path)


def abandon(host, port, user, n, source=None):
    """n connections that send USER/PASS with a wrong password and close without waiting."""
    sent = 0
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=20,
                                     source_address=(source, 0) if source else None)
        s.recv(512)  # greeting
        s.sendall(f"USER {user}\r\nPASS wrong-guess\r\n".encode())
        s.close()
        sent += 1
    return sent


def timed_login(server, user, password, source):
    r = Raw(server.host, server.port, timeout=120, source=source)
    t0 = time.monotonic()
    reply = r.login(user, password)
    elapsed = time.monotonic() - t0
    r.cmd("QUIT")
    r.close()
    return reply, elapsed



class NoopProbe:
    """Sends NOOPs on a logged-in `session` from a thread, one at a time `interval` s apart,
    while the `with` block runs: round trips in `rtts` (seconds), a failed or timed-out NOOP in
    `errors` (the probe stops there). Leaving the block stops and joins it (bounded)."""

    def __init__(self, session, interval):
        self.session, self.interval = session, interval
        self.rtts, self.errors = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                reply = self.session.cmd("NOOP")
            except OSError as e:  # includes socket timeouts
                self.errors.append(e)
                return
            if reply != b"+OK":
                self.errors.append(reply)
                return
            self.rtts.append(time.monotonic() - t0)
            time.sleep(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)
        return False

def test_abandoned_hash_attempts_do_not_delay_a_real_login(mailhost, tmp_path):
    """250 connections from one address send USER/PASS and close at once. Before the fix
    every PASS queued a hash that ran after its client had gone (about 12 s of work for two
    workers here), and a real SHA512-CRYPT login from another address waited behind all of
    them. Now a queued hash is cancelled when its client closes, and one address may have
    at most auth_max_queued_per_ip hashes queued or running."""
    passwd = slow_passwd(tmp_path / "passwd-slow", {"victim": "real-password", "dora": "dora-pw"})
    # The real user comes from 127.0.0.2, which is not "secured" (client != server address).
    server = mailhost.serve("--passwd-file", passwd, env={"POP3D_DISABLE_PLAINTEXT_AUTH": "false"})
    mailhost.maildir("dora")
    _, alone = timed_login(server, "dora", "dora-pw", "127.0.0.2")
    threads = [threading.Thread(target=abandon, args=(server.host, server.port, "victim", 50)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    reply, elapsed = timed_login(server, "dora", "dora-pw", "127.0.0.2")
    print(f"\nreal login alone {alone:.3f} s; right after 250 abandoned attempts {elapsed:.3f} s")
    assert reply.startswith(b"+OK"), reply
    # Two slow hashes running plus the login's own take well under a second; the bound
    # leaves room for a loaded machine. Before the fix: about 12 s here.
    assert elapsed < 5.0, elapsed


def test_per_address_hash_queue_is_capped_and_trusted_networks_are_exempt(mailhost, tmp_path):
    passwd = slow_passwd(tmp_path / "passwd-slow", {"victim": "real-password"})

    def burst(server, n):
        conns = [Raw(server.host, server.port, timeout=60) for _ in range(n)]
        for c in conns:
            assert c.line().startswith(b"+OK")
            assert c.cmd("USER victim").startswith(b"+OK")
        for c in conns:
            c.send(b"PASS wrong-guess\r\n")
        replies = [c.line() for c in conns]
        for c in conns:
            c.close()
        return replies

    server = mailhost.serve("--passwd-file", passwd,
                            env={"POP3D_AUTH_MAX_QUEUED_PER_IP": "2", "POP3D_AUTH_WORKERS": "1"})
    replies = burst(server, 5)
    refused = [r for r in replies if r.startswith(b"-ERR [SYS/TEMP]")]
    assert len(refused) == 3, replies
    assert all(b"too many logins in progress" in r for r in refused), refused
    assert [r for r in replies if r.startswith(b"-ERR [AUTH]")], replies
    assert "auth_max_queued_per_ip (2) reached" in server.output()
    server.stop()

    trusted = mailhost.serve("--passwd-file", passwd, "--trusted-network", "127.0.0.0/8",
                             env={"POP3D_AUTH_MAX_QUEUED_PER_IP": "2", "POP3D_AUTH_WORKERS": "1"})
    replies = burst(trusted, 5)
    assert all(r.startswith(b"-ERR [AUTH]") for r in replies), replies


def test_over_cost_passwd_lines_are_refused_with_a_warning_naming_the_line(mailhost, tmp_path):
    """A `$2b$31$` line used to load silently and tie a worker up for about 30 hours per
    attempt (rounds=999999999: about 4 minutes)."""
    bcrypt31 = "$2b$31$" + "a" * 53
    passwd = tmp_path / "passwd-cost"
    passwd.write_text(
        "alice:{PLAIN}alice-pw::::::\n"
        f"mallory:{{BLF-CRYPT}}{bcrypt31}::::::\n"
        "trent:{SHA512-CRYPT}$6$rounds=999999999$salt$hash::::::\n")
    server = mailhost.serve("--passwd-file", str(passwd))
    wait_for(lambda: "passwd-file loaded" in server.output(), timeout=30, what="passwd-file loaded")
    out = server.output()
    assert f"{passwd}:2: user \"mallory\": bcrypt cost 31 above the limit 14" in out, out
    assert f"{passwd}:3: user \"trent\": SHA-crypt rounds=999999999 above the limit" in out, out
    # mallory cannot log in, and trying costs no hash: the answer is prompt.
    r = Raw(server.host, server.port, timeout=30)
    t0 = time.monotonic()
    assert r.login("mallory", "anything").startswith(b"-ERR [AUTH]")
    assert time.monotonic() - t0 < 5.0
    mailhost.maildir("alice")
    r = Raw(server.host, server.port)
    assert r.login("alice", "alice-pw").startswith(b"+OK")


def test_overlong_password_is_refused_without_hashing(mailhost, tmp_path):
    """AUTH PLAIN can carry passwords far longer than a PASS line; above 256 octets the
    login fails without any hash (SHA512-CRYPT costs 7x more at 511 octets)."""
    import base64
    long_pw, cap_pw = "x" * 300, "y" * 256
    passwd = tmp_path / "passwd-long"
    passwd.write_text(f"longpw:{{PLAIN}}{long_pw}::::::\ncappw:{{PLAIN}}{cap_pw}::::::\n")
    mailhost.maildir("longpw")
    mailhost.maildir("cappw")
    server = mailhost.serve("--passwd-file", str(passwd))

    def plain(user, password):
        r = Raw(server.host, server.port)
        r.line()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        reply = r.cmd(f"AUTH PLAIN {token}") if len(token) < 240 else (r.cmd("AUTH PLAIN"), r.cmd(token))[1]
        r.close()
        return reply

    assert plain("cappw", cap_pw).startswith(b"+OK")
    assert plain("longpw", long_pw).startswith(b"-ERR [AUTH]")
    assert "password longer than 256 octets refused" in server.output()


def noop_session(server):
    """A logged-in session whose NOOPs probe the loop (bob: alice stays free to log in)."""
    r = Raw(server.host, server.port)
    assert r.login("bob", "bob-pw").startswith(b"+OK")
    return r


def logs_in(server, user, password):
    c = Raw(server.host, server.port, timeout=30)
    ok = c.login(user, password).startswith(b"+OK")
    c.cmd("QUIT")
    c.close()
    return ok


def test_sighup_with_a_fifo_or_an_empty_passwd_file_keeps_the_old_users(mailhost, tmp_path):
    """A FIFO at the path used to freeze the whole server at the reload (a blocking open on
    the loop); an empty file replaced the table with nothing (0 users)."""
    passwd = tmp_path / "passwd-hup"
    passwd.write_text("alice:{PLAIN}alice-pw::::::\nbob:{PLAIN}bob-pw::::::\n")
    mailhost.maildir("alice")
    mailhost.maildir("bob")
    server = mailhost.serve("--passwd-file", str(passwd))
    session = noop_session(server)
    passwd.unlink()
    os.mkfifo(passwd)
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "not a regular file" in server.output(), timeout=30, what="FIFO refused")
    t0 = time.monotonic()
    assert session.cmd("NOOP") == b"+OK"
    assert time.monotonic() - t0 < 2.0
    assert logs_in(server, "alice", "alice-pw")

    passwd.unlink()
    passwd.write_text("# every user was removed by mistake\n")
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: "no valid user in the new file, keeping the old one" in server.output(),
             timeout=30, what="empty file refused")
    assert logs_in(server, "alice", "alice-pw")
    session.cmd("QUIT")


def test_reload_of_a_million_line_passwd_file_does_not_freeze_the_loop(mailhost, tmp_path):
    """Parsing 1,000,000 lines took 7.9 s on the loop (release build), during which no
    session was served. Now it runs on a thread of its own; NOOPs stay fast meanwhile, and
    SIGHUPs sent while it runs are coalesced into one more parse."""
    passwd = tmp_path / "passwd-big"
    passwd.write_text("alice:{PLAIN}alice-pw::::::\nbob:{PLAIN}bob-pw::::::\n")
    mailhost.maildir("alice")
    mailhost.maildir("bob")
    server = mailhost.serve("--passwd-file", str(passwd))
    session = noop_session(server)
    big = tmp_path / "passwd-big.new"
    with open(big, "w") as f:
        f.write("alice:{PLAIN}alice-pw::::::\nbob:{PLAIN}bob-pw::::::\n")
        for i in range(999_998):
            f.write(f"user{i:07d}:{{PLAIN}}pw{i}::::::\n")
    with NoopProbe(session, interval=0.01) as probe:
        os.replace(big, passwd)
        # Standard signals do not queue: each SIGHUP is sent once the previous one was read.
        for n in range(1, 4):
            os.kill(server.pid, signal.SIGHUP)
            wait_for(lambda: server.output().count("reloading") >= n, timeout=60, what=f"SIGHUP {n} handled")
        wait_for(lambda: "users=1000000" in server.output(), timeout=600, interval=0.2, what="reload done")
    rtts, errors = probe.rtts, probe.errors
    assert not errors, f"a NOOP failed or timed out during the reload: {errors}"
    assert len(rtts) >= 10, rtts
    print(f"\nNOOPs during the reload: {len(rtts)}, median {statistics.median(rtts) * 1000:.1f} ms,"
          f" max {max(rtts) * 1000:.1f} ms")
    # A debug build on a loaded 2-core machine: generous. Before the fix the loop was frozen
    # for the whole parse (seconds in a release build, far longer in a debug one).
    assert max(rtts) < 1.0, max(rtts)
    assert "reload already running: another follows it" in server.output()
    assert logs_in(server, "user0999997", "pw999997")
    session.cmd("QUIT")


def test_scram_proof_checks_run_off_the_loop(mailhost):
    """SCRAM's final step derives keys with PBKDF2 (4,096 iterations) for unknown users (the
    decoy) and PLAIN-stored ones; it ran on the loop, so 800 client-final messages arriving
    together froze every session for a second or more (issue 10). Now it runs on the
    hashing pool; a logged-in session's NOOPs stay fast meanwhile."""
    import base64
    from conftest import ALL_MECHANISMS, USERS
    server = mailhost.serve("--trusted-network", "127.0.0.0/8", env=ALL_MECHANISMS)
    mailhost.maildir("alice")
    probe_session = Raw(server.host, server.port)
    assert probe_session.login("alice", USERS["alice"]).startswith(b"+OK")
    finals = []
    for i in range(800):
        c = Raw(server.host, server.port, timeout=120)
        assert c.line().startswith(b"+OK")
        nonce = f"hostilenonce{i:04d}"
        bare = f"n=nobody{i},r={nonce}"
        r = c.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + bare).encode()).decode())
        assert r.startswith(b"+ "), r
        fields = dict(f.split("=", 1) for f in base64.b64decode(r[2:]).decode().split(","))
        final = f"c=biws,r={fields['r']},p={base64.b64encode(bytes(32)).decode()}"
        finals.append((c, base64.b64encode(final.encode()) + b"\r\n"))
    with NoopProbe(probe_session, interval=0.005) as probe:
        wait_for(lambda: len(probe.rtts) >= 5, timeout=30, what="probe running")
        for c, data in finals:
            c.send(data)
        replies = [c.line() for c, _ in finals]
        time.sleep(0.05)  # let the probe take one more sample after the last reply
    rtts, errors = probe.rtts, probe.errors
    assert not errors, errors
    assert all(r.startswith(b"-ERR") for r in replies), set(replies)
    assert any(r.startswith(b"-ERR [AUTH]") for r in replies), set(replies)
    print(f"\nNOOPs during 800 SCRAM proof checks: {len(rtts)}, median {statistics.median(rtts) * 1000:.1f} ms,"
          f" max {max(rtts) * 1000:.1f} ms")
    # 800 PBKDF2 runs are 1.5-5 s of CPU here; on the loop one NOOP waited for most of them.
    assert max(rtts) < 0.5, max(rtts)
    for c, _ in finals:
        c.close()
