"""Room avatars (XEP-0486 MUC Avatars: vcard-temp on the room's bare JID), with real slixmpp
clients over TLS (xep_0054 for the vCards): who sets and reads them, the 104 notice, the
muc#roominfo_avatarhash disco field, the size limit, persistence across a restart and
destruction."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from suricate.core.module import open_module_store
from suricate.core.server import Server
from suricate.modules.mod_muc.store import MucStore
from suricate.storage.sql import SqlStorage
from tests.e2e.harness import Client, disconnect, running_server
from tests.muc.conftest import (
    SERVICE,
    MyDatabase,
    PgDatabase,
    codes,
    create_instant,
    create_room,
    muc_toml,
    pool_toml,
    user,
)

ROOM = f"garden@{SERVICE}"
VCARD = "vcard-temp"
AVATARHASH = "muc#roominfo_avatarhash"
# The server hashes and stores the bytes; it does not decode the image.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def vuser(server: Server, name: str) -> Client:
    client = await user(server, name)
    client.register_plugin("xep_0054")
    return client


async def publish(client: Client, photo: bytes | None, room: str = ROOM) -> None:
    """The room's vCard set with xep_0054 (None: an empty vCard, removing the avatar)."""
    vcard = client.plugin["xep_0054"].make_vcard()
    if photo is not None:
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = photo
    await client.plugin["xep_0054"].publish_vcard(vcard, jid=SJID(room), timeout=5)


async def read_photo(client: Client, room: str = ROOM) -> bytes | None:
    iq = await client.plugin["xep_0054"].get_vcard(SJID(room), cached=False, timeout=5)
    vcard = iq.xml.find(f"{{{VCARD}}}vCard")
    assert vcard is not None  # an empty vCard without one, never an error
    binval = vcard.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
    return iq["vcard_temp"]["PHOTO"]["BINVAL"] if binval else None


async def room_info(client: Client, room: str = ROOM) -> tuple[set[str], list[str] | None]:
    """The room's disco#info features and its avatarhash values (None: no such field)."""
    info = await client.plugin["xep_0030"].get_info(jid=SJID(room), timeout=5)
    features = set(info["disco_info"]["features"])
    for form in info.xml.iter("{jabber:x:data}x"):
        for field in form.iter("{jabber:x:data}field"):
            if field.get("var") == AVATARHASH:
                assert field.get("type") == "text-multi"
                return features, [v.text or "" for v in field.iter("{jabber:x:data}value")]
    return features, None


def notices(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("groupchat_config_status", queue.put_nowait)
    return queue


async def raw_set(client: Client, payload: str, room: str = ROOM) -> str:
    """The error condition of a raw vCard set to the room."""
    iq = client.make_iq_set(ito=room)
    iq.xml.append(ET.fromstring(payload))
    with pytest.raises(IqError) as err:
        await iq.send(timeout=5)
    return str(err.value.condition)


async def test_owner_sets_everyone_reads_and_learns_of_it(server: Server) -> None:
    alice, bob, carol = (await vuser(server, "alice"), await vuser(server, "bob"),
                         await vuser(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # §3.1: the service and the room list vcard-temp; no avatar, no hash field (§4).
    service = await carol.plugin["xep_0030"].get_info(jid=SERVICE, timeout=5)
    assert VCARD in service["disco_info"]["features"]
    features, hashes = await room_info(carol)
    assert VCARD in features and hashes is None
    assert await read_photo(carol) is None
    alice_notices, bob_notices = notices(alice), notices(bob)

    # §3.2: the owner publishes; the occupants hear of a configuration change (104).
    await publish(alice, PNG)
    for queue in (alice_notices, bob_notices):
        notice = await asyncio.wait_for(queue.get(), 5)
        assert str(notice["from"]) == ROOM and codes(notice) == {"104"}
    # §3.3: the hash (XEP-0153's SHA-1 of the image) in disco#info, for non-occupants too.
    digest = hashlib.sha1(PNG).hexdigest()
    assert (await room_info(carol))[1] == [digest]
    # §3.4: an occupant and a non-occupant read the photo back.
    assert await read_photo(bob) == PNG
    assert await read_photo(carol) == PNG

    # §3.2 / §6: only owners set it.
    with pytest.raises(IqError) as err:
        await publish(bob, b"not mine")
    assert err.value.condition == "forbidden"
    with pytest.raises(IqError) as err:
        await publish(carol, b"not mine")
    assert err.value.condition == "forbidden"
    assert await read_photo(carol) == PNG

    # The same vCard again changes nothing: no notice (one is sent before the room answers
    # Bob's next query, on the same stream).
    await publish(alice, PNG)
    await room_info(bob)
    assert bob_notices.empty()
    # §3.2: an empty vCard removes the avatar (104 again, no hash any more).
    await publish(alice, None)
    notice = await asyncio.wait_for(bob_notices.get(), 5)
    assert codes(notice) == {"104"}
    assert (await room_info(carol))[1] is None
    assert await read_photo(bob) is None
    await disconnect(alice, bob, carol)


async def test_bad_vcards_are_refused(server: Server) -> None:
    alice = await vuser(server, "alice")
    await create_instant(alice, ROOM, "Alice")
    # Past the limit of an account's vCard (64 KiB): not-acceptable, as mod_vcard.
    big = "A" * (70 * 1024)
    assert await raw_set(alice, f"<vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE>"
                                f"<BINVAL>{big}</BINVAL></PHOTO></vCard>") == "not-acceptable"
    # A photo that is not base64 could not be shown nor hashed.
    assert await raw_set(alice, f"<vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE>"
                                "<BINVAL>!!not base64!!</BINVAL></PHOTO></vCard>") \
        == "bad-request"
    assert await read_photo(alice) is None
    # §5.1: several photos, one hash each.
    other = b"\x89PNG second"
    iq = alice.make_iq_set(ito=ROOM)
    iq.xml.append(ET.fromstring(
        f"<vCard xmlns='{VCARD}'><FN>The Garden</FN>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{_b64(PNG)}</BINVAL></PHOTO>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{_b64(other)}</BINVAL></PHOTO></vCard>"))
    await iq.send(timeout=5)
    assert (await room_info(alice))[1] == [hashlib.sha1(PNG).hexdigest(),
                                          hashlib.sha1(other).hexdigest()]
    # XEP-0054 §3.2: the whole vCard is kept, not only the photo.
    got = await alice.plugin["xep_0054"].get_vcard(SJID(ROOM), cached=False, timeout=5)
    assert got["vcard_temp"]["FN"] == "The Garden"
    await disconnect(alice)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_store_keeps_and_forgets_the_vcard(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_muc", MucStore)
    assert isinstance(store, MucStore)
    vcard = f"<vCard xmlns='{VCARD}'><FN>x</FN></vCard>"
    await store.store_room(SERVICE, "garden", {"persistent": True}, "", "",
                           {"alice@localhost": ("owner", "")}, vcard=vcard)
    room = await store.load_room(SERVICE, "garden")
    assert room is not None and room.vcard == vcard
    await store.set_vcard(SERVICE, "garden", None)
    room = await store.load_room(SERVICE, "garden")
    assert room is not None and room.vcard is None
    await store.set_vcard(SERVICE, "garden", vcard)
    await store.delete_room(SERVICE, "garden")
    await store.store_room(SERVICE, "garden", {"persistent": True}, "", "", {})
    room = await store.load_room(SERVICE, "garden")
    assert room is not None and room.vcard is None  # a new room of the same name


async def test_avatar_survives_restart_and_goes_with_the_room(
        tmp_path: Path, backend: PgDatabase | MyDatabase | None) -> None:
    pool = await pool_toml(backend)
    digest = hashlib.sha1(PNG).hexdigest()
    async with running_server(tmp_path, modules=muc_toml(), pool_toml=pool) as server:
        alice = await vuser(server, "alice")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True})
        await publish(alice, PNG)
        await disconnect(alice)
    async with running_server(tmp_path, modules=muc_toml(), pool_toml=pool) as server:
        bob = await vuser(server, "bob")
        # Read back from storage: the hash before anyone joins, then the photo.
        assert (await room_info(bob))[1] == [digest]
        assert await read_photo(bob) == PNG
        # §10.9: destroyed, the room's vCard goes with it.
        alice = await vuser(server, "alice")
        await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
        destroy = alice.make_iq_set(ito=ROOM)
        destroy.xml.append(ET.fromstring(
            "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>"))
        await destroy.send(timeout=5)
        store = server.module_stores["mod_muc"]
        assert isinstance(store, MucStore)
        for _ in range(100):
            if await store.load_room(SERVICE, "garden") is None:
                break
            await asyncio.sleep(0.02)
        assert await store.load_room(SERVICE, "garden") is None
        await disconnect(alice, bob)
    async with running_server(tmp_path, modules=muc_toml(), pool_toml=pool) as server:
        # A new room of the same name starts without the old avatar.
        alice = await vuser(server, "alice")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True})
        assert (await room_info(alice))[1] is None
        assert await read_photo(alice) is None
        await disconnect(alice)

