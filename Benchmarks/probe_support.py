"""Shared set-up of the Maildir probes (maildir_cache_probe.py, maildir_fifo_probe.py): the
e2e helpers on the path, and a mail host where bob has one message (the probe session's
maildrop) and alice three with size fields (the maildrop the probes make hostile)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "e2e"))
import maildata  # noqa: E402
from conftest import MailHost, USERS  # noqa: E402,F401
from rawpop import Raw  # noqa: E402,F401


def probe_host(tmp):
    """A MailHost in `tmp` with bob's one message and alice's three; returns the host and
    the path of alice's `pop3d.sizes` (not created)."""
    host = MailHost(tmp)
    host.deliver("bob", maildata.message(1))
    for i in range(3):
        host.deliver("alice", maildata.message(i), size_fields=True)
    return host, os.path.join(host.maildir("alice"), "pop3d.sizes")
