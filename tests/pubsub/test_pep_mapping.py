"""modules.mod_pubsub.pep_mapping (MongooseIM 6.4): a PEP node named in the mapping is created
with the default configuration of its plugin; "flat" makes it open (readable by anyone), where
the "pep" default asks for a presence subscription."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from tests.e2e.harness import disconnect, running_server
from tests.pubsub.conftest import PUBSUB_MODULES, accounts, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPEN_NS = "urn:example:mapped"
TUNE = "http://jabber.org/protocol/tune"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    modules = PUBSUB_MODULES + f'pep_mapping = [{{namespace = "{OPEN_NS}", node = "flat"}}]\n'
    async with running_server(tmp_path, modules=modules) as srv:
        yield srv


async def test_a_mapped_pep_node_takes_the_flat_defaults(server: Server) -> None:
    await accounts(server, "alice", "dave")
    alice, _ = await online(server, "alice")
    dave, _ = await online(server, "dave")  # no subscription to alice's presence
    try:
        pubsub = alice.plugin["xep_0060"]
        await pubsub.publish("alice@localhost", OPEN_NS, id="m1",
                             payload=payload(f"<x xmlns='{OPEN_NS}'/>"))
        await pubsub.publish("alice@localhost", TUNE, id="t1",
                             payload=payload(f"<tune xmlns='{TUNE}'/>"))
        # flat: open access model, so a stranger reads the mapped node...
        items = await dave.plugin["xep_0060"].get_items("alice@localhost", OPEN_NS)
        assert [i["id"] for i in items["pubsub"]["items"]] == ["m1"]
        # ...but not the other PEP nodes (pep: presence access model).
        with pytest.raises(IqError) as err:
            await dave.plugin["xep_0060"].get_items("alice@localhost", TUNE)
        assert err.value.condition == "not-authorized"
        # the node keeps up to 10 items (flat), not 1 (pep)
        await pubsub.publish("alice@localhost", OPEN_NS, id="m2",
                             payload=payload(f"<x xmlns='{OPEN_NS}'/>"))
        items = await dave.plugin["xep_0060"].get_items("alice@localhost", OPEN_NS)
        assert sorted(i["id"] for i in items["pubsub"]["items"]) == ["m1", "m2"]
    finally:
        await disconnect(alice, dave)
