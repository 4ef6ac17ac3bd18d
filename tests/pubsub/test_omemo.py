"""OMEMO (XEP-0384) end to end: two slixmpp-omemo clients publish their device lists and
bundles through Suricate's PEP (open access model, both the legacy
eu.siacs.conversations.axolotl nodes and the urn:xmpp:omemo:2 ones), fetch each other's, and
exchange an encrypted message that the recipient decrypts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import PLUGINS, accounts, friends, online

omemo_storage = pytest.importorskip("omemo.storage")
slixmpp_omemo = pytest.importorskip("slixmpp_omemo")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class MemoryStorage(omemo_storage.Storage):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}

    async def _load(self, key: str) -> Any:
        if key in self.data:
            return omemo_storage.Just(self.data[key])
        return omemo_storage.Nothing()

    async def _store(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class Omemo(slixmpp_omemo.XEP_0384):  # type: ignore[misc,name-defined]
    """The test's OMEMO plugin: keys in memory, blind trust before verification."""

    name = "xep_0384"

    def plugin_init(self) -> None:
        self._store = MemoryStorage()
        super().plugin_init()

    @property
    def storage(self) -> Any:
        return self._store

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _prompt_manual_trust(self, manually_trusted: Any, identifier: Any) -> None:
        raise AssertionError("blind trust is on: no manual decision expected")


async def omemo_client(server: Server, name: str) -> Any:
    from slixmpp.plugins.base import register_plugin
    register_plugin(Omemo)
    client, _ = await online(server, name, plugins=(*PLUGINS, "xep_0280", "xep_0334",
                                                    "xep_0384"))
    client.use_message_ids = True
    await asyncio.wait_for(client.plugin["xep_0384"].get_session_manager(), 20)
    return client


async def test_omemo_message_between_two_clients(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice = await omemo_client(server, "alice")
    bob = await omemo_client(server, "bob")
    store = server.module_stores["mod_pubsub"]
    nodes = {n: c for n, c in await store.list_nodes(("localhost", "bob"))}
    # Both OMEMO generations published their device list and bundles with open access.
    assert nodes["eu.siacs.conversations.axolotl.devicelist"]["access_model"] == "open"
    assert nodes["urn:xmpp:omemo:2:devices"]["access_model"] == "open"
    assert nodes["urn:xmpp:omemo:2:bundles"]["max_items"] == "max"
    assert any(n.startswith("eu.siacs.conversations.axolotl.bundles:") for n in nodes)

    received: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("message", received.put_nowait)
    message = alice.make_message(mto="bob@localhost", mtype="chat")
    message["body"] = "meet at noon"
    encrypted, errors = await alice.plugin["xep_0384"].encrypt_message(message, message["to"])
    assert encrypted is not None and not errors
    assert "meet at noon" not in str(encrypted)
    encrypted.send()
    while True:
        got = await asyncio.wait_for(received.get(), 10)
        if bob.plugin["xep_0384"].is_encrypted(got):
            break
    decrypted, device = await bob.plugin["xep_0384"].decrypt_message(got)
    assert decrypted["body"] == "meet at noon"
    assert device.bare_jid == "alice@localhost"
    await disconnect(alice, bob)
