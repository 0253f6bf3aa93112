#!/usr/bin/env python3
"""NOOP latency of a logged-in session while SIGHUP reloads a 1,000,000-line passwd-file
(issue 9, finding 9). Loopback only; one reload; stops by itself.

    python3 Benchmarks/reload_probe.py /tmp/before/pop3d
    python3 Benchmarks/reload_probe.py .build/release/pop3d
"""
import os, shutil, signal, sys, threading, time, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "e2e"))
from pop3support import Server, wait_for
from rawpop import Raw
binary = os.path.abspath(sys.argv[1])
os.environ["POP3D_BIN"] = binary
root = tempfile.mkdtemp(prefix="reload-")
for u in ("bob",):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(f"{root}/mail/{u}/Maildir/{sub}")
passwd = f"{root}/passwd"
open(passwd, "w").write("bob:{PLAIN}bob-pw::::::\n")
big = passwd + ".new"
with open(big, "w") as f:
    f.write("bob:{PLAIN}bob-pw::::::\n")
    for i in range(999_999):
        f.write(f"user{i:07d}:{{PLAIN}}pw{i}::::::\n")
s = Server(["--passwd-file", passwd, "--mail", f"maildir:{root}/mail/%u/Maildir"], root)
r = Raw(s.host, s.port, timeout=120)
assert r.login("bob", "bob-pw").startswith(b"+OK")
os.replace(big, passwd)
rtts = []
stop = threading.Event()
def probe():
    while not stop.is_set():
        t0 = time.monotonic(); assert r.cmd("NOOP") == b"+OK"; rtts.append(time.monotonic() - t0); time.sleep(0.01)
th = threading.Thread(target=probe); th.start()
time.sleep(0.2)
t0 = time.monotonic()
os.kill(s.pid, signal.SIGHUP)
wait_for(lambda: "users=1000000" in s.output(), timeout=300, interval=0.05)
done = time.monotonic() - t0
time.sleep(0.2); stop.set(); th.join()
rtts.sort()
print(f"{binary}: reload of 1,000,000 lines done after {done:.2f} s; NOOP max {rtts[-1]*1000:.1f} ms, p99 {rtts[int(len(rtts)*0.99)]*1000:.1f} ms, n={len(rtts)}")
s.stop()
shutil.rmtree(root, ignore_errors=True)
