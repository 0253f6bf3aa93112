"""Benchmarks/compare.sh --smoke: builds release (slow only the first time), installs Dovecot
if it is missing, runs every scenario once against pop3d and Dovecot on tiny data, and must
exit 0 with one markdown table holding a number in every cell, also written to --out."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The smoke run itself takes well under 2 minutes; a cold `swift build -c release` and an
# apt-get install of Dovecot can take several more.
TIMEOUT = 1500
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?(e[-+]?\d+)? \(-?[\d,.e+-]+–-?[\d,.e+-]+\)$")
RATIO = re.compile(r"^-?\d[\d.,]*(e[-+]?\d+)?$")


def table_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2, text
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1]) <= set("|- "), lines[1]
    return header, [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_compare_smoke(tmp_path):
    out = tmp_path / "table.md"
    proc = subprocess.run([os.path.join(ROOT, "Benchmarks", "compare.sh"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    header, rows = table_rows(proc.stdout)
    assert header == ["metric", "pop3d median (min–max)", "dovecot median (min–max)", "pop3d/Dovecot"]
    labels = [row[0] for row in rows]
    for wanted in ("sessions/s, concurrency 1 ", "sessions/s, concurrency 16 ", "sessions/s, concurrency 128 ",
                   "NOOP/s, concurrency 100", "RETR MB/s", "cold", "warm", "KiB PSS per idle session",
                   "s to log in", "CPU ms per session", "p99 ms, NOOP"):
        assert any(wanted in label for label in labels), (wanted, labels)
    for row in rows:
        assert len(row) == 4, row
        assert NUMBER.match(row[1]) and NUMBER.match(row[2]), row
        assert RATIO.match(row[3]), row
    assert "Failures" not in proc.stdout
    assert out.read_text().strip() == proc.stdout.strip()
