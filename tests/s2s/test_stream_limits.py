"""XEP-0478 stream limits on s2s between two Suricate servers: the receiving server
advertises listen.s2s max_stanza_size, and the sending one refuses a bigger stanza to its
sender (policy-violation, RFC 6120 §8.3.3.12) instead of writing it and losing the stream."""

from __future__ import annotations

from pathlib import Path

from suricate.protocol import s2s as P
from suricate.xml.element import Element
from tests.e2e.harness import disconnect
from tests.s2s.harness import login, register, two_servers

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def test_max_bytes_is_read_from_the_features() -> None:
    features = Element("features", "http://etherx.jabber.org/streams")
    assert P.max_bytes(features) is None
    features.append(P.limits_feature(20000))
    assert P.max_bytes(features) == 20000
    features.children[0].children[0].children[0] = "many"  # <max-bytes>many</max-bytes>
    assert P.max_bytes(features) is None


async def test_a_stanza_over_the_peers_limit_bounces_and_the_stream_stays(
    tmp_path: Path,
) -> None:
    limited = {"beta.test": {"s2s_extra": "max_stanza_size = 20000"}}
    async with two_servers(tmp_path, "external", **limited) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        alice = await login(alpha, "alice@alpha.test/a")
        bob = await login(beta, "bob@beta.test/b")
        alice.send_message(mto="bob@beta.test/b", mbody="small", mtype="chat")
        assert (await bob.next_message())["body"] == "small"
        link = alpha.s2s.links[("alpha.test", "beta.test")]
        stream = link.stream
        assert stream is not None and stream.peer_max_bytes == 20000

        alice.send_message(mto="bob@beta.test/b", mbody="x" * 30000, mtype="chat")
        alice.send_message(mto="bob@beta.test/b", mbody="after", mtype="chat")
        error = await alice.next_message()
        assert error["type"] == "error"
        # read from the XML: slixmpp knows RFC 3920's conditions only
        assert error.xml.find(f"{{jabber:client}}error/{{{STANZAS}}}policy-violation") is not None
        assert "takes stanzas up to 20000 bytes" in error["error"]["text"]
        assert (await bob.next_message())["body"] == "after"
        assert link.stream is stream  # not lost to beta's policy-violation stream error
        await disconnect(alice, bob)
