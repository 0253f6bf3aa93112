"""Loop stall at logins of a Maildir with a 60 MiB pop3d.sizes whose last line is broken:
a probe session's worst NOOP latency over two successive logins of alice (NOOPs sent back to
back from a thread), and the cache size after them.

    POP3D_BIN=.build/release/pop3d python3 Benchmarks/maildir_cache_probe.py 3"""
import os, sys, tempfile, time, threading
from probe_support import USERS, Raw, probe_host

def run():
    with tempfile.TemporaryDirectory() as tmp:
        host, cache = probe_host(tmp)
        line = b"4096 1700000000.0 4200 1700000000.M123456P789Q1.some-long-host-name.example.org\n"
        with open(cache, "wb") as f:
            f.write(b"pop3d-sizes 1\n" + line * (60 * 1024 * 1024 // len(line)) + b"4096 17")
        server = host.serve()
        try:
            probe = Raw(server.host, server.port, timeout=30)
            assert probe.login("bob", USERS["bob"]).startswith(b"+OK")
            lat = []; stop = threading.Event()
            def loop():
                while not stop.is_set():
                    s = time.monotonic(); probe.cmd("NOOP"); lat.append(time.monotonic() - s); time.sleep(0.001)
            t = threading.Thread(target=loop); t.start()
            time.sleep(0.2)
            logins = []
            for _ in range(2):
                a = Raw(server.host, server.port, timeout=30)
                s = time.monotonic()
                assert a.login("alice", USERS["alice"]).startswith(b"+OK")
                logins.append(round((time.monotonic() - s) * 1000, 1))
                a.cmd("QUIT")
            time.sleep(0.2); stop.set(); t.join()
            return max(lat), logins, os.path.getsize(cache)
        finally:
            server.stop()

for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    worst, logins, size = run()
    print(f"worst NOOP {worst*1000:.1f} ms, login ms {logins}, cache after: {size} octets")
