"""TLSLayer over memory BIOs against the stdlib client: session resumption (tickets) on every
verify_mode, and reads that leave nothing behind."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from suricate.net.certs import ensure_self_signed
from suricate.net.tls import TLSConfig, TLSLayer


def _client(version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = version
    return ctx


def _connect(config: TLSConfig, cctx: ssl.SSLContext,
             session: ssl.SSLSession | None = None) -> tuple[ssl.SSLObject, TLSLayer,
                                                          ssl.MemoryBIO, ssl.MemoryBIO]:
    layer = config.new_session()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(incoming, outgoing, server_hostname="localhost", session=session)
    for _ in range(10):
        try:
            client.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = outgoing.read()
        if data:
            _, back = layer.receive(data)
            incoming.write(back)
        if done and layer.established:
            break
    assert layer.established
    return client, layer, incoming, outgoing


@pytest.mark.parametrize("verify_mode", ["none", "peer", "selfsigned_peer"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sessions_resume(tmp_path: Path, verify_mode: str, version: ssl.TLSVersion) -> None:
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    config = TLSConfig({"certfile": cert.certfile, "keyfile": cert.keyfile,
                        "verify_mode": verify_mode, "cacertfile": cert.certfile})
    cctx = _client(version)
    client, layer, incoming, outgoing = _connect(config, cctx)
    # TLS 1.3 tickets come after the handshake: a round trip of data delivers them.
    client.write(b"ping")
    plain, back = layer.receive(outgoing.read())
    assert plain == b"ping"
    incoming.write(back + layer.send(b"pong"))
    assert client.read(4) == b"pong"
    again, _, _, _ = _connect(config, cctx, client.session)
    assert again.session_reused


def test_receive_returns_every_record(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    config = TLSConfig({"certfile": cert.certfile, "keyfile": cert.keyfile,
                        "verify_mode": "none"})
    client, layer, incoming, outgoing = _connect(config, _client(ssl.TLSVersion.TLSv1_3))
    chunks = [bytes([65 + i % 26]) * 10000 for i in range(7)]  # several records, one read
    for chunk in chunks:
        client.write(chunk)
    plain, _ = layer.receive(outgoing.read())
    assert plain == b"".join(chunks)


@pytest.mark.parametrize("version, types", [
    (ssl.TLSVersion.TLSv1_2, ["tls-unique", "tls-server-end-point"]),
    (ssl.TLSVersion.TLSv1_3, ["tls-exporter", "tls-server-end-point"])])
def test_channel_binding_types_are_worked_out_once(tmp_path: Path, version: ssl.TLSVersion,
                                                   types: list[str]) -> None:
    """A login asks them three or four times (features, mechanisms, SCRAM's context): the
    version is read once, after the handshake, and each caller gets its own list."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    config = TLSConfig({"certfile": cert.certfile, "keyfile": cert.keyfile,
                        "verify_mode": "none"})
    layer = config.new_session()
    assert layer.channel_binding_types() == []  # before the handshake
    _, layer, _, _ = _connect(config, _client(version))
    reads = []
    conn = layer.conn

    class Counting:
        def get_protocol_version_name(self) -> str:
            reads.append(1)
            return conn.get_protocol_version_name()

    layer.conn = Counting()  # type: ignore[assignment]
    first = layer.channel_binding_types()
    assert first == types
    first.append("changed by a caller")
    assert layer.channel_binding_types() == types
    assert layer.channel_binding_types() == types
    assert len(reads) == 1
