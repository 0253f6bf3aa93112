"""SASL (RFC 5034) over the wire against the built pop3d: every mechanism end to end with a
client written here from the RFCs, and the error paths (cancel, bad base64, CRAM-MD5 initial
response, bare AUTH). Loopback, so plaintext mechanisms are allowed (client == server)."""
import base64
import hashlib
import hmac
import os
import subprocess

import maildata
from conftest import ALL_MECHANISMS, USERS
from pop3support import binary
from rawpop import Raw

# Issue 10: the server offers only `auth_mechanisms` (default plain login); these tests
# exercise every mechanism, so they enable all of them.

B64 = lambda b: base64.b64encode(b).decode()


def connect(server):
    raw = Raw(server.host, server.port)
    greeting = raw.line()
    assert greeting.startswith(b"+OK"), greeting
    return raw


def scram_login(raw, user, password):
    """RFC 5802/7677 client; returns the final server line."""
    nonce = B64(os.urandom(18))
    bare = f"n={user},r={nonce}"
    r = raw.cmd("AUTH SCRAM-SHA-256 " + B64(("n,," + bare).encode()))
    if not r.startswith(b"+ "):
        return r
    server_first = base64.b64decode(r[2:]).decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    assert fields["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    r = raw.cmd(B64(f"{without_proof},p={B64(proof)}".encode()))
    if not r.startswith(b"+ "):
        return r
    server_final = base64.b64decode(r[2:]).decode()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expected = B64(hmac.new(server_key, auth_message, "sha256").digest())
    assert server_final == f"v={expected}", server_final  # the server proves it knows the key
    return raw.cmd("")


def test_bare_auth_lists_mechanisms(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert raw.cmd("AUTH").startswith(b"+OK")
    assert raw.multiline() == [b"PLAIN", b"LOGIN", b"CRAM-MD5", b"SCRAM-SHA-256"]
    assert raw.cmd("CAPA").startswith(b"+OK")
    assert b"SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256" in raw.multiline()


def test_plain_initial_response_and_continuation(mailhost):
    mailhost.deliver("alice", maildata.message(1))
    server = mailhost.serve(env=ALL_MECHANISMS)
    raw = connect(server)
    assert raw.cmd("AUTH PLAIN " + B64(b"\0alice\0" + USERS["alice"].encode())).startswith(b"+OK")
    assert raw.cmd("STAT").startswith(b"+OK 1 ")
    raw.close()
    raw = connect(server)
    assert raw.cmd("AUTH PLAIN") == b"+ "
    assert raw.cmd(B64(b"alice\0alice\0" + USERS["alice"].encode())).startswith(b"+OK")
    raw.close()
    # authzid naming another user is refused (no proxy authorisation).
    raw = connect(server)
    r = raw.cmd("AUTH PLAIN " + B64(b"bob\0alice\0" + USERS["alice"].encode()))
    assert r.startswith(b"-ERR"), r


def test_login_mechanism(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    r = raw.cmd("AUTH LOGIN")
    assert r.startswith(b"+ ") and base64.b64decode(r[2:]).lower().startswith(b"user")
    r = raw.cmd(B64(b"bob"))
    assert r.startswith(b"+ ") and base64.b64decode(r[2:]).lower().startswith(b"pass")
    assert raw.cmd(B64(USERS["bob"].encode())).startswith(b"+OK")


def test_cram_md5(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    r = raw.cmd("AUTH CRAM-MD5")
    assert r.startswith(b"+ ")
    challenge = base64.b64decode(r[2:])
    assert challenge.startswith(b"<") and challenge.endswith(b">")  # RFC 2195 msg-id form
    digest = hmac.new(USERS["carol"].encode(), challenge, "md5").hexdigest()
    assert raw.cmd(B64(f"carol {digest}".encode())).startswith(b"+OK")


def test_cram_md5_wrong_digest_gets_auth_error(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    r = raw.cmd("AUTH CRAM-MD5")
    assert raw.cmd(B64(b"carol " + b"0" * 32)).startswith(b"-ERR [AUTH]")


def test_scram_sha_256_with_plain_secret(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert scram_login(raw, "alice", USERS["alice"]).startswith(b"+OK")
    assert raw.cmd("STAT").startswith(b"+OK")


def test_scram_sha_256_with_stored_scram_secret(mailhost):
    secret = subprocess.run([binary(), "hash-password", "--scheme", "SCRAM-SHA-256"],
                            input=b"stored-pw\n", capture_output=True, check=True,
                            timeout=30).stdout.decode().strip()
    assert secret.startswith("{SCRAM-SHA-256}")
    with open(mailhost.passwd, "a") as f:
        f.write(f"dave:{secret}:1000:1000::::\n")
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert scram_login(raw, "dave", "stored-pw").startswith(b"+OK")
    raw.close()
    raw = connect(mailhost.servers[0])
    r = scram_login(raw, "dave", "wrong")
    assert r.startswith(b"-ERR [AUTH]"), r


def test_cancel_with_star(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert raw.cmd("AUTH LOGIN").startswith(b"+ ")
    r = raw.cmd("*")
    assert r.startswith(b"-ERR"), r
    # Back in AUTHORIZATION: a normal login still works.
    assert raw.cmd("USER alice").startswith(b"+OK")
    assert raw.cmd(f"PASS {USERS['alice']}").startswith(b"+OK")


def test_malformed_base64_is_an_error_not_a_close(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert raw.cmd("AUTH PLAIN") == b"+ "
    assert raw.cmd("!!!not base64!!!").startswith(b"-ERR")
    assert raw.cmd("AUTH PLAIN %%%%").startswith(b"-ERR")
    assert raw.cmd("CAPA").startswith(b"+OK")
    raw.multiline()


def test_cram_md5_initial_response_refused(mailhost):
    """RFC 5034 §4: a mechanism that starts with a server challenge takes no initial response."""
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    assert raw.cmd("AUTH CRAM-MD5 " + B64(b"carol 0123")).startswith(b"-ERR")
    assert raw.cmd("AUTH CRAM-MD5").startswith(b"+ ")


def test_empty_initial_response_equals_sign(mailhost):
    raw = connect(mailhost.serve(env=ALL_MECHANISMS))
    # "=" is an empty initial response: PLAIN with nothing in it fails as bad credentials,
    # not as a syntax error that would leave the exchange hanging.
    r = raw.cmd("AUTH PLAIN =")
    assert r.startswith(b"-ERR"), r
    assert raw.cmd("AUTH UNKNOWN-MECH").startswith(b"-ERR")
    assert raw.cmd("USER alice").startswith(b"+OK")
