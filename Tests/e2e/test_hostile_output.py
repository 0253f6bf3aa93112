"""Hostile clients that cost the server output memory or loop time (issue 9, findings 1 and
10): a client that sends commands and never reads the replies, and a flood of replayed TLS
ClientHellos. Every flood is bounded in time and bytes and runs on loopback only.

Run as a script to measure (release builds, POP3D_BIN=...):
    python3 Tests/e2e/test_hostile_output.py capa-flood --seconds 15
    python3 Tests/e2e/test_hostile_output.py handshake-flood --seconds 10
"""
import collections
import os
import resource
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maildata  # noqa: E402
from conftest import USERS, MailHost  # noqa: E402
from pop3support import free_port, port_open, wait_for  # noqa: E402
from rawpop import Raw  # noqa: E402


def rss_kib(pid):
    """VmRSS of the process, KiB (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def capa_flood(host, port, seconds, login=None, stop_above_kib=None, pid=None):
    """One connection sends `CAPA` lines as fast as the socket takes them and never reads.
    Stops after `seconds`, or once the server's RSS passes `stop_above_kib` (so a failing
    server is not driven into the OOM killer). Returns (bytes sent, closed by the server)."""
    raw = Raw(host, port)
    if login:
        raw.login(*login)
    sock = raw.sock
    sock.setblocking(False)
    block = b"CAPA\r\n" * 1024
    sent = 0
    offset = 0
    closed = False
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_WRITE)
    next_check = 0.0
    try:
        while time.monotonic() < deadline:
            if pid and stop_above_kib and time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.1
                if rss_kib(pid) > stop_above_kib:
                    break
            try:
                n = sock.send(block[offset:])
            except BlockingIOError:
                sel.select(timeout=0.05)
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += n
            offset = (offset + n) % len(block)
    finally:
        sel.close()
    return sent, closed, raw


def noop_latencies(raw, count, pause=0.0):
    """Seconds each NOOP took, in order."""
    out = []
    for _ in range(count):
        start = time.monotonic()
        reply = raw.cmd("NOOP")
        out.append(time.monotonic() - start)
        assert reply.startswith(b"+OK"), reply
        if pause:
            time.sleep(pause)
    return out


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def client_hello():
    """A real ClientHello (TLS 1.3 capable, as Python's default context sends it), taken from
    a memory BIO: the bytes a flood replays on every connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 200, hello[:16]
    return hello


class HandshakeFlood:
    """Opens connections to an implicit-TLS port, sends the same ClientHello on each and never
    reads; keeps at most `max_open` open (closing the oldest), at most `rate` new connections a
    second, for at most `seconds` and `max_total` connections."""

    def __init__(self, host, port, hello, max_open=400, rate=None, max_total=200_000):
        self.host, self.port, self.hello = host, port, hello
        self.max_open, self.rate, self.max_total = max_open, rate, max_total
        self.opened = 0
        self.failed = 0

    def run(self, seconds):
        """Floods for `seconds`; returns the connections opened."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < self.max_open + 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, self.max_open + 1024), hard))
        open_socks = collections.deque()
        start = time.monotonic()
        deadline = start + seconds
        try:
            while time.monotonic() < deadline and self.opened < self.max_total:
                if self.rate:
                    wait = start + self.opened / self.rate - time.monotonic()
                    if wait > 0:
                        time.sleep(min(wait, 0.01))
                        continue
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.settimeout(2)
                try:
                    s.connect((self.host, self.port))
                    s.setblocking(False)
                    s.send(self.hello)
                except OSError:
                    self.failed += 1
                    s.close()
                    continue
                self.opened += 1
                open_socks.append(s)
                while len(open_socks) > self.max_open:
                    open_socks.popleft().close()
        finally:
            for s in open_socks:
                s.close()
        return self.opened


def make_cert(directory, ecdsa=False):
    cert = os.path.join(directory, "flood.crt")
    key = os.path.join(directory, "flood.key")
    algo = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if ecdsa else ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *algo, "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def serve_tls(mailhost, tmp, ecdsa=False, env=None):
    cert, key = make_cert(str(tmp), ecdsa)
    tls_port = free_port()
    server = mailhost.serve("--listen-tls", f"127.0.0.1:{tls_port}", "--tls-cert", cert,
                            "--tls-key", key, env=env)
    wait_for(lambda: port_open("127.0.0.1", tls_port), what="TLS port")
    return server, tls_port


def tls_greeting_seconds(port):
    """A real client: connect, TLS handshake, greeting; the seconds it took."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.makefile("rb").readline().startswith(b"+OK")
    return time.monotonic() - start


def measure_noop_under_flood(server, tls_port, seconds, rate=None, max_open=400, real_clients=None):
    """A logged-in plain session sends a NOOP every 5 ms (from its own thread) while the flood
    runs; returns (NOOP latencies in seconds, connections opened). With `real_clients` (a
    list), a third thread makes real TLS connections one after the other and appends the
    seconds each took to reach the greeting."""
    probe = Raw(server.host, server.port)
    assert probe.login("alice", USERS["alice"]).startswith(b"+OK")
    noop_latencies(probe, 5)
    latencies = []
    done = threading.Event()

    def probing():
        time.sleep(min(1.0, seconds / 4))  # let the flood build up first
        while not done.is_set():
            latencies.extend(noop_latencies(probe, 1))
            done.wait(0.005)

    def real():
        time.sleep(min(1.0, seconds / 4))
        while not done.is_set():
            try:
                real_clients.append(tls_greeting_seconds(tls_port))
            except OSError:
                real_clients.append(float("inf"))

    thread = threading.Thread(target=probing, daemon=True)
    thread.start()
    real_thread = None
    if real_clients is not None:
        real_thread = threading.Thread(target=real, daemon=True)
        real_thread.start()
    flood = HandshakeFlood("127.0.0.1", tls_port, client_hello(), max_open=max_open, rate=rate)
    try:
        opened = flood.run(seconds)
    finally:
        done.set()
        thread.join(timeout=30)
        if real_thread:
            real_thread.join(timeout=60)
    probe.cmd("QUIT")
    probe.close()
    return latencies, opened


# ---------------------------------------------------------------------------------------
# Tests

def settle_rss(pid, seconds=1.0):
    time.sleep(seconds)  # the reading itself is what we compare; no condition to wait for
    return rss_kib(pid)


def test_capa_flood_before_login_is_closed_and_costs_no_memory(mailhost):
    """Finding 1 (regression): one unauthenticated connection sends CAPA over and over and
    never reads. It used to grow the server by ~110 MB/s until the OOM killer came. Now the
    connection is closed once more than `max_unauthenticated_output_bytes` wait behind a full
    socket, the server's RSS stays within a few MiB, and a logged-in session is served."""
    mailhost.deliver("alice", maildata.message(1))
    server = mailhost.serve()
    probe = Raw(server.host, server.port)
    assert probe.login("alice", USERS["alice"]).startswith(b"+OK")
    noop_latencies(probe, 20)
    base = rss_kib(server.pid)
    sent, closed, raw = capa_flood(server.host, server.port, seconds=6,
                                   stop_above_kib=base + 64 * 1024, pid=server.pid)
    during = rss_kib(server.pid)
    latencies = noop_latencies(probe, 20)
    if not closed:
        closed = raw.closed(timeout=10)
    raw.close()
    after = rss_kib(server.pid)
    assert during - base < 8 * 1024, f"RSS grew {base} -> {during} KiB during the flood ({sent} bytes sent)"
    assert after - base < 8 * 1024, f"RSS {base} -> {after} KiB after the flood"
    assert closed, f"the flooding connection is still open after sending {sent} bytes"
    assert max(latencies) < 1.0, latencies
    assert "output limit exceeded before login" in server.output()
    assert probe.cmd("QUIT").startswith(b"+OK")


def test_capa_flood_after_login_is_throttled_not_buffered(mailhost):
    """Finding 1, logged in: the same flood from a session that logged in. The connection stays
    open but reads nothing more once `max_output_bytes` are pending, so TCP backpressure stops
    the client (its sends block) and the server's RSS stays within a few MiB; once the client
    reads, every reply arrives."""
    mailhost.deliver("alice", maildata.message(1))
    server = mailhost.serve()
    probe = Raw(server.host, server.port)
    assert probe.login("bob", USERS["bob"]).startswith(b"+OK")
    noop_latencies(probe, 20)
    base = rss_kib(server.pid)
    sent, closed, raw = capa_flood(server.host, server.port, seconds=6,
                                   login=("alice", USERS["alice"]),
                                   stop_above_kib=base + 64 * 1024, pid=server.pid)
    during = rss_kib(server.pid)
    latencies = noop_latencies(probe, 20)
    assert not closed
    assert during - base < 8 * 1024, f"RSS grew {base} -> {during} KiB during the flood ({sent} bytes sent)"
    # Loopback buffers hold a few MB; without backpressure six seconds carry hundreds of MB.
    assert sent < 64 << 20, f"{sent} bytes accepted from a client that never reads"
    assert max(latencies) < 1.0, latencies
    # The client now reads: the throttle lifts and the replies keep coming (1,000 of them
    # checked; all of them would be hundreds of MB).
    raw.sock.setblocking(True)
    raw.sock.settimeout(30)
    answered = 0
    while answered < 1000:
        line = raw.line()
        if line.startswith(b"+OK"):
            answered += 1
        else:
            assert line == b"." or not line.startswith(b"-ERR"), line
    raw.close()
    assert probe.cmd("QUIT").startswith(b"+OK")


def test_handshake_flood_does_not_starve_a_logged_in_session(mailhost, tmp_path):
    """Finding 10 (regression): replayed ClientHellos from many connections, each costing the
    server a signature. With at most `tls_handshakes_per_turn` handshake steps per turn of the
    loop, a logged-in session's NOOP is answered between them instead of after a batch of up
    to 256 handshakes. Bounds are generous (debug build, shared machine); the flood is bounded
    in time (8 s), rate (1,500 connections/s, above what the old loop could answer) and open
    connections. Measured on a loaded 2-core machine: the old release build answered with a
    median of 94-142 ms (p99 154-281 ms), this one's debug build with 6-10 ms (p99 44-64 ms):
    the median bound is what tells them apart; the p99 bound only says no NOOP starved."""
    server, tls_port = serve_tls(mailhost, tmp_path, env={"POP3D_MAX_CONNECTIONS_PER_IP": "5000"})
    latencies, opened = measure_noop_under_flood(server, tls_port, seconds=8, rate=1500, max_open=1500)
    p50 = percentile(latencies, 50)
    p99 = percentile(latencies, 99)
    print(f"handshake flood: {opened} connections, {len(latencies)} NOOPs, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert opened > 5000, "the flood did not get going"
    assert len(latencies) >= 20
    assert p50 < 0.075, f"NOOP median {p50 * 1000:.1f} ms under a handshake flood"
    assert p99 < 0.5, f"NOOP p99 {p99 * 1000:.1f} ms under a handshake flood"
    # Handshakes still complete under the budget: a real client gets in.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            f = t.makefile("rb")
            assert f.readline().startswith(b"+OK")


def test_loop_lag_is_measured_and_warned(mailhost):
    """Issue 10: a turn longer than `loop_lag_warning` logs a warning naming what ran. A 1 ms
    limit makes an ordinary login's turn (a passwd lookup and a maildrop listing, debug build)
    cross it; the warning appears once, not once per turn (rate limit)."""
    for i in range(200):
        mailhost.deliver("alice", maildata.message(i + 1))
    server = mailhost.serve(env={"POP3D_LOOP_LAG_WARNING": "1"})
    for _ in range(3):
        raw = Raw(server.host, server.port)
        assert raw.login("alice", USERS["alice"]).startswith(b"+OK")
        raw.cmd("LIST")
        raw.multiline()
        raw.cmd("QUIT")
        raw.close()
    wait_for(lambda: "event loop turn took" in server.output(), timeout=10, what="lag warning")
    out = server.output()
    assert out.count("event loop turn took") == 1, out
    assert "slowest" in out


# ---------------------------------------------------------------------------------------
# Measurement CLI (release builds): before/after figures for the report.

def _cli():
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["capa-flood", "handshake-flood", "stalled-handshakes"])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--hello", action="store_true", help="stalled after sending a ClientHello")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--max-open", type=int, default=400)
    parser.add_argument("--ecdsa", action="store_true")
    parser.add_argument("--login", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        host = MailHost(tmp)
        host.deliver("alice", maildata.message(1))
        try:
            if args.what == "capa-flood":
                server = host.serve()
                probe = Raw(server.host, server.port)
                probe.login("bob", USERS["bob"])
                noop_latencies(probe, 20)
                base = rss_kib(server.pid)
                sent, closed, raw = capa_flood(server.host, server.port, args.seconds,
                                               login=("alice", USERS["alice"]) if args.login else None,
                                               stop_above_kib=3 * 1024 * 1024, pid=server.pid)
                during = rss_kib(server.pid)
                lat = noop_latencies(probe, 50)
                raw.close()
                time.sleep(2)
                after = rss_kib(server.pid)
                print(f"capa flood {args.seconds:.0f}s login={args.login}: sent {sent / 1e6:.1f} MB, "
                      f"closed={closed}, RSS {base / 1024:.1f} -> {during / 1024:.1f} MiB "
                      f"(2 s after the client left: {after / 1024:.1f} MiB), probe NOOP "
                      f"p50 {percentile(lat, 50) * 1000:.2f} ms p99 {percentile(lat, 99) * 1000:.2f} ms")
            elif args.what == "stalled-handshakes":
                server, tls_port = serve_tls(host, tmp, ecdsa=args.ecdsa,
                                             env={"POP3D_MAX_CONNECTIONS_PER_IP": "50000"})
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))
                hello = client_hello()
                # Warm up: a few connections so one-time allocations are not counted.
                warm = [socket.create_connection(("127.0.0.1", tls_port)) for _ in range(50)]
                for s in warm:
                    if args.hello:
                        s.send(hello)
                time.sleep(1)
                for s in warm:
                    s.close()
                time.sleep(1)
                base = rss_kib(server.pid)
                socks = []
                for _ in range(args.count):
                    s = socket.create_connection(("127.0.0.1", tls_port))
                    if args.hello:
                        s.send(hello)
                    socks.append(s)
                time.sleep(2)  # the server accepts and answers; nothing to wait for but time
                grown = rss_kib(server.pid) - base
                print(f"{args.count} stalled implicit-TLS handshakes ({'after a ClientHello' if args.hello else 'silent'}, "
                      f"{'ECDSA' if args.ecdsa else 'RSA-2048'}): RSS +{grown / 1024:.1f} MiB, "
                      f"{grown * 1024 / args.count / 1000:.1f} KB each")
                for s in socks:
                    s.close()
            else:
                server, tls_port = serve_tls(host, tmp, ecdsa=args.ecdsa,
                                             env={"POP3D_MAX_CONNECTIONS_PER_IP": "5000"})
                real = []
                lat, opened = measure_noop_under_flood(server, tls_port, args.seconds,
                                                       rate=args.rate, max_open=args.max_open,
                                                       real_clients=real)
                print(f"handshake flood {args.seconds:.0f}s ({'ECDSA' if args.ecdsa else 'RSA-2048'}, "
                      f"rate {args.rate or 'max'}): {opened} connections ({opened / args.seconds:.0f}/s), "
                      f"{len(lat)} NOOPs: p50 {percentile(lat, 50) * 1000:.1f} ms, "
                      f"p99 {percentile(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms; "
                      f"{len(real)} real TLS clients to greeting: p50 {percentile(real, 50) * 1000:.0f} ms, "
                      f"max {max(real or [0]) * 1000:.0f} ms")
        finally:
            host.stop_all()


if __name__ == "__main__":
    _cli()
