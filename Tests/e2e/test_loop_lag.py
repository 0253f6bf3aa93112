"""Issue 10, item 3: CPU- and I/O-heavy work does not run on the event loop. One test per
heavy path: a logged-in session sends NOOPs (one outstanding, 1 ms apart, from a child
process) while the path runs, and its NOOP p99 over the path's window must stay under
`P99_BOUND`; the server must log no loop-lag warning (`over loop_lag_warning`, from
Sources/Reactor/EventLoop+Lag.swift) during the window.

The paths, their sizes (the issue's) and the probe are those of Benchmarks/heavy_paths.py,
which measures the same in a release build for Benchmarks/RESULTS.md.

Why `P99_BOUND` is 50 ms and not the issue's 10 ms: the 10 ms goal is for a release build.
These tests run a debug build on a 2-core machine shared with other builds, where the heavy
path's own worker threads and the load generator compete with the loop for the two cores.
Measured here with the fixed debug build (load average 5-7): NOOP p99 0.2-20 ms and max up
to 44 ms under every path, baseline p99 up to 16 ms. 50 ms is the server's own default
`loop_lag_warning`, the turn length it calls a stall. The old main's release binary
(`POP3D_BIN=/tmp/before/pop3d`), whose loop ran the work, gave p99 = max (the loop was
frozen for the whole window, so only one to four NOOPs completed): 300 SCRAM decoys
0.3-1.0 s, the 100,000-user reload 0.4-3.2 s, the 10,000-message QUIT 135-260 ms; those three
tests fail on it. bcrypt already ran on the hashing pool in the old main: that test passes on
both binaries and guards against a regression.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "Benchmarks"))

import heavy_paths  # noqa: E402

# Seconds. See the module docstring.
P99_BOUND = 0.050


def check(name, tmp_path):
    size = heavy_paths.SIZES[name]
    result = heavy_paths.run_path(name, size, str(tmp_path / name))
    log = result.pop("log")
    print(f"\n{name} (size {size}): {result['count']} NOOPs in {result['window_s']:.2f} s, p50 "
          f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms")
    assert result["count"] >= 1, result
    assert result["p99_ms"] < P99_BOUND * 1000, (
        f"NOOP p99 {result['p99_ms']:.1f} ms while the {name} path ran: the loop was held up; {result}")
    warnings = [line for line in log.splitlines() if heavy_paths.LAG_WARNING in line]
    assert not warnings, warnings
    return result


def test_scram_decoys_do_not_hold_up_the_loop(tmp_path):
    """300 SCRAM-SHA-256 exchanges for unknown users with a bogus proof: the decoy's PBKDF2
    (4,096 iterations) runs on the hashing pool. Old main: on the loop, p99 0.3-1.0 s."""
    result = check("scram", tmp_path)
    assert result["decoys"] == heavy_paths.SIZES["scram"]


def test_bcrypt_logins_do_not_hold_up_the_loop(tmp_path):
    """20 concurrent USER/PASS logins of cost-12 bcrypt users (about 0.25 s of CPU each).
    Passes on the old main too: crypt(3) already ran on the pool there."""
    result = check("bcrypt", tmp_path)
    assert result["logins"] == heavy_paths.SIZES["bcrypt"]


def test_passwd_reload_does_not_hold_up_the_loop(tmp_path):
    """SIGHUP with a 100,000-user passwd-file in place: parsed on a worker, swapped in on the
    loop. Old main: p99 0.4-3.2 s."""
    check("reload", tmp_path)


def test_quit_deleting_many_messages_does_not_hold_up_the_loop(tmp_path):
    """QUIT after DELE of all 10,000 messages: the UPDATE state's unlinks run on a storage
    worker (the test also checks that every file is gone). Old main: p99 135-260 ms."""
    result = check("quit", tmp_path)
    assert result["deleted"] == heavy_paths.SIZES["quit"]

