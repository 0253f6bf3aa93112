"""fetchmail as the e2e tests run it: one poll of a test server, `keep`, no TLS, each message
delivered by an MDA into its own file."""
import os
import shutil
import subprocess

import pytest


def run_fetchmail(server, user, password, tmp_path):
    """Fetches `user`'s mail from `server` with fetchmail's defaults (`auth any`, UIDL) and
    returns (the completed fetchmail process, the folder holding one file per message)."""
    if not shutil.which("fetchmail"):
        pytest.fail("fetchmail is not installed (make test installs it)")
    out = tmp_path / "delivered"
    out.mkdir()
    home = tmp_path / "fmhome"
    home.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll {server.host} protocol pop3 port {server.port} uidl\n"
        f"  user {user} password \"{password}\" is root here\n"
        "  keep sslproto '' no sslcertck\n"
        f"  mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n")
    rc.chmod(0o600)
    env = dict(os.environ, FETCHMAILHOME=str(home), HOME=str(home))
    result = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "--all"],
                            capture_output=True, timeout=120, env=env)
    return result, out
