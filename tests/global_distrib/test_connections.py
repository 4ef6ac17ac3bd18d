"""The connections between data centres (connections.py), in one process over real sockets:

- stanzas written toward a data centre are acknowledged by the receiver, which routes them in
  order; the sender's un-acknowledged queue empties;
- a peer that reads stanzas and dies without acknowledging them: each is handed back to
  ``on_lost`` (RFC 6121 §8 at the sender), in order, and sends toward it fail at once for a
  while instead of reconnecting per stanza;
- TLS admits only a data centre whose certificate the CA issued: a self-signed client is
  refused before any stanza is routed.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from suricate.modules.mod_global_distrib import _tls_contexts
from suricate.modules.mod_global_distrib.connections import (
    Connections,
    Item,
    frame,
    read_frame,
)
from tests.e2e.harness import eventually
from tests.s2s.pki import CertificateAuthority


def _conns(local: str, got: list[tuple[str, Item]], lost: list[tuple[str, list[Item]]],
           endpoints: dict[str, list[str]], ctxs: Any = (None, None)) -> Connections:
    async def endpoints_of(host: str) -> list[str]:
        return endpoints.get(host, [])

    return Connections(local, 2, ctxs[0], ctxs[1],
                       lambda origin, item, sent: got.append((origin, item)),
                       lambda host, items: lost.append((host, items)),
                       endpoints_of, lambda event, labels: None)


def _item(i: int) -> Item:
    return ("alice@localhost/r", "bob@localhost/r",
            f"<message type='chat'><body>{i}</body></message>", 3)


def test_acknowledged_in_order_over_tls(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    tls = {}
    for dc in ("dc1", "dc2"):
        issued = ca.issue(f"{dc}.localhost")
        tls[dc] = _tls_contexts({"certfile": issued.certfile, "keyfile": issued.keyfile,
                                 "cacertfile": ca.certfile})

    async def run() -> None:
        got: list[tuple[str, Item]] = []
        lost: list[tuple[str, list[Item]]] = []
        endpoints: dict[str, list[str]] = {}
        b = _conns("dc2.localhost", got, lost, endpoints, tls["dc2"])
        endpoints["dc2.localhost"] = await b.listen([("127.0.0.1", 0)])
        a = _conns("dc1.localhost", [], lost, endpoints, tls["dc1"])
        try:
            for i in range(50):
                assert await a.send("dc2.localhost", "alice@localhost/r", _item(i))
            await eventually(lambda: len(got) == 50)
            assert [item for _, item in got] == [_item(i) for i in range(50)]
            assert {origin for origin, _ in got} == {"dc1.localhost"}
            # One sender, one connection: all acknowledged there.
            pool = a._pools["dc2.localhost"]
            await eventually(lambda: not any(c.unacked for cs in pool.values() for c in cs))
            assert lost == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_unacknowledged_stanzas_come_back_when_the_peer_dies() -> None:
    async def run() -> None:
        received = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert (await read_frame(reader))["h"] == "dc1.localhost"
            for _ in range(5):
                await read_frame(reader)
            received.set()
            writer.transport.abort()  # died before acknowledging anything

        peer = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = peer.sockets[0].getsockname()[1]
        lost: list[tuple[str, list[Item]]] = []
        a = _conns("dc1.localhost", [], lost, {"dc2.localhost": [f"127.0.0.1:{port}"]})
        try:
            for i in range(5):
                assert await a.send("dc2.localhost", "alice@localhost/r", _item(i))
            await asyncio.wait_for(received.wait(), 5)
            await eventually(lambda: bool(lost))
            assert lost == [("dc2.localhost", [_item(i) for i in range(5)])]
            # Down for a while: no new connection per stanza.
            assert not await a.send("dc2.localhost", "alice@localhost/r", _item(9))
        finally:
            await a.close()
            peer.close()

    asyncio.run(run())


def test_tls_refuses_a_data_centre_the_ca_did_not_issue(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    rogue_ca = CertificateAuthority(tmp_path / "rogue", name="Rogue CA")
    issued = ca.issue("dc2.localhost")
    rogue = rogue_ca.issue("dc9.localhost")
    server_ctx, _ = _tls_contexts({"certfile": issued.certfile, "keyfile": issued.keyfile,
                                   "cacertfile": ca.certfile})

    async def run() -> None:
        got: list[tuple[str, Item]] = []
        b = _conns("dc2.localhost", got, [], {}, (server_ctx, None))
        (endpoint,) = await b.listen([("127.0.0.1", 0)])
        port = int(endpoint.rpartition(":")[2])
        client = ssl.create_default_context(cafile=ca.certfile)
        client.check_hostname = False
        client.load_cert_chain(rogue.certfile, rogue.keyfile)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(frame({"h": "dc9.localhost"}))
            writer.write(frame({"f": "mallory@localhost/x", "t": "bob@localhost/r",
                                "x": "<message><body>forged</body></message>", "l": 3}))
            await writer.drain()
            await asyncio.wait_for(reader.read(), 3)  # closed by the server
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
        assert got == []
        await b.close()

    asyncio.run(run())
