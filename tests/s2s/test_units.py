"""Pure pieces of federation: SRV lookups against a fake nameserver, RFC 2782 ordering,
certificate name matching (RFC 6125), dialback keys (XEP-0185), the state tables."""

from __future__ import annotations

import asyncio
import random
import struct
from pathlib import Path

import pytest
from cryptography import x509

from suricate.net import dns
from suricate.net.peer_cert import TrustStore, names_domain
from suricate.protocol import component as C
from suricate.protocol import s2s as P
from suricate.protocol.fsm import InvalidTransition, StateMachine, mermaid
from tests.s2s.pki import CertificateAuthority


def _srv_reply(query: bytes, records: list[tuple[int, int, int, str]], rcode: int = 0) -> bytes:
    qid = struct.unpack("!H", query[:2])[0]
    question = query[12:]
    header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(records), 0, 0)
    answers = b""
    for priority, weight, port, target in records:
        name = b"".join(bytes([len(p)]) + p.encode() for p in target.split(".")) + b"\0"
        rdata = struct.pack("!HHH", priority, weight, port) + name
        # owner name compressed to the question (offset 12)
        answers += struct.pack("!HHHIH", 0xC00C, dns.TYPE_SRV, 1, 300, len(rdata)) + rdata
    return header + question + answers


class _FakeNameserver(asyncio.DatagramProtocol):
    def __init__(self, answers: dict[str, list[tuple[int, int, int, str]]],
                 silent: bool = False) -> None:
        self.answers = answers
        self.silent = silent
        self.asked: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        name, _ = dns._read_name(data, 12)
        self.asked.append(name)
        if self.silent:
            return
        records = self.answers.get(name)
        reply = _srv_reply(data, records or [], rcode=0 if records is not None else 3)
        self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


async def _nameserver(**kwargs: object) -> tuple[asyncio.DatagramTransport, _FakeNameserver, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _FakeNameserver(**kwargs),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0))
    return transport, proto, transport.get_extra_info("sockname")[1]


async def test_srv_lookup_against_a_nameserver() -> None:
    transport, proto, port = await _nameserver(answers={
        "_xmpp-server._tcp.example.test": [(10, 0, 5269, "xmpp1.example.test"),
                                           (20, 0, 5270, "xmpp2.example.test")]})
    try:
        resolver = dns.Resolver(timeout=1, retries=1, servers=[("127.0.0.1", port)])
        records = await resolver.srv("xmpp-server", "example.test")
        assert records == [dns.SRVRecord(10, 0, 5269, "xmpp1.example.test"),
                           dns.SRVRecord(20, 0, 5270, "xmpp2.example.test")]
        assert await resolver.srv("xmpps-server", "example.test") == []  # NXDOMAIN
    finally:
        transport.close()


async def test_srv_lookup_times_out_after_the_configured_retries() -> None:
    transport, proto, port = await _nameserver(answers={}, silent=True)
    try:
        resolver = dns.Resolver(timeout=0.2, retries=2, servers=[("127.0.0.1", port)])
        with pytest.raises(dns.DNSError):
            await resolver.srv("xmpp-server", "example.test")
        assert len(proto.asked) == 2  # s2s.outgoing.dns.retries
    finally:
        transport.close()


async def test_service_targets_prefer_direct_tls_at_equal_priority(tmp_path: Path) -> None:
    from tests.e2e.harness import free_port
    from tests.s2s.harness import federated_server, federated_toml
    transport, _, port = await _nameserver(answers={
        "_xmpp-server._tcp.remote.test": [(10, 0, 5269, "a.remote.test")],
        "_xmpps-server._tcp.remote.test": [(10, 0, 5270, "b.remote.test"),
                                           (5, 0, 443, "c.remote.test")]})
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp_path, "alpha.test", c2s, s2s, {}, "dialback", None)
    try:
        async with federated_server(tmp_path, "alpha.test", toml, c2s, s2s) as server:
            server.s2s.resolver.servers = [("127.0.0.1", port)]
            targets = await server.s2s.targets("remote.test")
            assert [(t.host, t.port, t.direct_tls) for t in targets] == [
                ("c.remote.test", 443, True), ("b.remote.test", 5270, True),
                ("a.remote.test", 5269, False)]
            # no SRV at all: the domain itself on s2s.outgoing.port (RFC 6120 §3.2.2)
            fallback = await server.s2s.targets("plain.test")
            assert [(t.host, t.port, t.direct_tls) for t in fallback] == [
                ("plain.test", 5269, False)]
    finally:
        transport.close()


def test_srv_order_is_by_priority_then_weight() -> None:
    records = [dns.SRVRecord(20, 0, 1, "c"), dns.SRVRecord(10, 100, 1, "a"),
               dns.SRVRecord(10, 0, 1, "b")]
    seen = {tuple(r.target for r in dns.srv_order(records, random.Random(i)))
            for i in range(20)}
    assert all(order[-1] == "c" for order in seen)
    assert ("a", "b", "c") in seen
    assert dns.service_unavailable([dns.SRVRecord(0, 0, 0, ".")])


def test_certificate_names(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    issued = ca.issue("example.test", ["example.test", "*.wild.test"])
    cert = x509.load_pem_x509_certificate(Path(issued.certfile).read_bytes())
    assert names_domain(cert, "example.test")
    assert names_domain(cert, "EXAMPLE.test")
    assert names_domain(cert, "muc.wild.test")
    assert not names_domain(cert, "a.b.wild.test")  # one label only (RFC 6125 §6.4.3)
    assert not names_domain(cert, "other.test")
    store = TrustStore(ca.certfile)
    assert store.verifies([cert])
    other = CertificateAuthority(tmp_path / "other")
    assert not TrustStore(other.certfile).verifies([cert])


def test_dialback_key_is_xep_0185() -> None:
    # XEP-0185 §2: HMAC-SHA256 keyed with hex(SHA256(secret)) over "Receiving Originating ID"
    import hashlib
    import hmac
    secret = "s3cr3tf0rd14lb4ck"
    expected = hmac.new(hashlib.sha256(secret.encode()).hexdigest().encode(),
                        b"example.net example.com D60000229F", hashlib.sha256).hexdigest()
    key = P.dialback_key(secret, "example.net", "example.com", "D60000229F")
    assert key == expected and len(key) == 64
    assert P.dialback_key(secret, "example.com", "example.net", "D60000229F") != key
    assert P.dialback_key("other", "example.net", "example.com", "D60000229F") != key


def test_state_tables_refuse_undeclared_moves() -> None:
    fsm = StateMachine(P.OUT_TRANSITIONS, P.Out.CONNECT)
    fsm.goto(P.Out.WAIT_FOR_STREAM)
    with pytest.raises(InvalidTransition):
        fsm.goto(P.Out.STREAM_ESTABLISHED)
    fsm_in = StateMachine(P.IN_TRANSITIONS, P.In.CONNECT)
    fsm_in.goto(P.In.WAIT_FOR_STREAM)
    with pytest.raises(InvalidTransition):
        fsm_in.goto(P.In.WAIT_FOR_DIALBACK_VERIFICATION)
    for table in (P.IN_TRANSITIONS, P.OUT_TRANSITIONS, C.TRANSITIONS):
        assert "stateDiagram-v2" in mermaid(table)


def test_state_diagrams_in_docs_match_the_tables() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    for table in (P.IN_TRANSITIONS, P.OUT_TRANSITIONS, C.TRANSITIONS):
        assert mermaid(table) in doc, "regenerate with: python -m suricate.protocol.diagram"


def test_component_handshake_digest() -> None:
    # XEP-0114 §3 example: stream id 3BF96D32, secret "test" (digest of "3BF96D32test")
    digest = C.handshake_digest("3BF96D32", "test")
    assert C.handshake_matches(digest.upper(), "3BF96D32", "test")
    assert not C.handshake_matches(digest, "3BF96D32", "other")


async def test_outgoing_shaper_gives_each_connection_a_bucket(tmp_path: Path) -> None:
    # s2s.outgoing.shaper was accepted by the config and then ignored.
    from tests.e2e.harness import free_port
    from tests.s2s.harness import federated_server, federated_toml
    c2s, s2s = free_port(), free_port()
    toml = federated_toml(tmp_path, "alpha.test", c2s, s2s, {}, "dialback", None,
                          extra="[shaper.slow]\nmax_rate = 1000",
                          outgoing_extra='shaper = "slow"')
    async with federated_server(tmp_path, "alpha.test", toml, c2s, s2s) as server:
        assert server.s2s.new_bucket is not None
        assert server.s2s.new_bucket().rate == 1000


def test_trust_store_checks_the_listeners_crl_files(tmp_path: Path) -> None:
    """An incoming s2s stream's certificate is judged after the handshake by the listener's
    TrustStore: with tls.crl_files, a revoked peer certificate does not verify (the stream
    then falls back to dialback or is refused, as without a valid certificate)."""
    from tests.auth.test_pki import revocation_list

    ca = CertificateAuthority(tmp_path)
    good, revoked = ca.issue("good.test"), ca.issue("revoked.test")
    crl = revocation_list(ca, [revoked.certfile], "ca.crl")
    store = TrustStore(ca.certfile, [crl])

    def load(certfile: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(Path(certfile).read_bytes())

    assert store.verifies([load(good.certfile)])
    assert not store.verifies([load(revoked.certfile)])
    assert TrustStore(ca.certfile).verifies([load(revoked.certfile)])
