"""Two pop3d hosts behind a real HAProxy (issue 11), in network namespaces of this test.

Topology (every name starts with a per-run prefix; torn down in a finalizer even on failure):

    client ns  10.211.1.2 (good client), 10.211.1.3 (attacker)
        | veth
    balancer ns 10.211.1.1 | 10.211.2.1 ---veth--- host a ns 10.211.2.2  pop3d
                           | 10.211.3.1 ---veth--- host b ns 10.211.3.2  pop3d

Nothing is routed: HAProxy terminates the client's TCP connection, so the client namespace can
reach only the balancer, and no namespace has a route to the machine's own interfaces. Both
pop3d hosts serve the SAME passwd-file and Maildir folder (a temporary folder) with
`--proxy-network <balancer's address on their link>/32`. HAProxy runs the configuration of the
README's "Running several hosts" section (read from the README, so the two cannot drift), plus
test-only parts: a stats socket (to wait for health-check states), a loopback bind for
pop3bench (it only targets loopback), and two frontends pinned to one host each (to make a
session land on a chosen host).

Plaintext logins: pop3d's default `disable_plaintext_auth` refuses USER/PASS from a client that
is neither TLS nor local nor trusted, which every client here is. Scenario 3 runs with that
default; the others set POP3D_DISABLE_PLAINTEXT_AUTH=false rather than `trusted_networks`,
because trusted networks are exempt from login penalties, which scenario 2 measures.
"""
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

import maildata
from conftest import USERS
from pop3support import LoggedProcess, ROOT, binary, wait_for
from rawpop import Raw

CLIENT, ATTACKER, LB_FRONT = "10.211.1.2", "10.211.1.3", "10.211.1.1"
LB_A, HOST_A = "10.211.2.1", "10.211.2.2"
LB_B, HOST_B = "10.211.3.1", "10.211.3.2"
PORT, PORT_ONLY_A, PORT_ONLY_B, PORT_TLS = 110, 1101, 1102, 995
BENCH_USERS = {f"bench{i:02d}": f"pw{i:02d}" for i in range(8)}
PLAINTEXT_ON = {"POP3D_DISABLE_PLAINTEXT_AUTH": "false"}
CMD_TIMEOUT = 60  # seconds any helper command may take

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def run(*args, timeout=CMD_TIMEOUT, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{args[:6]}... exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


@contextmanager
def in_netns(name):
    """Runs the block with this thread in network namespace `name`: sockets created inside
    stay in it for their whole life (setns(2) with CLONE_NEWNET is per thread)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns to {name}")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(own)
        os.close(target)


def raw_in(ns, host, port, source=None):
    with in_netns(ns):
        return Raw(host, port, timeout=30, source=source)


class Topology:
    def __init__(self):
        self.prefix = "k" + secrets.token_hex(3)
        self.client, self.lb, self.a, self.b = (f"{self.prefix}-{n}" for n in ("client", "lb", "a", "b"))
        self.made = []

    def build(self):
        for ns in (self.client, self.lb, self.a, self.b):
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        p = self.prefix
        # Each veth is created straight inside its namespaces: no name ever exists in the
        # machine's own namespace.
        links = [(self.client, f"{p}c", [CLIENT, ATTACKER], self.lb, f"{p}lc", [LB_FRONT]),
                 (self.a, f"{p}a", [HOST_A], self.lb, f"{p}la", [LB_A]),
                 (self.b, f"{p}b", [HOST_B], self.lb, f"{p}lb", [LB_B])]
        for ns1, if1, addrs1, ns2, if2, addrs2 in links:
            run("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
            for ns, ifname, addrs in ((ns1, if1, addrs1), (ns2, if2, addrs2)):
                for addr in addrs:  # the first one added is the primary: the default source
                    run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
                run("ip", "-n", ns, "link", "set", ifname, "up")

    def teardown(self):
        for ns in self.made:  # deleting a namespace deletes its veth ends
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def topo():
    if os.geteuid() != 0:
        pytest.fail("test_haproxy needs root (ip netns); `make test` runs as root")
    t = Topology()
    try:
        t.build()
        yield t
    finally:
        t.teardown()


README_PEM = "/etc/haproxy/pop3.pem"


def readme_haproxy_config():
    """The ```haproxy blocks of the README's "Running several hosts" section, joined: the
    plain-TCP configuration, then the TLS-terminating frontend and backend."""
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"## Running several hosts\n(.*?)\n## ", text, re.S)
    assert m, "README: no 'Running several hosts' section"
    blocks = re.findall(r"```haproxy\n(.*?)```", m.group(1), re.S)
    assert len(blocks) == 2, "README: expected the plain and the TLS ```haproxy blocks"
    return "\n".join(blocks)


def pinned(name, host):
    return f"""
frontend pop3_only_{name}
    bind {LB_FRONT}:{PORT_ONLY_A if name == 'a' else PORT_ONLY_B}
    default_backend pop3_only_{name}

backend pop3_only_{name}
    option tcp-check
    tcp-check expect string +OK
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
    default-server inter 1s fall 2 rise 2 check-send-proxy
    server {name} {host}:{PORT} send-proxy-v2 check
"""


# Scenario 3's worst case: a pop3d on the balancer's own host, reached over loopback (client
# address = server address: "secured" if the PROXY header were ignored). Its health check stays
# DOWN in the other tests, where that pop3d is not running.
PORT_LOCAL, LOCAL_POP3D_PORT = 1103, 1110
LOCAL_HOST = f"""
frontend pop3_local
    bind {LB_FRONT}:{PORT_LOCAL}
    default_backend pop3_local

backend pop3_local
    option tcp-check
    tcp-check expect string +OK
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
    default-server inter 1s fall 2 rise 1 check-send-proxy
    server local 127.0.0.1:{LOCAL_POP3D_PORT} send-proxy-v2 check
"""


class Backend(LoggedProcess):
    """pop3d in one host namespace, started through `ip netns exec` (which execs: the PID we
    hold is pop3d's own)."""

    def __init__(self, ns, addr, lb_addr, mail, tmp, env, port=PORT):
        self.ns, self.addr = ns, addr
        listens = [f"{addr}:{port}"] + ([f"127.0.0.1:{port}"] if addr != "127.0.0.1" else [])
        self.log_path = os.path.join(tmp, f"pop3d-{ns}-{port}.log")
        self.log = open(self.log_path, "wb")
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
        full_env.update(env)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary(), "serve"]
            + [arg for listen in listens for arg in ("--listen", listen)]
            + ["--passwd-file", mail.passwd, "--mail", f"maildir:{mail.mail_root}/%u/Maildir",
             "--proxy-network", f"{lb_addr}/32"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
        wait_for(lambda: self.proc.poll() is not None or self.output().count("info listening") >= len(listens),
                 timeout=30, what=f"pop3d in {ns} to listen")
        assert self.proc.poll() is None, f"pop3d in {ns} exited:\n{self.output()}"

    def stop(self, sig=signal.SIGTERM, timeout=40):
        status = self.terminate(sig, timeout)
        self.log.flush()
        return status


class HAProxy(LoggedProcess):
    def __init__(self, ns, tmp):
        self.sock = os.path.join(tmp, "haproxy.sock")
        self.cfg = os.path.join(tmp, "haproxy.cfg")
        pem = os.path.join(tmp, "pop3.pem")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=pop3.test", "-keyout", pem, "-out", pem + ".crt")
        with open(pem, "a") as f:
            f.write(open(pem + ".crt").read())
        cfg = readme_haproxy_config()
        assert README_PEM in cfg
        cfg = cfg.replace(README_PEM, pem)
        cfg = cfg.replace("global\n", f"global\n    stats socket {self.sock} mode 600 level admin\n", 1)
        cfg = cfg.replace(f"    bind {LB_FRONT}:{PORT}\n",
                          f"    bind {LB_FRONT}:{PORT}\n    bind 127.0.0.1:{PORT}\n", 1)
        cfg += pinned("a", HOST_A) + pinned("b", HOST_B) + LOCAL_HOST
        with open(self.cfg, "w") as f:
            f.write(cfg)
        self.log_path = os.path.join(tmp, "haproxy.log")
        self.log = open(self.log_path, "wb")
        # -db: stay in the foreground, so the PID is HAProxy's and the test stops it by it.
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "haproxy", "-f", self.cfg, "-db"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or os.path.exists(self.sock), timeout=30,
                 what="haproxy's stats socket")
        assert self.proc.poll() is None, f"haproxy exited:\n{self.output()}"

    def states(self):
        """{(proxy, server): 'UP'|'DOWN'|...} from `show stat` on the stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        out = {}
        for line in data.decode().splitlines():
            f = line.split(",")
            if len(f) > 17 and not line.startswith("#") and f[1] not in ("FRONTEND", "BACKEND"):
                out[(f[0], f[1])] = f[17].split(" ")[0]
        return out

    def wait_state(self, want, timeout=30):
        """want: {(proxy, server): state}."""
        return wait_for(lambda: all(self.states().get(k) == v for k, v in want.items()),
                        timeout=timeout, interval=0.2, what=f"haproxy states {want}; now {self.states()}")

    def stop(self):
        self.terminate(signal.SIGTERM, 20)


ALL_UP = {("pop3_hosts", "a"): "UP", ("pop3_hosts", "b"): "UP",
          ("pop3s_hosts", "a"): "UP", ("pop3s_hosts", "b"): "UP",
          ("pop3_only_a", "a"): "UP", ("pop3_only_b", "b"): "UP"}


class Cluster:
    def __init__(self, topo, tmp_path, env):
        self.topo = topo
        self.tmp = str(tmp_path)
        self.mail_root = os.path.join(self.tmp, "mail")
        os.makedirs(self.mail_root)
        self.passwd = maildata.write_passwd(os.path.join(self.tmp, "passwd"), {**USERS, **BENCH_USERS})
        for user in BENCH_USERS:
            for i in range(3):
                self.deliver(user, maildata.message(i, body_size=2000))
        self.a = self.b = self.lb = None
        try:
            self.a = Backend(topo.a, HOST_A, LB_A, self, self.tmp, env)
            self.b = Backend(topo.b, HOST_B, LB_B, self, self.tmp, env)
            self.lb = HAProxy(topo.lb, self.tmp)
            self.lb.wait_state(ALL_UP)
        except BaseException:
            print(self.logs()[-6000:])
            self.stop()  # a half-started cluster stops what did start
            raise

    def maildir(self, user):
        return maildata.ensure_maildir(os.path.join(self.mail_root, user, "Maildir"))

    def deliver(self, user, data):
        return maildata.deliver(self.maildir(user), data)

    def files(self, user):
        md = self.maildir(user)
        return sorted(os.listdir(os.path.join(md, "new")) + os.listdir(os.path.join(md, "cur")))

    def stop(self):
        for p in (self.lb, self.a, self.b):
            if p is not None:
                p.stop()

    def logs(self):
        return "\n".join(f"--- {n}:\n{p.output()}" for n, p in
                         (("pop3d a", self.a), ("pop3d b", self.b), ("haproxy", self.lb)) if p)


@pytest.fixture
def cluster_factory(topo, tmp_path):
    made = []

    def make(env):
        c = Cluster(topo, tmp_path / f"c{len(made)}", env)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
    if made:
        print(made[-1].logs()[-6000:])


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory(PLAINTEXT_ON)


POPLIB_SCRIPT = r"""
import json, poplib, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
p = poplib.POP3(host, port, timeout=30)
p.user(user)
p.pass_(password)
count, octets = p.stat()
uidl = [l.decode() for l in p.uidl()[1]]
first = b"\n".join(p.retr(1)[1]).decode(errors="replace") if count else ""
p.quit()
print(json.dumps({"count": count, "octets": octets, "uidl": uidl, "first": first}))
"""


def poplib_in(ns, user, port=PORT, host=LB_FRONT):
    r = run("ip", "netns", "exec", ns, sys.executable, "-c", POPLIB_SCRIPT, host, str(port), user, USERS[user])
    return json.loads(r.stdout)


def uidls(ns, users=("alice", "bob", "carol")):
    return {u: poplib_in(ns, u)["uidl"] for u in users}


def test_session_through_haproxy_names_the_client(cluster, topo):
    """(1) poplib and curl through HAProxy; each host's log names the client, not the balancer."""
    msg = maildata.message(1, body_size=3000)
    cluster.deliver("alice", msg)
    cluster.deliver("bob", maildata.message(2))
    for port in (PORT_ONLY_A, PORT_ONLY_B, PORT, PORT):
        r = poplib_in(topo.client, "alice", port=port)
        assert r["count"] == 1 and len(r["uidl"]) == 1
        assert r["first"].replace("\r", "") == msg.decode().replace("\r", "").rstrip("\n")
    for _ in range(2):
        r = run("ip", "netns", "exec", topo.client, "curl", "-sS", "--max-time", "30",
                "-u", f"bob:{USERS['bob']}", f"pop3://{LB_FRONT}:{PORT}/1")
        assert r.stdout.replace("\r", "").rstrip("\n") == maildata.message(2).decode().rstrip("\n")
    # A session's summary line may follow its QUIT reply by a moment: wait for it.
    for host in (cluster.a, cluster.b):
        wait_for(lambda: re.search(rf"session end .*client={re.escape(CLIENT)}:.*user=alice", host.output()),
                 timeout=20, what=f"alice's session summary naming {CLIENT} in {host.ns}")
    wait_for(lambda: len(re.findall(r"session end .*user=bob", cluster.a.output() + cluster.b.output())) == 2,
             timeout=20, what="bob's two curl sessions")
    for host in (cluster.a, cluster.b):
        log = host.output()
        for balancer in (LB_A, LB_B, LB_FRONT):
            assert f"client={balancer}:" not in log, log


def timed_login(ns, port, user, password, source):
    """(reply to PASS, seconds from USER to the PASS reply) on a new connection."""
    c = raw_in(ns, LB_FRONT, port, source=source)
    try:
        assert c.line().startswith(b"+OK")
        t0 = time.monotonic()
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        reply = c.cmd(f"PASS {password}")
        return reply, time.monotonic() - t0, c
    except BaseException:
        c.close()
        raise


def test_penalties_follow_the_real_address(cluster, topo):
    """(2) The attacker's failures make the attacker wait; the good client, on the same host
    behind the same balancer address, logs in at once."""
    timings = {}
    # All on host a (pinned frontend): the penalty table is per pop3d process.
    c = raw_in(topo.client, LB_FRONT, PORT_ONLY_A, source=ATTACKER)
    assert c.line().startswith(b"+OK")
    for i in range(2):  # the second attempt waits out 2 s, then 4, 8... (per address)
        t0 = time.monotonic()
        assert c.cmd("USER alice").startswith(b"+OK")
        assert c.cmd("PASS wrong").startswith(b"-ERR")
        timings[f"attacker failure {i + 1}"] = time.monotonic() - t0
    c.close()
    reply, timings["attacker failure 3"], c = timed_login(topo.client, PORT_ONLY_A, "alice", "wrong", ATTACKER)
    c.close()
    assert reply.startswith(b"-ERR")
    # Now the attacker's address owes 8 s before its next attempt.
    reply, timings["good client"], c = timed_login(topo.client, PORT_ONLY_A, "bob", USERS["bob"], CLIENT)
    assert reply.startswith(b"+OK"), reply
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    reply, timings["attacker failure 4"], c = timed_login(topo.client, PORT_ONLY_A, "alice", "wrong", ATTACKER)
    c.close()
    print("penalty timings (s):", {k: round(v, 3) for k, v in timings.items()})
    assert reply.startswith(b"-ERR")
    # Lower bounds only (a penalty is a timer; a loaded machine makes it longer, not shorter).
    assert timings["attacker failure 2"] >= 1.5, timings
    assert timings["attacker failure 3"] >= 3.0, timings
    assert timings["attacker failure 4"] >= 6.0, timings
    # Generous for a loaded machine, yet far below the 8 s a shared (balancer) address would owe.
    assert timings["good client"] < 3.0, timings
    log = cluster.a.output()
    assert f"client={ATTACKER}:" in log and f"client={CLIENT}:" in log, log


def test_plaintext_refused_from_client_host(cluster_factory, topo):
    """(3) With pop3d's default disable_plaintext_auth, a plain-TCP client behind the balancer
    is not secured: no USER in CAPA, USER/PASS refused, through both hosts and through a pop3d
    on the balancer's own host over loopback; through HAProxy's TLS frontend
    (send-proxy-v2-ssl) the same login is allowed."""
    cluster = cluster_factory({})
    cluster.deliver("alice", maildata.message(1))
    local = Backend(topo.lb, "127.0.0.1", "127.0.0.1", cluster, cluster.tmp, {}, port=LOCAL_POP3D_PORT)
    try:
        cluster.lb.wait_state({("pop3_local", "local"): "UP"})
        refuse_plaintext(topo, (PORT_ONLY_A, PORT_ONLY_B, PORT, PORT_LOCAL))
        wait_for(lambda: f"client={CLIENT}:" in local.output(), timeout=20,
                 what="the local pop3d to name the client")
    finally:
        local.stop()
    # HAProxy terminating TLS with send-proxy-v2-ssl: the header says the client used TLS, so
    # the same default setting allows the login (the TLS variant of the README's config).
    a_ends, b_ends = (h.output().count("session end") for h in (cluster.a, cluster.b))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the test's self-signed cert
    for user in ("alice", "bob"):  # two users: leastconn may put the two sessions on both hosts
        c = raw_in(topo.client, LB_FRONT, PORT_TLS, source=CLIENT)
        try:
            c.sock = ctx.wrap_socket(c.sock, server_hostname="pop3.test")
            assert c.line().startswith(b"+OK")
            assert c.cmd("CAPA").startswith(b"+OK")
            assert b"USER" in c.multiline()
            assert c.cmd(f"USER {user}").startswith(b"+OK")
            reply = c.cmd(f"PASS {USERS[user]}")
            assert reply.startswith(b"+OK"), reply
            assert c.cmd("QUIT").startswith(b"+OK")
        finally:
            c.close()
    wait_for(lambda: cluster.a.output().count("session end") + cluster.b.output().count("session end")
             == a_ends + b_ends + 2, timeout=20, what="two TLS sessions' summaries")
    assert len(re.findall(rf"session end .*client={re.escape(CLIENT)}:",
                          cluster.a.output() + cluster.b.output())) >= 2
    # The same maildrop is reachable as soon as plaintext is allowed: the refusal above is the
    # setting, not a broken path.
    cluster.stop()
    cluster2 = cluster_factory(PLAINTEXT_ON)
    cluster2.deliver("alice", maildata.message(1))
    assert poplib_in(topo.client, "alice")["count"] == 1


def refuse_plaintext(topo, ports):
    for port in ports:
        c = raw_in(topo.client, LB_FRONT, port, source=CLIENT)
        try:
            assert c.line().startswith(b"+OK")
            assert c.cmd("CAPA").startswith(b"+OK")
            capa = c.multiline()
            assert b"USER" not in capa, capa
            reply = c.cmd("USER alice")
            if reply.startswith(b"+OK"):
                reply = c.cmd(f"PASS {USERS['alice']}")
            assert reply.startswith(b"-ERR"), reply
            assert c.cmd("QUIT").startswith(b"+OK")
        finally:
            c.close()


def test_in_use_across_hosts(cluster, topo):
    """(4) alice logged in through host a: a second session that lands on host b gets
    -ERR [IN-USE] (the OFD lock on the shared Maildir), and gets in once a's session quits."""
    cluster.deliver("alice", maildata.message(1))
    first = raw_in(topo.client, LB_FRONT, PORT_ONLY_A, source=CLIENT)
    try:
        assert first.login("alice", USERS["alice"]).startswith(b"+OK")
        second = raw_in(topo.client, LB_FRONT, PORT_ONLY_B, source=CLIENT)
        try:
            reply = second.login("alice", USERS["alice"])
            assert reply.startswith(b"-ERR [IN-USE]"), reply
        finally:
            second.close()
        assert first.cmd("QUIT").startswith(b"+OK")
    finally:
        first.close()
    assert poplib_in(topo.client, "alice", port=PORT_ONLY_B)["count"] == 1
    wait_for(lambda: re.search(rf"session end .*client={re.escape(CLIENT)}:.*user=alice", cluster.b.output()),
             timeout=20, what="alice's session summary on host b")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopping_a_host_loses_no_mail(cluster, topo, sig):
    """(5) Host a stops with a session in TRANSACTION that has DELEted two messages: nothing
    is deleted, HAProxy's health check marks a down, new sessions go to b, UIDLs unchanged."""
    for user, n in (("alice", 2), ("bob", 1), ("carol", 3)):
        for i in range(n):
            cluster.deliver(user, maildata.message(i + 1, body_size=1500))
    before = uidls(topo.client)
    files_before = {u: cluster.files(u) for u in ("alice", "bob", "carol")}
    cut = raw_in(topo.client, LB_FRONT, PORT_ONLY_A, source=CLIENT)
    try:
        assert cut.login("carol", USERS["carol"]).startswith(b"+OK")
        assert cut.cmd("DELE 1").startswith(b"+OK")
        assert cut.cmd("DELE 2").startswith(b"+OK")
        a_sessions = cluster.a.output().count("session end")
        cluster.a.stop(sig)
        assert cut.closed(timeout=40), "the session on host a was not closed"
    finally:
        cut.close()
    cluster.lb.wait_state({("pop3_hosts", "a"): "DOWN", ("pop3_hosts", "b"): "UP"}, timeout=30)
    b_sessions = cluster.b.output().count("session end")
    after = uidls(topo.client)
    assert after == before, (before, after)
    assert {u: cluster.files(u) for u in ("alice", "bob", "carol")} == files_before
    assert len(after["carol"]) == 3
    # Those three sessions went to b (a is gone).
    wait_for(lambda: cluster.b.output().count("session end") - b_sessions == 3, timeout=20,
             what="three new session summaries on host b")
    if sig == signal.SIGTERM:  # a drained: its log says the cut session deleted nothing
        log = cluster.a.output()
        ends = [l for l in log.splitlines() if "session end" in l and "user=carol" in l]
        assert log.count("session end") == a_sessions + 1 and ends and " del=0/0 " in ends[-1], log


def bench(ns, seconds=10):
    r = run("ip", "netns", "exec", ns, binary("pop3bench"), "session", "--host", "127.0.0.1",
            "--port", str(PORT), "--users", "bench%02d", "--password", "pw%02d",
            "--user-count", str(len(BENCH_USERS)), "--concurrency", "2",
            "--duration", str(seconds), "--json", "--quiet", timeout=seconds + 90, check=False)
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_pop3bench_through_haproxy(cluster, topo):
    """(6) pop3bench only targets loopback, so it runs inside the balancer's namespace against
    HAProxy's loopback bind (then pop3d sees 127.0.0.1 in the PROXY header), and, for the
    direct figure, inside host a's namespace against pop3d's loopback listener."""
    rc, through = bench(topo.lb)
    assert (rc, through["errors"]["total"]) == (0, 0), (through["first_error"], cluster.logs())
    assert through["sessions"]["failed"] == 0 and through["sessions"]["ok"] > 0
    for host in (cluster.a, cluster.b):  # leastconn used both hosts; each saw the real client
        log = host.output()
        assert "client=127.0.0.1:" in log and f"client={LB_A}:" not in log and f"client={LB_B}:" not in log
    rc, direct = bench(topo.a)
    assert (rc, direct["errors"]["total"]) == (0, 0), direct["first_error"]
    print(f"pop3bench session, 10 s, concurrency 2: through HAProxy "
          f"{through['throughput']['sessions_per_s']:.0f} sessions/s ({through['sessions']['ok']} ok), "
          f"direct to one host {direct['throughput']['sessions_per_s']:.0f} sessions/s "
          f"({direct['sessions']['ok']} ok)")
