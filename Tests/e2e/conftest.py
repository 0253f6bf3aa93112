import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maildata  # noqa: E402
from pop3support import Server  # noqa: E402
from pgsupport import pg, pg_cluster  # noqa: E402,F401  (PostgreSQL fixtures, test_sql.py)

USERS = {"alice": "secret-alice", "bob": "secret-bob", "carol": "secret-carol"}
# Every mechanism pop3d can offer; the default `auth_mechanisms` is only `plain login`.
ALL_MECHANISMS = {"POP3D_AUTH_MECHANISMS": "plain login cram-md5 scram-sha-256 apop"}


class MailHost:
    """A passwd-file and mail root in a temporary folder, and servers started on them."""

    def __init__(self, tmp_path):
        self.root = str(tmp_path)
        self.mail_root = os.path.join(self.root, "mail")
        os.makedirs(self.mail_root)
        self.passwd = maildata.write_passwd(os.path.join(self.root, "passwd"), USERS)
        self.servers = []

    def maildir(self, user):
        return maildata.ensure_maildir(os.path.join(self.mail_root, user, "Maildir"))

    def deliver(self, user, data, **kw):
        return maildata.deliver(self.maildir(user), data, **kw)

    def files(self, user):
        md = self.maildir(user)
        return sorted(os.listdir(os.path.join(md, "new")) + os.listdir(os.path.join(md, "cur")))

    def store_args(self):
        """The `pop3d serve` flags for this passwd-file and mail root."""
        return ["--passwd-file", self.passwd, "--mail", f"maildir:{self.mail_root}/%u/Maildir"]

    def serve(self, *extra, **kw):
        server = Server(self.store_args() + list(extra), self.root, **kw)
        self.servers.append(server)
        return server

    def stop_all(self):
        for s in self.servers:
            s.stop()


@pytest.fixture
def mailhost(tmp_path):
    host = MailHost(tmp_path)
    yield host
    host.stop_all()
