"""Loop stall at a login whose Maildir holds a FIFO named pop3d.sizes: a probe session's
worst NOOP latency from the PASS until 3 s later (capped at 15 s: the old server stays frozen
until some process opens the FIFO for writing, which this script does at the cap).
NO_FIFO=1 gives the baseline (same login, no FIFO).

    POP3D_BIN=.build/release/pop3d python3 Benchmarks/maildir_fifo_probe.py 5"""
import os, sys, tempfile, time, threading
from probe_support import USERS, Raw, probe_host

def run():
    with tempfile.TemporaryDirectory() as tmp:
        host, fifo = probe_host(tmp)
        if not os.environ.get("NO_FIFO"): os.mkfifo(fifo)
        server = host.serve()
        try:
            probe = Raw(server.host, server.port, timeout=30)
            assert probe.login("bob", USERS["bob"]).startswith(b"+OK")
            alice = Raw(server.host, server.port, timeout=30)
            alice.line(); alice.cmd("USER alice")
            alice.send(f"PASS {USERS['alice']}\r\n".encode())
            t0 = time.monotonic()
            worst = 0.0
            probe.sock.settimeout(15)
            while time.monotonic() - t0 < 3:
                s = time.monotonic()
                try:
                    probe.cmd("NOOP")
                except TimeoutError:
                    worst = 15.0
                    break
                worst = max(worst, time.monotonic() - s)
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if os.path.exists(fifo) and not os.path.isfile(fifo) else None
            if fd is not None: os.close(fd)
            return worst
        finally:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK); os.close(fd)
            except OSError:
                pass
            server.stop()

results = sorted(run() for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
print("worst NOOP ms per run:", [round(r * 1000, 2) for r in results], "median:", round(results[len(results)//2] * 1000, 2))
