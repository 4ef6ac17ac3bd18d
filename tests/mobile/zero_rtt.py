"""A TLS 1.3 client that can send 0-RTT early data (pyOpenSSL, with the OpenSSL call it lacks,
``SSL_write_early_data``, from cryptography's bindings), for the FAST 0-RTT tests and
bench/logins.py, and a recording proxy so a test can replay a client's first flight."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


class EarlyDataRefused(Exception):
    """The session (ticket) does not allow early data."""


def client_context() -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    return ctx


class ZeroRttClient:
    def __init__(self, port: int, ctx: SSL.Context, session: SSL.Session | None = None,
                 early: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.settimeout(None)  # blocking for OpenSSL; waits go through select()
        self.conn = SSL.Connection(ctx, self.sock)
        self.conn.set_tlsext_host_name(b"localhost")
        self.conn.set_connect_state()
        if session is not None:
            self.conn.set_session(session)
        self.buffer = ""
        if early is not None:
            data = early.encode()
            written = ffi.new("size_t *")
            # RFC 8446 §2.3: the ClientHello and this data leave together
            if lib.SSL_write_early_data(self.conn._ssl, data, len(data), written) != 1:  # noqa: SLF001
                lib.ERR_clear_error()
                raise EarlyDataRefused("SSL_write_early_data failed")
        self.conn.do_handshake()

    def send(self, data: str) -> None:
        self.conn.sendall(data.encode())

    def _read(self, timeout: float) -> None:
        if self.conn.pending() == 0:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
        try:
            chunk = self.conn.recv(65536)
        except SSL.WantReadError:
            return  # a record without application data (a session ticket)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buffer += chunk.decode().replace('"', "'")

    def expect(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        regex = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.buffer)
            if m:
                self.buffer = self.buffer[m.end():]
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"timeout waiting for {pattern!r}; got {self.buffer!r}")
            self._read(max(0.01, deadline - time.monotonic()))

    def session(self, settle: float = 0.1) -> SSL.Session:
        """The session to resume, once the server's tickets (RFC 8446 §4.6.1) are read."""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            self._read(0.02)
        session = self.conn.get_session()
        assert session is not None
        return session

    @property
    def resumed(self) -> bool:
        return bool(lib.SSL_session_reused(self.conn._ssl))  # noqa: SLF001

    def close(self) -> None:
        # Marked as shut down so that OpenSSL, freeing the connection, does not take it for
        # a failed one and make its session (our ticket) non-resumable.
        self.conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        with contextlib.suppress(OSError):
            self.sock.close()


class RecordingProxy:
    """Forwards one connection at a time to the server and keeps the client's first flight
    (what an attacker on the path could record and replay)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_flights: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target))
        first = True
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 10)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if first:
                            self.first_flights.append(data)
                            first = False
                        server.sendall(data)
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self.listener.close()


def replay(port: int, first_flight: bytes, wait: float = 0.5) -> bytes:
    """Send a recorded first flight on a new connection, as an attacker would, and return
    what came back (the attacker cannot finish the handshake)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(first_flight)
        got = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        return got
    finally:
        sock.close()
