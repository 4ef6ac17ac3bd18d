"""OMEMO devices with a real client library: slixmpp-omemo (python-omemo, oldmemo, twomemo),
keys kept in memory per device across logins. Import it after
``pytest.importorskip("slixmpp_omemo")``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import omemo.storage as omemo_storage
import slixmpp_omemo
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.server import Server
from tests.e2e.harness import Client, connect, eventually
from tests.omemo.conftest import OLD, TWO

PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0060", "xep_0115", "xep_0163", "xep_0203",
           "xep_0280", "xep_0297", "xep_0313", "xep_0334", "xep_0384")

# Each device's OMEMO state (identity key, sessions), by full JID: a device that logs in again
# is the same device, as a phone is after it lost its connection.
KEYS: dict[str, dict[str, Any]] = {}


class MemoryStorage(omemo_storage.Storage):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data

    async def _load(self, key: str) -> Any:
        if key in self.data:
            return omemo_storage.Just(self.data[key])
        return omemo_storage.Nothing()

    async def _store(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class Omemo(slixmpp_omemo.XEP_0384):  # type: ignore[misc]
    """The test's OMEMO plugin: keys in memory, blind trust before verification."""

    name = "xep_0384"

    def plugin_init(self) -> None:
        self._store = MemoryStorage(KEYS.setdefault(str(self.xmpp.requested_jid), {}))
        super().plugin_init()

    @property
    def storage(self) -> Any:
        return self._store

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _prompt_manual_trust(self, manually_trusted: Any, identifier: Any) -> None:
        raise AssertionError("blind trust is on: no manual decision expected")


async def device(server: Server, full: str, carbons: bool = True) -> Client:
    """An OMEMO device online: caps (+notify for both device lists) known to the server,
    carbons on, its device list and bundles published (the session manager is ready)."""
    from slixmpp.plugins.base import register_plugin
    register_plugin(Omemo)
    name = full.split("@")[0]
    client = await connect(server, full, f"{name}-pw", direct_tls=True, plugins=PLUGINS)
    client.auto_authorize = None
    client.auto_subscribe = False
    client.use_message_ids = True
    # slixmpp's "message" event is for messages with a <body>; omemo:2 ones have none
    client.register_handler(Callback("omemo:2", MatchXPath(
        f"{{jabber:client}}message/{{{TWO}}}encrypted"), client.messages.put_nowait))
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    if carbons:
        await client.plugin["xep_0280"].enable()
    client.send_presence()
    await asyncio.wait_for(omemo(client).get_session_manager(), 20)
    return client


def omemo(client: Client) -> Any:
    """The device's slixmpp-omemo plugin."""
    return client.plugin["xep_0384"]  # type: ignore[typeddict-item]


async def own_id(client: Client) -> int:
    manager = await omemo(client).get_session_manager()
    mine, _ = await manager.get_own_device_information()
    return int(mine.device_id)


async def known_devices(client: Client, bare: str) -> dict[int, frozenset[str]]:
    """The devices of ``bare`` this client's OMEMO knows, with their protocol namespaces."""
    manager = await omemo(client).get_session_manager()
    return {info.device_id: info.namespaces
            for info in await manager.get_device_information(bare)}


async def learns(client: Client, bare: str, ids: set[int], timeout: float = 10.0) -> None:
    """Wait until ``client`` knows devices ``ids`` of ``bare`` in both OMEMO generations,
    learnt from PEP notifications alone (with a mutual subscription slixmpp-omemo never
    downloads a contact's device list)."""
    async def check() -> bool:
        devices = await known_devices(client, bare)
        return all(devices.get(i, frozenset()) >= {OLD, TWO} for i in ids)
    await eventually(check, timeout)


async def encrypted(queue: asyncio.Queue[Any], client: Client, timeout: float = 10.0) -> Any:
    """The next OMEMO message in ``queue`` (other messages, e.g. PEP events, are skipped)."""
    while True:
        got = await asyncio.wait_for(queue.get(), timeout)
        if omemo(client).is_encrypted(got):
            return got


def sce_envelope(sender: str, text: str) -> bytes:
    """An XEP-0420 envelope around a body: what omemo:2 encrypts (slixmpp-omemo 2.2.0 has no
    SCE, so the tests wrap and unwrap it themselves)."""
    return (f"<envelope xmlns='urn:xmpp:sce:1'><content><body xmlns='jabber:client'>{text}"
            f"</body></content><rpad>xyz</rpad><from jid='{sender}'/></envelope>").encode()


async def twomemo_message(sender: Client, to: str, text: str, store: bool = True,
                          recipients: tuple[str, ...] = (),
                          mtype: Literal["chat", "groupchat"] = "chat") -> Any:
    """An omemo:2 message as Dino or Kaidan send it: no <body> at all, only <encrypted/>
    (the session built from the recipient's omemo:2 bundle) and a store hint (XEP-0420 §5
    asks for one; ``store=False``: a client that forgets it). ``recipients``: the bare JIDs
    to encrypt for (in a room, its members' real JIDs), ``to``'s by default."""
    import twomemo.etree
    manager = await omemo(sender).get_session_manager()
    bares = frozenset(recipients or (to.split("/")[0],))
    messages, errors = await manager.encrypt(bares,
                                             {TWO: sce_envelope(sender.boundjid.bare, text)},
                                             backend_priority_order=[TWO])
    assert not errors, errors
    stanza = sender.make_message(mto=to, mtype=mtype)
    if store:
        stanza.enable("store")
    for message in messages:
        assert message.namespace == TWO
        stanza.append(twomemo.etree.serialize_message(message))
    return stanza


async def decrypt_twomemo(client: Client, stanza: Any, sender: str | None = None
                          ) -> tuple[str, int]:
    """The body inside the SCE envelope of an omemo:2 ``stanza``, and the sending device.
    ``sender``: the sender's bare JID when ``from`` is not it (a room occupant's)."""
    import xml.etree.ElementTree as ET

    import twomemo.etree
    encrypted_el = stanza.xml.find(f"{{{TWO}}}encrypted")
    assert encrypted_el is not None, stanza
    manager = await omemo(client).get_session_manager()
    message = twomemo.etree.parse_message(encrypted_el, sender or stanza["from"].bare)
    plaintext, device_info, _ = await manager.decrypt(message)
    assert plaintext is not None
    body = ET.fromstring(plaintext).find(".//{jabber:client}body")
    assert body is not None and body.text is not None
    return body.text, int(device_info.device_id)


async def decrypt_oldmemo(client: Client, stanza: Any, sender: str) -> tuple[str, int]:
    """A legacy OMEMO ``stanza`` decrypted with the session manager, ``sender`` its sender's
    bare JID (slixmpp-omemo finds it for a groupchat message only among the occupants of a
    room it joined)."""
    import oldmemo.etree
    encrypted_el = stanza.xml.find(f"{{{OLD}}}encrypted")
    assert encrypted_el is not None, stanza
    manager = await omemo(client).get_session_manager()
    message = await oldmemo.etree.parse_message(encrypted_el, sender, client.boundjid.bare,
                                                manager)
    plaintext, device_info, _ = await manager.decrypt(message)
    assert plaintext is not None
    return plaintext.decode(), int(device_info.device_id)
