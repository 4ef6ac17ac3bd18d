"""XEP-0398 avatar conversion with slixmpp's xep_0084, xep_0054 and xep_0153 plugins over TLS:
a PEP avatar becomes the vCard PHOTO (and its hash is stamped on presence, XEP-0153), a vCard
PHOTO becomes the PEP avatar (notified to contacts), once each way (no loop)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import PLUGINS, accounts, friends, online

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 2
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"


async def photo_hashes(client: Any, of: str, wanted: str, timeout: float = 5.0) -> None:
    """Wait for a presence of ``of`` carrying the XEP-0153 hash ``wanted``."""
    async def wait() -> None:
        while True:
            pres = await client.presences.get()
            if pres["from"].bare == of and pres.xml.find(
                    "{vcard-temp:x:update}x/{vcard-temp:x:update}photo") is not None \
                    and pres["vcard_temp_update"]["photo"] == wanted:
                return
    await asyncio.wait_for(wait(), timeout)


async def test_pep_avatar_becomes_vcard_photo_and_presence_hash(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    plugins = (*PLUGINS, "xep_0084", "xep_0054", "xep_0153")
    bob, _ = await online(server, "bob", plugins=plugins)
    alice, _ = await online(server, "alice", plugins=plugins)
    disco: Any = alice.plugin["xep_0030"]
    info = await disco.get_info("alice@localhost")
    assert CONVERSION in info["disco_info"]["features"]  # XEP-0398 §2

    avatar = alice.plugin["xep_0084"]
    avatar_id = hashlib.sha1(PNG).hexdigest()
    await avatar.publish_avatar(PNG)
    await avatar.publish_avatar_metadata([{"id": avatar_id, "type": "image/png",
                                           "bytes": len(PNG)}])
    # The vCard anyone reads now has the PEP image as its PHOTO.
    card = await bob.plugin["xep_0054"].get_vcard("alice@localhost", cached=False)
    assert card["vcard_temp"]["PHOTO"]["BINVAL"] == PNG
    assert card["vcard_temp"]["PHOTO"]["TYPE"] == "image/png"
    # ...and the server sent alice's presence again with the new hash (XEP-0153 §4.1).
    await photo_hashes(bob, "alice@localhost", avatar_id)

    # No loop: the PEP avatar nodes hold the one item alice published.
    key = ("localhost", "alice")
    store = server.modules["mod_pubsub"].store
    assert [i.id for i in await store.get_items(key, "urn:xmpp:avatar:metadata")] == [avatar_id]

    # Metadata naming data that is not there converts nothing (XEP-0398 §3).
    bogus = hashlib.sha1(b"other").hexdigest()
    await avatar.publish_avatar_metadata([{"id": bogus, "type": "image/png", "bytes": 5}])
    card = await bob.plugin["xep_0054"].get_vcard("alice@localhost", cached=False)
    assert card["vcard_temp"]["PHOTO"]["BINVAL"] == PNG
    await disconnect(alice, bob)


async def test_vcard_photo_becomes_pep_avatar(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    plugins = (*PLUGINS, "xep_0084", "xep_0054", "xep_0153")
    alice, _ = await online(server, "alice", ("urn:xmpp:avatar:metadata",), plugins=plugins)
    bob, _ = await online(server, "bob", plugins=plugins)
    metadata: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("avatar_metadata_publish", metadata.put_nowait)

    # bob is a vCard-only client (XEP-0153 §3.1: the PHOTO in its vCard).
    await bob.plugin["xep_0153"].set_avatar(avatar=JPEG, mtype="image/jpeg")
    avatar_id = hashlib.sha1(JPEG).hexdigest()
    event = await asyncio.wait_for(metadata.get(), 5)
    assert str(event["from"]) == "bob@localhost"
    item = event["pubsub_event"]["items"]["item"]
    assert item["id"] == avatar_id
    assert item["avatar_metadata"]["info"]["type"] == "image/jpeg"
    assert int(item["avatar_metadata"]["info"]["bytes"]) == len(JPEG)
    fetched = await alice.plugin["xep_0084"].retrieve_avatar("bob@localhost", avatar_id)
    assert fetched["pubsub"]["items"]["item"]["avatar_data"]["value"] == JPEG
    await photo_hashes(alice, "bob@localhost", avatar_id)

    # Storing the same vCard again publishes nothing new (no loop, no duplicate).
    card = await bob.plugin["xep_0054"].get_vcard("bob@localhost", cached=False)
    await bob.plugin["xep_0054"].publish_vcard(card["vcard_temp"])
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(metadata.get(), 0.5)
    store = server.modules["mod_pubsub"].store
    assert len(await store.get_items(("localhost", "bob"), "urn:xmpp:avatar:metadata")) == 1
    await disconnect(alice, bob)
