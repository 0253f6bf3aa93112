"""The receiving side of the PROXY protocol (HAProxy's doc/proxy-protocol.txt, v1 and v2):
a connection from `proxy_networks` starts with a header, and the address in it is the
client's for logs, penalties, caps and the plaintext rule. The test process plays the
balancer from 127.0.0.1 (in proxy_networks); a second loopback address (127.0.0.2) plays a
client outside it."""
import re
import socket
import ssl
import struct
import time

import maildata
from conftest import USERS
from pop3support import wait_for
from rawpop import Raw
from test_tls import TLSHost

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
BALANCER = "127.0.0.1/32"


def v1(src, dst="198.51.100.1", sport=40000, dport=110):
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def v2(src, dst="198.51.100.1", sport=40000, dport=110, tlvs=b"", local=False):
    if local:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        block = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        block = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    block += struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


def ssl_tlv(version=b"TLSv1.3"):
    # PP2_TYPE_SSL: client bits (PP2_CLIENT_SSL), verify, then a PP2_SUBTYPE_SSL_VERSION.
    return tlv(0x20, bytes([0x01]) + struct.pack("!I", 0) + tlv(0x21, version))


def serve(mailhost, *extra, env=None):
    # The header's clients are remote: plaintext logins are allowed here so that these tests
    # can log in; the plaintext rule has its own test.
    return mailhost.serve("--proxy-network", BALANCER, *extra,
                          env={"POP3D_LOG_LEVEL": "debug", "POP3D_DISABLE_PLAINTEXT_AUTH": "false",
                               **(env or {})})


def refusals(server):
    return [line for line in server.output().splitlines()
            if "PROXY header refused" in line and "closed by the peer" not in line]


def session_ends(server):
    return [line for line in server.output().splitlines() if "session end" in line]


def nothing_received(sock, timeout=0.05):
    """True when the server sent nothing within `timeout` (and did not close)."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return True
    finally:
        sock.settimeout(20)
    raise AssertionError(f"server sent {data!r} before the header was complete")


def quit_and_wait(server, raw, client_text):
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()
    wait_for(lambda: any(f"client={client_text}" in l for l in session_ends(server)),
             what=f"a session end naming {client_text}\n{server.output()}")


def test_v1_header_gives_the_client_address_in_every_log_line(mailhost):
    mailhost.deliver("alice", maildata.message(1))
    server = serve(mailhost)
    raw = Raw("127.0.0.1", server.port)
    raw.send(v1("192.0.2.7", sport=41234))
    assert raw.login("alice", "wrong").startswith(b"-ERR")
    assert raw.cmd("USER alice").startswith(b"+OK")
    assert raw.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")
    quit_and_wait(server, raw, "192.0.2.7:41234")
    out = server.output()
    failed = [l for l in out.splitlines() if "login failed" in l]
    assert failed and "client=192.0.2.7:41234" in failed[0] and "proxy=127.0.0.1:" in failed[0], out
    end = session_ends(server)[0]
    assert "proxy=127.0.0.1:" in end, end
    assert "client=127.0.0.1" not in out, out


def test_v2_header_split_byte_by_byte_sends_nothing_until_complete(mailhost):
    server = serve(mailhost)
    raw = Raw("127.0.0.1", server.port)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header = v2("2001:db8::7", "2001:db8::1", sport=5555,
                tlvs=tlv(0x02, b"pop.example.org") + tlv(0x05, b"req-42"))
    for i in range(len(header) - 1):
        raw.send(header[i:i + 1])
        assert nothing_received(raw.sock)
    raw.send(header[-1:])
    assert raw.line().startswith(b"+OK")
    quit_and_wait(server, raw, "[2001:db8::7]:5555")
    end = session_ends(server)[0]
    assert "proxy.authority=pop.example.org" in end and "proxy.unique_id=req-42" in end, end


def test_first_command_in_the_same_segment_as_the_header(mailhost):
    server = serve(mailhost)
    for header in (v1("192.0.2.8"), v2("192.0.2.9")):
        raw = Raw("127.0.0.1", server.port)
        raw.send(header + b"CAPA\r\nUSER alice\r\n")
        assert raw.line().startswith(b"+OK")  # greeting
        assert raw.line().startswith(b"+OK")
        assert b"USER" in raw.multiline()
        assert raw.line().startswith(b"+OK")  # USER
        raw.close()
    wait_for(lambda: len(session_ends(server)) == 2, what="two session ends")
    assert "client=192.0.2.8:40000" in server.output() and "client=192.0.2.9:40000" in server.output()


def test_garbage_instead_of_a_header_closes_with_nothing_sent(mailhost):
    server = serve(mailhost)
    for garbage in (b"USER alice\r\n", b"PROXY TCP4 300.0.0.1 1.2.3.4 1 2\r\n",
                    b"PROXY TCP4 " + b"1" * 120, V2_SIGNATURE + bytes([0x21, 0x11, 0xff, 0xff]),
                    v2("192.0.2.1", tlvs=tlv(0x03, b"\0\0\0\0"))):  # a CRC32C that does not match
        raw = Raw("127.0.0.1", server.port)
        raw.send(garbage)
        assert raw.closed(timeout=20)
        assert raw.buf == b"", raw.buf
        raw.close()
    # (The start-up check that the port is open connects and closes without a header: one
    # more "closed by the peer" line, not counted here.)
    wait_for(lambda: len(refusals(server)) == 5, what=f"five refusals\n{server.output()}")
    assert "v2 CRC32C mismatch" in server.output()
    assert "session end" not in server.output()


def test_header_from_outside_proxy_networks_closes_the_connection(mailhost):
    # Only 127.0.0.2 is a balancer: the test client on 127.0.0.1 is an ordinary client. Its
    # PROXY header is never honoured: the connection is closed (issue 11), and the log names
    # the real peer, not the address the header claimed.
    server = mailhost.serve("--proxy-network", "127.0.0.2/32")
    raw = Raw("127.0.0.1", server.port)
    assert raw.line().startswith(b"+OK")  # greeted at once: no header expected
    assert raw.cmd(v1("192.0.2.66")[:-2]).startswith(b"-ERR PROXY header not accepted")
    assert raw.sock.recv(100) == b""  # closed by the server
    wait_for(lambda: session_ends(server), what="session end line")
    assert "client=127.0.0.1:" in session_ends(server)[0]
    assert "192.0.2.66" not in server.output()


def test_header_not_complete_within_the_timeout_closes(mailhost):
    server = serve(mailhost, env={"POP3D_PROXY_HEADER_TIMEOUT": "1"})
    raw = Raw("127.0.0.1", server.port)
    start = time.monotonic()
    raw.send(b"PROXY TCP4 192.0.2.1 ")
    assert raw.closed(timeout=20)
    elapsed = time.monotonic() - start
    assert raw.buf == b""
    assert 0.9 <= elapsed < 10, elapsed
    wait_for(lambda: "proxy_header_timeout" in server.output(), what="the timeout line")


def test_implicit_tls_with_a_header_before_the_client_hello(mailhost, tmp_path):
    t = TLSHost(mailhost, tmp_path, extra=("--proxy-network", BALANCER),
                env={"POP3D_LOG_LEVEL": "debug"})
    sock = socket.create_connection(("127.0.0.1", t.tls_port), timeout=20)
    sock.sendall(v2("203.0.113.5", sport=6000))
    tls = t.context().wrap_socket(sock, server_hostname="localhost")
    f = tls.makefile("rb")
    assert f.readline().startswith(b"+OK")
    tls.sendall(f"USER alice\r\nPASS {USERS['alice']}\r\nQUIT\r\n".encode())
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    tls.close()
    wait_for(lambda: any("client=203.0.113.5:6000" in l for l in session_ends(t.server)),
             what=f"the session end\n{t.server.output()}")


def test_penalties_apply_per_real_address(mailhost):
    server = serve(mailhost)
    attacker = Raw("127.0.0.1", server.port)
    attacker.send(v1("192.0.2.66"))
    assert attacker.line().startswith(b"+OK")
    assert attacker.cmd("USER alice").startswith(b"+OK")
    assert attacker.cmd("PASS wrong1").startswith(b"-ERR")
    # The attacker's next attempt waits its penalty (FailurePenalty: 2 s after a failure)...
    assert attacker.cmd("USER alice").startswith(b"+OK")
    start = time.monotonic()
    attacker.send(b"PASS wrong2\r\n")
    # ...while a client behind the same balancer with its own address logs in at once.
    good = Raw("127.0.0.1", server.port)
    good.send(v1("192.0.2.77"))
    assert good.line().startswith(b"+OK")
    assert good.cmd("USER bob").startswith(b"+OK")
    good_start = time.monotonic()
    assert good.cmd(f"PASS {USERS['bob']}").startswith(b"+OK")
    good_elapsed = time.monotonic() - good_start
    assert attacker.line().startswith(b"-ERR")
    attacker_elapsed = time.monotonic() - start
    assert attacker_elapsed >= 1.5, attacker_elapsed
    assert good_elapsed < 1.4, good_elapsed  # well under the 2 s penalty; generous for a loaded machine


def test_per_address_cap_applies_to_the_header_address(mailhost):
    server = serve(mailhost, env={"POP3D_MAX_CONNECTIONS_PER_IP": "2"})
    held = []
    for _ in range(2):
        raw = Raw("127.0.0.1", server.port)
        raw.send(v1("192.0.2.10"))
        assert raw.line().startswith(b"+OK")
        held.append(raw)
    third = Raw("127.0.0.1", server.port)
    third.send(v1("192.0.2.10"))
    assert b"Too many connections" in third.line()
    # The balancer itself (127.0.0.1, already holding 3) is not capped: another client is greeted.
    other = Raw("127.0.0.1", server.port)
    other.send(v1("192.0.2.11"))
    assert other.line().startswith(b"+OK")
    refused = [l for l in server.output().splitlines() if "connection refused" in l]
    assert len(refused) == 1 and "client=192.0.2.10:40000" in refused[0], server.output()


def test_plaintext_refused_for_a_proxied_remote_client_allowed_with_ssl_tlv(mailhost, tmp_path):
    t = TLSHost(mailhost, tmp_path, extra=("--proxy-network", BALANCER))
    # The balancer (127.0.0.1) and pop3d (127.0.0.1) share an address, which makes a direct
    # connection "secured" (client == server, Dovecot's rule); a remote client relayed by the
    # balancer is not secured by the balancer's address.
    proxied = Raw("127.0.0.1", t.server.port)
    proxied.send(v2("192.0.2.20", "198.51.100.1"))
    assert proxied.line().startswith(b"+OK")
    assert proxied.cmd("CAPA").startswith(b"+OK")
    assert b"STLS" in proxied.multiline()
    assert proxied.cmd("USER alice").startswith(b"-ERR")
    proxied.close()
    # The client spoke TLS to the balancer (PP2_TYPE_SSL, PP2_CLIENT_SSL): secured, no STLS.
    secured = Raw("127.0.0.1", t.server.port)
    secured.send(v2("192.0.2.21", "198.51.100.1", tlvs=ssl_tlv()))
    assert secured.line().startswith(b"+OK")
    assert secured.cmd("CAPA").startswith(b"+OK")
    assert b"STLS" not in secured.multiline()
    assert secured.cmd("USER bob").startswith(b"+OK")
    assert secured.cmd(f"PASS {USERS['bob']}").startswith(b"+OK")
    secured.cmd("QUIT")
    # v1 UNKNOWN: the balancer's address stands, but a balancer is never "secured" by being local.
    unknown = Raw("127.0.0.1", t.server.port)
    unknown.send(b"PROXY UNKNOWN\r\n")
    assert unknown.line().startswith(b"+OK")
    assert unknown.cmd("USER alice").startswith(b"-ERR")
    unknown.close()


def test_v2_local_health_check_is_greeted_and_not_a_client_session(mailhost):
    server = serve(mailhost)
    raw = Raw("127.0.0.1", server.port)
    raw.send(v2("0.0.0.0", local=True))
    assert raw.line().startswith(b"+OK")
    assert raw.cmd("QUIT").startswith(b"+OK")
    raw.close()
    wait_for(lambda: "health check end" in server.output(), what=f"the health check line\n{server.output()}")
    assert session_ends(server) == [], server.output()
    line = [l for l in server.output().splitlines() if "health check end" in l][0]
    assert re.search(r"client=127\.0\.0\.1:\d+", line), line


def test_pop3bench_sessions_through_proxy_headers(mailhost):
    from test_pop3bench import bench
    for user in USERS:
        mailhost.deliver(user, maildata.message(1, body_size=2000))
    # Default settings (plaintext refused for remote clients): the SSL TLV makes them secured.
    server = mailhost.serve("--proxy-network", BALANCER)
    for version in ("--proxy-v1", "--proxy-v2"):
        # v2 also with a CRC32C TLV, which pop3d checks.
        extra = ("--proxy-ssl", "--proxy-crc") if version == "--proxy-v2" else ()
        rc, r = bench("session", "--passwd-file", mailhost.passwd, "--concurrency", "3", "--count", "6",
                      version, *extra, "--proxy-source", "192.0.2.100-192.0.2.102", port=server.port)
        if version == "--proxy-v1":
            # v1 carries no TLS information: a remote client's plaintext login is refused.
            assert r["sessions"]["ok"] == 0, r
            continue
        assert r["errors"]["total"] == 0, r["first_error"]
        assert rc == 0 and r["sessions"]["ok"] == 6, r
    wait_for(lambda: sum("proxy.ssl=" in l for l in session_ends(server)) == 6,
             what=f"six proxied session ends\n{server.output()}")
    clients = {m for l in session_ends(server) for m in re.findall(r"client=(192\.0\.2\.10[0-2])", l)}
    assert clients == {"192.0.2.100", "192.0.2.101", "192.0.2.102"}, server.output()
