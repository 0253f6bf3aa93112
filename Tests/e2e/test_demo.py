"""`pop3d demo` as a newcomer meets it: its first start prints no warning (issue 10 item 6:
the demo sized max_connections for 50,000 sessions and warned about RLIMIT_NOFILE on every
start), whatever the descriptor limit of the shell it is started from."""
import poplib
import resource
import signal
import subprocess

import pytest

from pop3support import binary, free_port, port_open, wait_for


def run_demo(tmp_path, nofile):
    """Starts the demo with RLIMIT_NOFILE (soft and hard) set to `nofile`, logs in once,
    stops it with SIGTERM; returns its output."""
    port = free_port()

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([binary(), "demo", "--dir", str(tmp_path / "demo"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit)
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, what="demo server")
        assert proc.poll() is None, "demo exited at start"
        p = poplib.POP3("127.0.0.1", port, timeout=20)
        p.user("demo")
        p.pass_("demo")
        assert p.stat()[0] == 3
        p.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return out.decode()


@pytest.mark.parametrize("nofile", [None, 4096, 1100])
def test_demo_starts_without_warnings(tmp_path, nofile):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile is None:
        nofile = hard  # the shell's own limit, as a newcomer has it
    else:
        nofile = min(nofile, hard)
    out = run_demo(tmp_path, nofile)
    warnings = [line for line in out.splitlines() if " warning " in line or " error " in line]
    assert warnings == [], f"RLIMIT_NOFILE {nofile}:\n" + "\n".join(warnings)
