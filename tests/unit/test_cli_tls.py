"""The admin commands' HTTPS: the endpoint's certificate is checked unless it is on this
machine, so the Basic credentials never go to whoever answers a remote address. Real sockets:
an HTTPS server with a self-signed certificate on the machine's own non-loopback address."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from suricate.cli.admin import CAFILE_ENV, AdminCliError, Target, post, tls_context
from suricate.net.certs import ensure_self_signed


def test_loopback_is_not_checked_anything_else_is() -> None:
    for url in ("https://127.0.0.1:5551/api/graphql", "https://[::1]:5551/api/graphql",
                "https://localhost:5551/api/graphql"):
        context = tls_context(Target(url, None, None, None))
        assert context is not None and context.verify_mode == ssl.CERT_NONE, url
    remote = tls_context(Target("https://xmpp.example.com/api/graphql", None, None, None))
    assert remote is not None and remote.verify_mode == ssl.CERT_REQUIRED
    assert remote.check_hostname
    assert tls_context(Target("http://xmpp.example.com/api/graphql", None, None, None)) is None


def _own_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent: the route picks the address
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    address = _own_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            seen.append(self.headers.get("authorization") or "")
            body = b'{"data": {}}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((address, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert.certfile), str(cert.keyfile))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{server.server_address[1]}/api/graphql", seen
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_remote_certificate_gets_no_credentials(
        https_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = https_server
    monkeypatch.delenv(CAFILE_ENV, raising=False)
    with pytest.raises(AdminCliError, match="is not trusted.*credentials were not sent"):
        post(Target(url, None, "admin", "secret"), "{ __typename }")
    assert seen == []  # nothing reached the server, the password least of all
