#!/usr/bin/env python3
"""Login-index probes (issue 14), pop3d only, pinned as compare.py pins (server core 0,
pop3bench core 1), on data made by mkdata.py. Needs root (the data belongs to `pop3bench`).

  sudo python3 Benchmarks/login_index.py ab BEFORE_BIN AFTER_BIN [--rounds 5] [--huge2 N] [--server-cpus LIST]
      interleaved before/after of the login rows (10,000 and 100,000 messages, cold and warm),
      the two binaries alternating in order each round, one data set
  sudo python3 Benchmarks/login_index.py newmail [--bin BIN] [--rounds 5]
      10,000 messages: warm login, deliver one message, login, login again

Each figure is login+STAT+LIST+UIDL (the sum of the four latencies of one session), medians
(min-max) over the rounds."""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "e2e"))
import compare as c  # noqa: E402
import maildata  # noqa: E402


def make_data(huge, huge2):
    run = tempfile.mkdtemp(prefix="pop3-login-index.", dir="/tmp")
    data = os.path.join(run, "data")
    subprocess.run([sys.executable, os.path.join(HERE, "mkdata.py"), data, "--users", "16", "--idle", "1",
                    "--huge", str(huge), "--huge2", str(huge2), "--big-mib", "1"], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{c.BENCH_USER}:{c.BENCH_USER}", data], check=True)
    return run, data


def session(server, user):
    rep = c.pop3bench(server, "session", "--users", user, "--password", user, "--concurrency", 1,
                      "--count", 1, "--sample", 1)
    server.wait_quiet()
    lat = rep["latency_us"]
    return sum(lat[k]["max"] for k in ("login", "stat", "list", "uidl")) / 1000


def start(run, data, binary, cpus="0"):
    os.environ["COMPARE_POP3D_BIN"] = binary
    server = c.Pop3d(run, data, c.free_port(), cpus=cpus or None)
    server.start()
    return server


def show(results):
    for key, values in results.items():
        print(f"| {key} | {statistics.median(values):,.1f} ms ({min(values):,.1f}–{max(values):,.1f}) |")
    print("load average at the end:", " ".join(open("/proc/loadavg").read().split()[:3]))


def ab(a):
    run, data = make_data(10_000, a.huge2)
    bins = [("before", a.before), ("after", a.after)]
    results = {}
    for i in range(a.rounds):
        for name, binary in (bins if i % 2 == 0 else bins[::-1]):
            server = start(run, data, binary, a.server_cpus)
            try:
                for user in (("huge", "huge2") if a.huge2 > 1 else ("huge",)):
                    c.reset_huge(data, user)
                    for kind in ("cold", "warm"):
                        results.setdefault(f"{name} {user} {kind}", []).append(session(server, user))
            finally:
                server.stop()
    show(dict(sorted(results.items())))
    shutil.rmtree(run, ignore_errors=True)


def newmail(a):
    run, data = make_data(10_000, 1)
    server = start(run, data, a.bin)
    md = os.path.join(data, "mail", "huge", "Maildir")
    owner = os.stat(md)
    results = {"warm": [], "after one new message": [], "warm again": []}
    try:
        session(server, "huge")  # cold: writes the index
        for i in range(a.rounds):
            results["warm"].append(session(server, "huge"))
            path = maildata.deliver(md, maildata.message(i, body_size=1000))
            os.chown(path, owner.st_uid, owner.st_gid)
            results["after one new message"].append(session(server, "huge"))
            results["warm again"].append(session(server, "huge"))
    finally:
        server.stop()
    show(results)
    shutil.rmtree(run, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("ab")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--huge2", type=int, default=100_000, help="messages of the second Maildir (1: only the 10,000 one)")
    p.add_argument("--server-cpus", default="0",
                   help="taskset list for pop3d ('' = not pinned: cold reads on two threads can use both cores)")
    p = sub.add_parser("newmail")
    p.add_argument("--bin", default=os.path.join(c.ROOT, ".build/release/pop3d"))
    p.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("login_index.py: run as root")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ab(a) if a.mode == "ab" else newmail(a)


if __name__ == "__main__":
    main()
