"""poezio 0.14 (Debian 12's ``poezio``, on Debian's slixmpp 1.8.3) on the embedded default: the
exact stanzas it sends, replayed over real TLS, where the walk with the real client found the
server short of what the client expects (docs/compliance.md, "poezio")."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from tests.e2e.harness import RawClient, serving_the_default


@pytest.fixture
async def default(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default's configuration on free ports, with alice."""
    async with serving_the_default(tmp_path, ("alice",)) as server:
        yield server


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def auth(mechanism: str, initial: str) -> str:
    return (f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>"
            f"{b64(initial)}</auth>")


# What slixmpp 1.8.3 tries, in this order, against the default's mechanisms (its log, -d):
# every -PLUS with p=tls-unique (it knows no other binding; TLS 1.3 has no tls-unique,
# RFC 9266 §3, so the server offers tls-exporter and tls-server-end-point, XEP-0440), then
# every plain SCRAM with "y" (RFC 5802 §6: refused, the server does offer -PLUS), then PLAIN.
HASHES = ("512", "384", "256", "224", "1")
PLUS = [auth(f"SCRAM-SHA-{h}-PLUS", f"p=tls-unique,,n=alice,r=85691774174659{i}")
        for i, h in enumerate(HASHES)]
Y = [auth(f"SCRAM-SHA-{h}", f"y,,n=alice,r=18245910030639{i}") for i, h in enumerate(HASHES)]


async def test_poezio_logs_in_on_its_first_stream(default: Server) -> None:
    """Each refusal of the channel binding came before any credential was read, yet counted
    as a failed attempt: the stream ended after three (policy-violation) and poezio
    reconnected three times before PLAIN, and each refusal counted against the account's
    login waits. They are no guesses now: ten refusals, then PLAIN, on one stream."""
    client = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.send("<?xml version='1.0'?><stream:stream to='localhost' "
                      "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                      "version='1.0'>")
    features = await client.expect(r"<stream:features.*?</stream:features>")
    assert "tls-unique" not in features and "tls-exporter" in features
    for attempt in PLUS:
        await client.send(attempt)
        failure = await client.expect(r"<failure.*?</failure>|<stream:error")
        assert "unsupported-channel-binding-type" in failure
    for attempt in Y:
        await client.send(attempt)
        failure = await client.expect(r"<failure.*?</failure>|<stream:error")
        assert "server-does-support-channel-binding" in failure
    await client.send(auth("PLAIN", "\0alice\0pw"))
    await client.expect(r"<success[^>]*?(/>|>.*?</success>)")
    # Nothing was guessed: alice's next login does not wait (suricate.auth.failures).
    assert not default.auth_failures.delay(None, "alice@localhost")
    await client.close()


async def test_channel_binding_refusals_stay_bounded(default: Server) -> None:
    """Past one refusal per SCRAM mechanism offered, they count as failures again (RFC 6120
    §6.4.5): a client cannot retry forever on one stream."""
    client = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.open_stream()
    for attempt in (PLUS + Y)[:10]:
        await client.send(attempt)
        await client.expect(r"<failure.*?</failure>")
    for _ in range(3):
        await client.send(PLUS[0])
    rest = (await client.closed()).decode()
    assert "policy-violation" in rest
    await client.close()


async def test_private_storage_is_on_the_domains_disco(default: Server) -> None:
    """poezio 0.14 looks for remote bookmark storage in the disco#info of the domain only
    (``jabber:iq:private`` or PEP's ``pubsub#publish``): without either it said "No remote
    bookmark storage available" and neither read nor saved bookmarks on the server, so
    none autojoined. Prosody 0.12's mod_private lists it there."""
    client = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.open_stream()
    await client.send(auth("PLAIN", "\0alice\0pw"))
    await client.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await client.open_stream()
    await client.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      "<resource>poezio-hrYZ</resource></bind></iq>")
    await client.expect(r"<iq[^>]*id=.b.*?</iq>")
    await client.send("<iq id='13516a0a' to='localhost' type='get'>"
                      "<query xmlns='http://jabber.org/protocol/disco#info' /></iq>")
    info = await client.expect(r"<iq[^>]*id=.13516a0a.*?</iq>")
    assert "jabber:iq:private" in info
    # ...and what poezio then asks (use_bookmarks_method = privatexml, its default) works.
    await client.send("<iq type='get' id='pv'><query xmlns='jabber:iq:private'>"
                      "<storage xmlns='storage:bookmarks' /></query></iq>")
    stored = await client.expect(r"<iq[^>]*id=.pv.*?</iq>")
    assert "type=\"result\"" in stored.replace("'", '"')
    await client.close()
