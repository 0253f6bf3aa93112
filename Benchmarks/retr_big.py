#!/usr/bin/env python3
"""RETR of one big message, several pop3d binaries side by side in one run (issue 17):

    sudo python3 Benchmarks/retr_big.py --runs 5 /tmp/before/pop3d .build/release/pop3d

compare.py's `retr-big` row alone: the data is mkdata.py's `big` user (one message of
--mib MiB, 10 by default, LF line ends as Postfix stores them); per run each binary in turn
(the order alternates from run to run) gets a fresh server pinned to core 0 (`taskset -c 0`)
and `pop3bench retr-big` pinned to core 1 (one connection, --commands RETRs of the message,
50 by default); MB/s = 10^6 octets as LIST counts them / elapsed. The server's CPU seconds
(utime+stime from /proc) over the pop3bench run are reported too, as CPU ms per RETR.

Prints one markdown table: per binary the median (min-max) of the runs. Every pop3bench run
must end with zero errors, or the script exits 1.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+", help="pop3d binaries to compare (release builds)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=10)
    ap.add_argument("--commands", type=int, default=50)
    a = ap.parse_args()
    run = tempfile.mkdtemp(prefix="pop3-retr-big.", dir="/tmp")
    data = os.path.join(run, "data")
    subprocess.run([sys.executable, os.path.join(compare.HERE, "mkdata.py"), data, "--users", "1", "--messages", "1",
                    "--huge", "0", "--huge2", "0", "--big-mib", str(a.mib), "--idle", "0"], check=True)
    os.chmod(run, 0o755)
    subprocess.run(["chown", "-R", f"{compare.BENCH_USER}:{compare.BENCH_USER}", data], check=True)
    results = {b: {"mbs": [], "cpu": []} for b in a.binaries}
    failures = []
    for i in range(a.runs):
        order = a.binaries if i % 2 == 0 else list(reversed(a.binaries))
        for binary in order:
            server = compare.Pop3d(run, data, compare.free_port(), binary=os.path.abspath(binary))
            try:
                server.start()
                before = server.cpu()
                rep = compare.pop3bench(server, "retr-big", "--users", "big", "--password", "big",
                                        "--concurrency", 1, "--count", 1, "--commands", a.commands)
                server.wait_quiet()
                cpu = server.cpu() - before
                results[binary]["mbs"].append(rep["throughput"]["retr_mb_per_s"])
                results[binary]["cpu"].append(cpu / a.commands * 1000)
                compare.log(f"run {i + 1}: {binary}: {rep['throughput']['retr_mb_per_s']:.0f} MB/s, "
                            f"{cpu / a.commands * 1000:.2f} CPU ms per RETR")
            except (compare.BenchError, TimeoutError, RuntimeError) as e:
                failures.append(f"run {i + 1}, {binary}: {e}")
            finally:
                server.stop()
    lines = [f"RETR of a {a.mib} MiB message, {a.commands} RETRs per run, {a.runs} runs, median (min–max)", "",
             "| binary | RETR MB/s | server CPU ms per RETR |", "|---|---|---|"]
    for binary, r in results.items():
        cells = []
        for key in ("mbs", "cpu"):
            v = r[key]
            cells.append(f"{compare.fmt(statistics.median(v))} ({compare.fmt(min(v))}–{compare.fmt(max(v))})" if v else "–")
        lines.append(f"| {binary} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if failures:
        print("\nFailures:\n" + "".join(f"- {f}\n" for f in failures))
    shutil.rmtree(run, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
