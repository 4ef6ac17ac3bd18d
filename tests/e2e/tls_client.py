"""A minimal blocking XMPP test client over real sockets and real TLS (pyOpenSSL), for what no
client library does: SCRAM-*-PLUS with tls-exporter / tls-server-end-point / tls-unique,
tampered channel bindings, exact stream bytes. Tests run it in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import select
import socket
import time

from cryptography import x509
from OpenSSL import SSL

from suricate.sasl.scram_client import ScramClient

STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='{to}' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


class TestClient:
    __test__ = False  # not a pytest class

    def __init__(self, port: int, direct_tls: bool = False, tls_version: str | None = None,
                 alpn: list[bytes] | None = None, sni: str = "localhost") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.settimeout(None)  # blocking; waits go through select()
        self.tls: SSL.Connection | None = None
        self.buffer = b""
        self.tls_version = tls_version
        self.alpn = alpn
        self.sni = sni
        if direct_tls:
            self._handshake()

    # -- transport ---------------------------------------------------------------------------
    def _handshake(self) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if self.tls_version == "1.2":
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        elif self.tls_version == "1.3":
            ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        if self.alpn:
            ctx.set_alpn_protos(self.alpn)
        conn = SSL.Connection(ctx, self.sock)
        conn.set_tlsext_host_name(self.sni.encode())
        conn.set_connect_state()
        self.sock.setblocking(True)
        conn.do_handshake()
        self.tls = conn

    def send(self, data: str) -> None:
        raw = data.encode()
        if self.tls is not None:
            self.tls.sendall(raw)
        else:
            self.sock.sendall(raw)

    def _recv(self, timeout: float) -> bytes | None:
        """Bytes, b"" when closed, None when nothing arrived within ``timeout``."""
        if self.tls is None or self.tls.pending() == 0:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
        try:
            if self.tls is not None:
                return self.tls.recv(65536)
            return self.sock.recv(65536)
        except SSL.WantReadError:
            return None  # a record with no application data (e.g. a session ticket)
        except (SSL.ZeroReturnError, SSL.SysCallError, ConnectionResetError):
            return b""

    def expect(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        regex = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            text = self.buffer.decode("utf-8", "replace")
            m = regex.search(text)
            if m:
                self.buffer = text[m.end():].encode()
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"timeout waiting for {pattern!r}; got {text!r}")
            chunk = self._recv(max(0.01, deadline - time.monotonic()))
            if chunk is None:
                continue
            if not chunk:
                raise AssertionError(f"closed waiting for {pattern!r}; got {text!r}")
            self.buffer += chunk

    def read_until_closed(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = self._recv(max(0.01, deadline - time.monotonic()))
            if chunk is None:
                continue
            if not chunk:
                return self.buffer.decode("utf-8", "replace")
            self.buffer += chunk
        raise AssertionError(f"server did not close; got {self.buffer!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- XMPP --------------------------------------------------------------------------------
    def open_stream(self, to: str = "localhost") -> str:
        self.send(STREAM_OPEN.format(to=to))
        return self.expect(r"<stream:features>.*?</stream:features>").group(0)

    def starttls(self) -> str:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.expect(r"<proceed[^>]*/>")
        self._handshake()
        return self.open_stream()

    @property
    def negotiated_version(self) -> str:
        assert self.tls is not None
        return self.tls.get_protocol_version_name()

    def binding(self, cb_type: str) -> bytes:
        assert self.tls is not None
        if cb_type == "tls-exporter":
            return self.tls.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        if cb_type == "tls-unique":
            finished = self.tls.get_finished()  # the client's Finished: first in a full handshake
            assert finished is not None
            return finished
        if cb_type == "tls-server-end-point":
            cert = self.tls.get_peer_certificate()
            assert cert is not None
            der = cert.to_cryptography().public_bytes(
                encoding=__import__("cryptography.hazmat.primitives.serialization",
                                    fromlist=["Encoding"]).Encoding.DER)
            algo = x509.load_der_x509_certificate(der).signature_hash_algorithm
            name = algo.name if algo is not None and algo.name not in ("md5", "sha1") \
                else "sha256"
            return hashlib.new(name, der).digest()
        raise ValueError(cb_type)

    def scram_login(self, user: str, password: str, hash_name: str = "SHA-256",
                    cb_type: str | None = None, tamper: bool = False) -> tuple[bool, str]:
        """Run a SCRAM exchange; return (success, the server's last SASL element)."""
        cb_data = self.binding(cb_type) if cb_type else b""
        if tamper:
            cb_data = bytes([cb_data[0] ^ 1]) + cb_data[1:]
        client = ScramClient(hash_name, user, password, cb_type=cb_type, cb_data=cb_data)
        first = base64.b64encode(client.first()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                  f"mechanism='{client.mechanism}'>{first}</auth>")
        m = self.expect(r"<(challenge|failure)[^>]*>(.*?)</\1>")
        if m.group(1) == "failure":
            return False, m.group(0)
        final = client.final(base64.b64decode(m.group(2)))
        self.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  f"{base64.b64encode(final).decode()}</response>")
        m = self.expect(r"<success[^>]*/>|<success[^>]*>.*?</success>|<failure[^>]*>.*?</failure>")
        text = m.group(0)
        if not text.startswith("<success"):
            return False, text
        data = re.search(r">(.*)</success>", text)
        assert data is not None, "SCRAM success must carry the server signature"
        assert client.verify(base64.b64decode(data.group(1))), "bad server signature"
        return True, text

    def bind(self, resource: str = "test") -> str:
        self.open_stream()
        self.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        return self.expect(r"<jid>(.*?)</jid>").group(1)


def logged_in(port: int, user: str, password: str, resource: str = "test") -> TestClient:
    """A TestClient through STARTTLS, PLAIN and bind."""
    client = TestClient(port)
    client.open_stream()
    client.starttls()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    client.expect(r"<success[^>]*(/>|>.*?</success>)")
    client.bind(resource)
    return client
