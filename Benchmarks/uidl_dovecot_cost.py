"""What reading dovecot-uidlist costs a login (issue 14): login+UIDL of N messages (default
100,000; names with S=/W=, so no message is read) with uidl_format maildir and dovecot (list
present, warm), interleaved, medians of 11, and the first dovecot login, which creates the
N-record list. Release binary (swift build -c release), as root:
    python3 Benchmarks/uidl_dovecot_cost.py [N]"""
import os, sys, time, statistics, tempfile, pathlib, shutil
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "e2e"))
os.environ.setdefault("POP3D_BIN", os.path.join(ROOT, ".build", "release", "pop3d"))
from conftest import MailHost
from rawpop import Raw
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
root = tempfile.mkdtemp(prefix="uidl-measure-", dir="/tmp")
m = MailHost(pathlib.Path(root))
md = m.maildir("alice")
body = b"Subject: x\n\nbody line\n"
w = len(body) + body.count(b"\n")
for i in range(N):
    name = f"{1_700_000_000 + i // 10}.M{i % 10}P1Q{i}.mail.example.org,S={len(body)},W={w}"
    with open(os.path.join(md, "new", name), "wb") as f:
        f.write(body)

def session(port):
    t0 = time.monotonic()
    c = Raw("127.0.0.1", port, timeout=120)
    assert c.login("alice", "secret-alice").startswith(b"+OK")
    assert c.cmd("UIDL").startswith(b"+OK")
    lines = c.multiline()
    t1 = time.monotonic()
    c.cmd("QUIT"); c.close()
    assert len(lines) == N, len(lines)
    return (t1 - t0) * 1000, lines

res = {"maildir": [], "dovecot warm": []}
a = m.serve(env={"POP3D_UIDL_FORMAT": "maildir"})
session(a.port)  # warm the size cache / page cache
b = m.serve(env={"POP3D_UIDL_FORMAT": "dovecot"})
first, lines = session(b.port)
res["dovecot first login (creates the list)"] = [first]
print("list octets", os.path.getsize(os.path.join(md, "dovecot-uidlist")), lines[0], lines[-1])
for _ in range(11):
    res["maildir"].append(session(a.port)[0])
    res["dovecot warm"].append(session(b.port)[0])
a.stop(); b.stop()
for k, v in res.items():
    print(f"{k}: median {statistics.median(v):.0f} ms (min {min(v):.0f}, max {max(v):.0f}, n={len(v)})")
shutil.rmtree(root)
