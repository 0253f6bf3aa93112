"""A throwaway PostgreSQL cluster for the end-to-end tests of `passdb: sql` (issue 15), the way
Tests/SQLTests/Cluster.swift makes one: `initdb` into a fresh folder under /tmp (as `postgres`
through runuser when the tests run as root: initdb refuses root), the server listening only on a
Unix socket in that folder (`-k dir -h ''`), stopped by the PID in `postmaster.pid`, the folder
removed at the end. Never the system's cluster. Debian's binaries are in
/usr/lib/postgresql/<major>/bin (not on PATH); `make test` installs them. A missing binary fails
the test (never a skip).

The table is PostfixAdmin's `mailbox` (the columns pop3d's README example reads):
`username text primary key, password text, maildir text, active boolean, domain text`."""
import os
import pwd
import shutil
import signal
import subprocess
import tempfile

import pytest

from pop3support import binary, wait_for

# Seconds: initdb plus a start take 1-3 s here; a debug-build test machine may be loaded.
PG_START_TIMEOUT = 60
# Seconds a fast shutdown (SIGINT) may take before the test fails.
PG_STOP_TIMEOUT = 30
# Seconds one psql run may take (the 1,000-user insert included).
PSQL_TIMEOUT = 60
USER = "pop3test"


def pg_bin_dir():
    """The newest /usr/lib/postgresql/<major>/bin with initdb; fails the test when none."""
    for major in ("17", "16", "15", "14", "13"):
        d = f"/usr/lib/postgresql/{major}/bin"
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    pytest.fail("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
                "(make test installs postgresql: apt-get install postgresql)")


def sql_literal(text):
    """A standard-conforming SQL string literal (quotes doubled), for test-written SQL only."""
    return "'" + text.replace("'", "''") + "'"


class PgCluster:
    """One cluster in `self.dir` (/tmp/pop3d-pg.XXXXXX: short, as a Unix socket path must be
    under 108 octets), data in `dir/data`, the server's log in `dir/server.log`.
    `conninfo` is what pop3d's `sql_connect` takes."""

    def __init__(self):
        self.bin = pg_bin_dir()
        self.dir = tempfile.mkdtemp(prefix="pop3d-pg.", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.pid = None
        self.as_postgres = os.getuid() == 0
        if self.as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root and there is no `postgres` user to run initdb as")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER, "-A", "trust",
                   "-E", "UTF8", "--no-sync"], "initdb")
        self.start_server()

    @property
    def conninfo(self):
        return f"host={self.dir} dbname=postgres user={USER}"

    def _run(self, args, what):
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--"] + args
        r = subprocess.run(args, capture_output=True, text=True, timeout=PG_START_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            pytest.fail(f"{what} failed ({r.returncode}): {r.stdout}\n{r.stderr}\n{self.server_log()}")
        return r

    def server_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # MARK: - the server process

    def start_server(self):
        """pg_ctl start (waits until it accepts connections); the data is kept across stops."""
        assert self.pid is None, "already running"
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", f"-k {self.dir} -h ''",
                   "-l", self.log_path, "-w", "-t", str(PG_START_TIMEOUT), "start"], "pg_ctl start")
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def stop_server(self):
        """Fast shutdown (SIGINT: open sessions are ended) by PID; waits with a deadline."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return

        def gone():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False
        wait_for(gone, timeout=PG_STOP_TIMEOUT, what=f"postmaster {pid} to exit")

    def restart(self):
        self.stop_server()
        self.start_server()

    @property
    def running(self):
        return self.pid is not None

    def stop(self):
        """Stops the server and removes the folder."""
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)

    # MARK: - SQL

    def psql(self, sql):
        """Runs `sql` (one or more statements) through psql as the cluster's superuser; stops at
        the first error (a failure of the test). Returns the rows, unaligned, `|` between
        fields."""
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-U", USER, "-d", "postgres",
                            "-f", "-"], input=sql, capture_output=True, text=True, timeout=PSQL_TIMEOUT)
        if r.returncode != 0:
            raise AssertionError(f"psql failed ({r.returncode}): {r.stderr}\nSQL: {sql[:2000]}")
        return r.stdout

    def scalar(self, sql):
        return self.psql(sql).strip()

    def client_backends(self):
        """Client connections other than this query's own (pop3d's, while it runs)."""
        return int(self.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                               "'client backend' AND pid <> pg_backend_pid();"))

    def terminate_backends(self):
        """pg_terminate_backend on every other client connection; returns how many."""
        return int(self.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();"))


def hash_secret(password, scheme):
    """`pop3d hash-password --scheme SCHEME`: the `{SCHEME}...` secret the server verifies."""
    r = subprocess.run([binary(), "hash-password", "--scheme", scheme], input=password + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (scheme, r.stderr)
    secret = r.stdout.strip()
    assert secret.startswith("{" + scheme + "}"), secret
    return secret


class MailboxTable:
    """The PostfixAdmin-style `mailbox` table in `cluster`, Maildirs under `mail_root`
    (`maildir` = `domain/local/`, as PostfixAdmin writes it), and the query pop3d runs."""

    SCHEMA = """
DROP VIEW IF EXISTS mailbox_v CASCADE;
DROP TABLE IF EXISTS mailbox, mail_override CASCADE;
DROP FUNCTION IF EXISTS slow_password(text, text) CASCADE;
DROP FUNCTION IF EXISTS slow_lookup(text) CASCADE;
CREATE TABLE mailbox (username text PRIMARY KEY, password text NOT NULL, maildir text NOT NULL,
                      active boolean NOT NULL DEFAULT true, domain text NOT NULL);
-- A per-user mail location (the optional `mail` column), kept out of PostfixAdmin's table.
CREATE TABLE mail_override (username text PRIMARY KEY, mail text NOT NULL);
"""

    def __init__(self, cluster, mail_root):
        self.pg = cluster
        self.mail_root = mail_root
        os.makedirs(mail_root, exist_ok=True)
        cluster.psql(self.SCHEMA)
        self.create_view()

    def add(self, user, secret, active=True, maildir=None):
        """One row; `secret` is the `{SCHEME}...` text. Makes the user's Maildir; returns it."""
        local, _, domain = user.rpartition("@")
        maildir = maildir or f"{domain}/{local}/"
        self.pg.psql(f"INSERT INTO mailbox VALUES ({sql_literal(user)}, {sql_literal(secret)}, "
                     f"{sql_literal(maildir)}, {'true' if active else 'false'}, {sql_literal(domain)});")
        return self.maildir_path(maildir)

    def add_plain_users(self, users):
        """users: {name: password}, {PLAIN} secrets, in one COPY; makes every Maildir."""
        rows = []
        for user, password in users.items():
            local, _, domain = user.rpartition("@")
            maildir = f"{domain}/{local}/"
            rows.append("\t".join([user, "{PLAIN}" + password, maildir, "t", domain]))
            self.maildir_path(maildir)
        self.pg.psql("COPY mailbox FROM STDIN;\n" + "\n".join(rows) + "\n\\.\n")

    def maildir_path(self, maildir):
        path = os.path.join(self.mail_root, maildir)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        return path

    def override_mail(self, user, mail):
        self.pg.psql(f"INSERT INTO mail_override VALUES ({sql_literal(user)}, {sql_literal(mail)});")

    def count(self):
        return int(self.pg.scalar("SELECT count(*) FROM mailbox;"))

    def make_slow(self, user, seconds):
        """Makes the lookup of `user` take `seconds` (pg_sleep in `slow_password`, which the
        view calls for the matched row only): other users' lookups stay fast."""
        self.pg.psql(f"""
CREATE OR REPLACE FUNCTION slow_password(u text, p text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF u = {sql_literal(user)} THEN PERFORM pg_sleep({float(seconds)}); END IF;
  RETURN p;
END $$;""")

    def create_view(self):
        """`mailbox_v`: the table plus the `mail` override, the password through
        `slow_password` (fast until `make_slow`). `query()` reads the view."""
        self.pg.psql("""
CREATE OR REPLACE FUNCTION slow_password(u text, p text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN RETURN p; END $$;
CREATE VIEW mailbox_v AS
  SELECT m.username, slow_password(m.username, m.password) AS password, m.maildir, m.active,
         m.domain, o.mail
  FROM mailbox m LEFT JOIN mail_override o ON o.username = m.username;
""")

    def query(self):
        """The `sql_password_query`: PostfixAdmin's README example, home = root + maildir, plus
        the optional `mail` column (NULL = the global `mail` location)."""
        return (f"SELECT password, {sql_literal(self.mail_root + '/')} || maildir AS home, mail "
                "FROM mailbox_v WHERE username = $1 AND active")


@pytest.fixture(scope="module")
def pg_cluster():
    """One cluster per test module (a start costs 1-3 s); tests that stop it start it again."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg(pg_cluster):
    """The module's cluster, started again if a test stopped it (each test makes its own
    schema: `MailboxTable`)."""
    if not pg_cluster.running:
        pg_cluster.start_server()
    return pg_cluster
