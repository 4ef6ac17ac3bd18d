"""XEP-0084 User Avatar through PEP with slixmpp's plugin: the contact hears about the new
metadata (it asked for it with +notify), not about the data, and fetches the data by id."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import PLUGINS, accounts, friends, online

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def test_avatar_metadata_notified_and_data_fetched(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    plugins = (*PLUGINS, "xep_0084")
    alice, _ = await online(server, "alice", plugins=plugins)
    bob, _ = await online(server, "bob", ("urn:xmpp:avatar:metadata",), plugins=plugins)
    metadata: asyncio.Queue[Any] = asyncio.Queue()
    data: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("avatar_metadata_publish", metadata.put_nowait)
    bob.add_event_handler("avatar_data_publish", data.put_nowait)
    avatar = alice.plugin["xep_0084"]
    await avatar.publish_avatar(PNG)
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await avatar.publish_avatar_metadata([{"id": avatar_id, "type": "image/png",
                                           "bytes": len(PNG)}])
    event = await asyncio.wait_for(metadata.get(), 5)
    info = event["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
    assert info["id"] == avatar_id and int(info["bytes"]) == len(PNG)
    assert data.empty()  # no +notify for urn:xmpp:avatar:data
    fetched = await bob.plugin["xep_0084"].retrieve_avatar("alice@localhost", avatar_id)
    assert fetched["pubsub"]["items"]["item"]["avatar_data"]["value"] == PNG
    await disconnect(alice, bob)
