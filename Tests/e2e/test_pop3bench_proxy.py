"""pop3bench --proxy-v1/--proxy-v2 (issue 11): the PROXY protocol header (HAProxy's
doc/proxy-protocol.txt) goes out as the first bytes of every connection, before TLS, and names
the chosen source. pop3d does not read the header yet, so the receiver here is a small POP3
stub on loopback with its own header parser, written from the spec independently of the Swift
one: it checks the header, answers a greeting and QUIT, and records what it saw."""
import ipaddress
import json
import os
import socket
import ssl
import struct
import subprocess

import pytest

from pop3support import StubServer, binary

RUN_TIMEOUT = 60
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def crc32c(data):
    """CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit: slow, obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} octets")
        data += chunk
    return data


def read_header(conn):
    """Reads exactly one PROXY header (never a byte beyond it: a TLS ClientHello may follow)
    and returns a dict: version, command, src/dst (ip, port), tlvs {type: value}, raw."""
    first = recv_exact(conn, 1)
    if first == b"P":
        raw = first
        while not raw.endswith(b"\r\n"):
            assert len(raw) < 107, f"v1 line without CRLF in 107 octets: {raw!r}"
            raw += recv_exact(conn, 1)
        parts = raw[:-2].decode("ascii").split(" ")
        assert parts[0] == "PROXY" and parts[1] in ("TCP4", "TCP6"), raw
        assert len(parts) == 6, raw
        src, dst = ipaddress.ip_address(parts[2]), ipaddress.ip_address(parts[3])
        assert src.version == dst.version == (4 if parts[1] == "TCP4" else 6), raw
        for port in parts[4:]:
            assert port == str(int(port)) and 0 <= int(port) <= 65535, raw
        return {"version": 1, "command": "PROXY", "src": (str(src), int(parts[4])),
                "dst": (str(dst), int(parts[5])), "tlvs": {}, "raw": raw}
    fixed = first + recv_exact(conn, 15)
    assert fixed[:12] == V2_SIGNATURE, fixed
    ver_cmd, fam, length = fixed[12], fixed[13], struct.unpack("!H", fixed[14:16])[0]
    assert ver_cmd >> 4 == 2 and ver_cmd & 0xF in (0, 1), fixed
    body = recv_exact(conn, length)
    raw = fixed + body
    if fam == 0x11:
        src_ip, dst_ip, sport, dport = struct.unpack("!4s4sHH", body[:12])
        rest = 12
    elif fam == 0x21:
        src_ip, dst_ip, sport, dport = struct.unpack("!16s16sHH", body[:36])
        rest = 36
    else:
        raise AssertionError(f"unexpected family octet {fam:#x}")
    tlvs = {}
    offset = rest
    while offset < length:
        assert length - offset >= 3, "stray octets after the TLVs"
        kind, size = body[offset], struct.unpack("!H", body[offset + 1:offset + 3])[0]
        value = body[offset + 3:offset + 3 + size]
        assert len(value) == size, "TLV runs past the header"
        assert kind not in tlvs, f"TLV {kind:#x} twice"
        tlvs[kind] = (16 + offset + 3, value)
        offset += 3 + size
    if 0x03 in tlvs:
        at, value = tlvs[0x03]
        zeroed = raw[:at] + b"\0\0\0\0" + raw[at + 4:]
        assert struct.unpack("!I", value)[0] == crc32c(zeroed), "CRC32C mismatch"
    return {"version": 2, "command": "PROXY" if ver_cmd & 0xF else "LOCAL",
            "src": (str(ipaddress.ip_address(src_ip)), sport), "dst": (str(ipaddress.ip_address(dst_ip)), dport),
            "tlvs": {k: v for k, (_, v) in tlvs.items()}, "raw": raw}


class ProxyStub(StubServer):
    """POP3 stub on 127.0.0.1 expecting a PROXY header on every connection (optionally then a
    TLS handshake): records the header and the first line after it, greets, answers QUIT."""

    def __init__(self, tls_context=None):
        self.tls_context = tls_context
        self.seen = []
        self.errors = []
        super().__init__()

    def handle(self, conn):
        try:
            self.session(conn)
        except Exception as e:  # recorded, and the test fails on it
            self.errors.append(repr(e))
        finally:
            conn.close()

    def session(self, conn):
        header = read_header(conn)
        if self.tls_context is not None:
            conn = self.tls_context.wrap_socket(conn, server_side=True)
        conn.sendall(b"+OK stub ready\r\n")
        line = conn.makefile("rb").readline()
        header["first_line"] = line
        self.seen.append(header)
        if line.upper().startswith(b"QUIT"):
            conn.sendall(b"+OK bye\r\n")


@pytest.fixture
def stub():
    stubs = []

    def make(**kw):
        s = ProxyStub(**kw)
        stubs.append(s)
        return s
    yield make
    for s in stubs:
        s.close()


def bench(port, *args):
    cmd = [binary("pop3bench"), "connect", "--port", str(port), "--json", "--quiet",
           "--timeout", "10", "--max-time", "30", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def assert_clean(proc, sessions):
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    report = json.loads(proc.stdout)
    assert report["errors"]["total"] == 0, report["first_error"]
    assert report["sessions"] == {"started": sessions, "ok": sessions, "failed": 0}


def test_crc32c_reference():
    assert crc32c(b"123456789") == 0xE3069283


def test_help_documents_proxy_flags():
    out = subprocess.run([binary("pop3bench"), "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT).stdout
    for flag in ("--proxy-v1", "--proxy-v2", "--proxy-source", "--proxy-ssl", "--proxy-crc"):
        assert flag in out, flag
    assert "before TLS" in out


def test_v1_header_names_the_chosen_source(stub):
    s = stub()
    proc = bench(s.port, "--proxy-v1", "--proxy-source", "203.0.113.7:4711", "--count", "3")
    assert_clean(proc, 3)
    assert not s.errors, s.errors
    assert len(s.seen) == 3
    for h in s.seen:
        assert h["raw"] == b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 %d\r\n" % s.port
        # The session's own first bytes follow the header untouched.
        assert h["first_line"] == b"QUIT\r\n"


def test_v1_ipv6_source_to_ipv4_target_is_sent_mapped(stub):
    s = stub()
    proc = bench(s.port, "--proxy-v1", "--proxy-source", "[2001:db8::42]:5000", "--count", "1")
    assert_clean(proc, 1)
    assert not s.errors, s.errors
    assert s.seen[0]["raw"] == b"PROXY TCP6 2001:db8::42 ::ffff:7f00:1 5000 %d\r\n" % s.port


def test_v2_header_takes_a_range_in_turn(stub):
    s = stub()
    proc = bench(s.port, "--proxy-v2", "--proxy-source", "198.51.100.1-198.51.100.3", "--count", "6")
    assert_clean(proc, 6)
    assert not s.errors, s.errors
    assert [h["src"][0] for h in s.seen] == ["198.51.100.1", "198.51.100.2", "198.51.100.3"] * 2
    assert all(h["version"] == 2 and h["command"] == "PROXY" and h["raw"][13] == 0x11 for h in s.seen)
    assert all(h["dst"] == ("127.0.0.1", s.port) for h in s.seen)
    assert all(h["tlvs"] == {} for h in s.seen)
    # Without a port each connection claims another one, as a client's ephemeral port would.
    assert len({h["src"][1] for h in s.seen}) == 6
    assert all(h["first_line"] == b"QUIT\r\n" for h in s.seen)


def test_v2_ipv6_source_with_ssl_and_crc_tlvs(stub):
    s = stub()
    proc = bench(s.port, "--proxy-v2", "--proxy-source", "[2001:db8::5]:995", "--proxy-source", "192.0.2.9",
                 "--proxy-ssl", "--proxy-crc", "--count", "2")
    assert_clean(proc, 2)
    assert not s.errors, s.errors
    first, second = s.seen
    assert first["raw"][13] == 0x21
    assert first["src"] == ("2001:db8::5", 995)
    assert first["dst"] == ("::ffff:7f00:1", s.port)
    assert second["raw"][13] == 0x11 and second["src"][0] == "192.0.2.9"
    for h in s.seen:
        assert 0x03 in h["tlvs"]  # checked by read_header against our own CRC32C
        ssl_value = h["tlvs"][0x20]
        assert ssl_value[0] & 0x01, "PP2_CLIENT_SSL bit"
        assert ssl_value[5:] == b"\x21\x00\x07TLSv1.3"


def make_cert(directory):
    cert, key = os.path.join(directory, "stub.crt"), os.path.join(directory, "stub.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=proxy-stub",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.parametrize("version", ["--proxy-v1", "--proxy-v2"])
def test_header_precedes_the_tls_handshake(stub, tmp_path, version):
    cert, key = make_cert(str(tmp_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    s = stub(tls_context=context)
    proc = bench(s.port, "--transport", "tls", version, "--proxy-source", "192.0.2.77:6000", "--count", "2")
    assert_clean(proc, 2)
    assert not s.errors, s.errors
    assert [h["src"] for h in s.seen] == [("192.0.2.77", 6000)] * 2
    assert all(h["first_line"] == b"QUIT\r\n" for h in s.seen)


@pytest.mark.parametrize("args, message", [
    (["--proxy-v1", "--proxy-v2"], "exclude"),
    (["--proxy-source", "192.0.2.1"], "need --proxy-v1 or --proxy-v2"),
    (["--proxy-v1", "--proxy-ssl"], "v2"),
    (["--proxy-v2", "--proxy-source", "256.1.1.1"], "--proxy-source 256.1.1.1"),
    (["--proxy-v2", "--proxy-source", "192.0.2.9-192.0.2.1"], "low to high"),
    (["--proxy-v2", "--proxy-source", "10.0.0.0-10.1.0.0"], "more than 65536"),
    (["--proxy-v2", "--proxy-source", "192.0.2.1:70000"], "bad port"),
])
def test_bad_proxy_options_are_usage_errors(args, message):
    proc = subprocess.run([binary("pop3bench"), "connect", "--port", "1", *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 64, proc.stderr
    assert message in proc.stderr
