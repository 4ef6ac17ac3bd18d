"""A real TURN server for the tests (Debian's coturn, `turnserver`) and a minimal TURN client
written from the RFCs with the standard library: a STUN Binding (RFC 8489 §3) to see the
server answer, and an Allocate (RFC 8656 §7.2) with the long-term credential mechanism
(RFC 8489 §9.2): a first request without credentials is refused with 401 and the server's
REALM and NONCE; the second carries USERNAME, REALM, NONCE and a MESSAGE-INTEGRITY keyed
with MD5(username ":" realm ":" password)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

MAGIC_COOKIE = 0x2112A442  # RFC 8489 §5
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
ALLOCATE_REQUEST, ALLOCATE_SUCCESS, ALLOCATE_ERROR = 0x0003, 0x0103, 0x0113
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE = 0x0006, 0x0008, 0x0009
REALM, NONCE = 0x0014, 0x0015
XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = 0x0016, 0x0019
UDP = 17  # RFC 8656 §18.10: the protocol number of the relayed transport


def message(kind: int, attributes: list[tuple[int, bytes]], key: bytes | None = None) -> bytes:
    """A STUN message (RFC 8489 §5, §14); with ``key``, MESSAGE-INTEGRITY last (§14.5): the
    HMAC-SHA1 of the message up to it, with the length field already counting it."""
    tid = os.urandom(12)
    body = b"".join(struct.pack("!HH", kind_, len(value)) + value + b"\0" * (-len(value) % 4)
                    for kind_, value in attributes)
    if key is not None:
        header = struct.pack("!HHI", kind, len(body) + 24, MAGIC_COOKIE) + tid
        mac = hmac.new(key, header + body, hashlib.sha1).digest()
        body += struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
    return struct.pack("!HHI", kind, len(body), MAGIC_COOKIE) + tid + body


def parse(data: bytes) -> tuple[int, dict[int, bytes]]:
    kind, length, _ = struct.unpack("!HHI", data[:8])
    attributes: dict[int, bytes] = {}
    at = 20
    while at < 20 + length:
        kind_, size = struct.unpack("!HH", data[at:at + 4])
        attributes[kind_] = data[at + 4:at + 4 + size]
        at += 4 + size + (-size % 4)
    return kind, attributes


def error_code(attributes: dict[int, bytes]) -> int | None:
    """RFC 8489 §14.8: class (hundreds) and number in the 4th and 3rd bytes' low bits."""
    value = attributes.get(ERROR_CODE)
    return None if value is None else (value[2] & 0x7) * 100 + value[3]


def allocate(port: int, username: str, password: str) -> tuple[int, int | None]:
    """Allocate a UDP relay at the TURN server on 127.0.0.1:``port`` with these credentials,
    from a fresh local port (an allocation is per 5-tuple, RFC 8656 §2.2). Returns the answer's
    message type and its error code, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        transport = [(REQUESTED_TRANSPORT, bytes([UDP, 0, 0, 0]))]
        sock.sendto(message(ALLOCATE_REQUEST, transport), ("127.0.0.1", port))
        kind, attributes = parse(sock.recv(2048))
        assert (kind, error_code(attributes)) == (ALLOCATE_ERROR, 401), (kind, attributes)
        realm, nonce = attributes[REALM], attributes[NONCE]
        key = hashlib.md5(username.encode() + b":" + realm + b":" + password.encode()).digest()
        sock.sendto(message(ALLOCATE_REQUEST, [(USERNAME, username.encode()), (REALM, realm),
                                               (NONCE, nonce), *transport], key),
                    ("127.0.0.1", port))
        kind, attributes = parse(sock.recv(2048))
        if kind == ALLOCATE_SUCCESS:
            assert XOR_RELAYED_ADDRESS in attributes
        return kind, error_code(attributes)


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(message(BINDING_REQUEST, []), ("127.0.0.1", port))
        try:
            return parse(sock.recv(2048))[0] == BINDING_SUCCESS
        except OSError:
            return False


@contextlib.contextmanager
def coturn(tmp: Path, secret: str, realm: str = "localhost") -> Iterator[int]:
    """coturn on 127.0.0.1 with the TURN REST API's shared secret (`use-auth-secret`), UDP
    only, relaying on loopback; yields its port. Skips when coturn is not installed, except
    under CI=true (.ci/install-peers installs it)."""
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("coturn (turnserver) is missing: run .ci/install-peers")
        pytest.skip("coturn (turnserver) is not installed: run .ci/install-peers")
    port = free_port()
    relay = random.randrange(50000, 60000, 20)  # a small relay range of its own
    log = (tmp / "coturn.log").open("wb")
    process = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
         "--relay-ip=127.0.0.1", f"--min-port={relay}", f"--max-port={relay + 19}",
         "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={realm}",
         "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--log-file=stdout",
         "--simple-log", f"--pidfile={tmp / 'coturn.pid'}", f"--db={tmp / 'coturn.sqlite'}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("coturn did not start: "
                                     + (tmp / "coturn.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
