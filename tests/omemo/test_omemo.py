"""OMEMO (XEP-0384) end to end with slixmpp-omemo devices through Suricate's embedded default:
device lists and bundles of both generations (legacy ``eu.siacs.conversations.axolotl`` and
``urn:xmpp:omemo:2``) on PEP, seen by contacts through +notify alone; encrypted messages
decrypted by the contact's devices (directly and through carbons), by the sender's other
device (sent carbon), after an offline period (offline storage) and from the archive (MAM).

slixmpp-omemo 2.2.0 encrypts messages with the legacy protocol only (it has no XEP-0420 SCE for
omemo:2), so the messages are ``eu.siacs.conversations.axolotl`` ones; omemo:2 is proved
through its device lists and bundles, which it publishes and fetches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp import JID as SlixJID

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.omemo.conftest import OLD, TWO, accounts, friends

pytest.importorskip("slixmpp_omemo", reason="slixmpp-omemo (the test extra) is not installed")

from tests.omemo.devices import (  # noqa: E402
    decrypt_oldmemo,
    decrypt_twomemo,
    device,
    encrypted,
    learns,
    omemo,
    own_id,
    twomemo_message,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("omemo"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


async def test_device_lists_and_bundles_of_both_generations(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice = await device(server, "alice@localhost/phone")
    bob = await device(server, "bob@localhost/phone")
    store: Any = server.module_stores["mod_pubsub"]
    nodes = dict(await store.list_nodes(("localhost", "alice")))
    alice_id = await own_id(alice)
    # The nodes as the library asks for them (publish-options), readable by anyone (XEP-0384
    # §5.3.2, §5.3.3: open access), the bundles of omemo:2 one item per device.
    assert nodes[f"{OLD}.devicelist"]["access_model"] == "open"
    assert nodes[f"{OLD}.bundles:{alice_id}"]["access_model"] == "open"
    assert nodes[f"{TWO}:devices"]["access_model"] == "open"
    assert nodes[f"{TWO}:bundles"]["access_model"] == "open"
    assert nodes[f"{TWO}:bundles"]["max_items"] == "max"
    assert nodes[f"{TWO}:devices"]["persist_items"] is True
    # Bob learnt alice's device in both generations from PEP notifications (+notify caps).
    await learns(bob, "alice@localhost", {alice_id})
    # Each bundle is fetched and parsed by the contact's library.
    from slixmpp_omemo.xep_0384 import _download_bundle
    for namespace in (OLD, TWO):
        bundle = await _download_bundle(bob.plugin["xep_0060"], namespace, "alice@localhost",
                                        alice_id)
        assert bundle.namespace == namespace and bundle.device_id == alice_id
    await disconnect(alice, bob)


async def test_message_to_both_devices_of_the_contact_and_carbons(server: Server) -> None:
    await accounts(server, "carl", "dana")
    await friends(server, "carl", "dana")
    carl = await device(server, "carl@localhost/phone")
    dana1 = await device(server, "dana@localhost/phone")
    dana2 = await device(server, "dana@localhost/laptop")
    await learns(carl, "dana@localhost", {await own_id(dana1), await own_id(dana2)})
    # A new device of the sender appears for the contact: its device list now has two ids.
    carl2 = await device(server, "carl@localhost/laptop")
    carl_ids = {await own_id(carl), await own_id(carl2)}
    await learns(dana1, "carl@localhost", carl_ids)
    await learns(dana2, "carl@localhost", carl_ids)
    await learns(carl, "carl@localhost", carl_ids)

    queues: dict[str, asyncio.Queue[Any]] = {}
    for key, client, event in (("dana1", dana1, "message"), ("dana2", dana2, "carbon_received"),
                               ("carl2", carl2, "carbon_sent")):
        queues[key] = asyncio.Queue()
        if event == "message":
            client.add_event_handler(event, queues[key].put_nowait)
        else:
            # the carbon's inner message, the one the sender's device encrypted
            client.add_event_handler(event, lambda msg, q=queues[key], e=event:
                                     q.put_nowait(msg[e]))
    message = carl.make_message(mto="dana@localhost/phone", mtype="chat")
    message["body"] = "meet at noon"
    sent, errors = await omemo(carl).encrypt_message(message, SlixJID("dana@localhost"))
    assert sent is not None and not errors, errors
    assert "meet at noon" not in str(sent)
    sent.send()
    for key, client in (("dana1", dana1), ("dana2", dana2), ("carl2", carl2)):
        got = await encrypted(queues[key], client)
        plain, sender = await omemo(client).decrypt_message(got)
        assert plain["body"] == "meet at noon", key
        assert sender.bare_jid == "carl@localhost" and sender.device_id == await own_id(carl)
    await disconnect(carl, carl2, dana1, dana2)


async def test_offline_contact_decrypts_at_login_and_from_the_archive(server: Server) -> None:
    await accounts(server, "erin", "frank")
    await friends(server, "erin", "frank")
    erin = await device(server, "erin@localhost/phone")
    frank1 = await device(server, "frank@localhost/phone")
    frank2 = await device(server, "frank@localhost/laptop")
    await learns(erin, "frank@localhost", {await own_id(frank1), await own_id(frank2)})
    await disconnect(frank1, frank2)
    # Frank is offline: his bundles are fetched from his PEP, the message waits for him.
    message = erin.make_message(mto="frank@localhost", mtype="chat")
    message["body"] = "the key is under the mat"
    sent, errors = await omemo(erin).encrypt_message(message, SlixJID("frank@localhost"))
    assert sent is not None and not errors, errors
    sent.send()
    # His phone comes back: the message from offline storage, decrypted.
    frank1 = await device(server, "frank@localhost/phone")
    got = await encrypted(frank1.messages, frank1)
    plain, sender = await omemo(frank1).decrypt_message(got)
    assert plain["body"] == "the key is under the mat"
    assert sender.bare_jid == "erin@localhost" and sender.device_id == await own_id(erin)
    # His laptop comes back after the phone took the offline messages: it catches up from the
    # archive (XEP-0313), as Conversations does, and decrypts the same message with its own key.
    frank2 = await device(server, "frank@localhost/laptop")
    result = await frank2.plugin["xep_0313"].retrieve(with_jid=SlixJID("erin@localhost"))
    archived = [r["mam_result"]["forwarded"]["stanza"] for r in result["mam"]["results"]]
    # (the other encrypted one is frank1's empty OMEMO message to erin that completes the
    # session, which the library sends after decrypting a key exchange)
    archived = [m for m in archived if omemo(frank2).is_encrypted(m)
                and m["from"].bare == "erin@localhost"]
    assert len(archived) == 1 and archived[0]["id"] == got["id"], archived
    plain, sender = await omemo(frank2).decrypt_message(archived[0])
    assert plain["body"] == "the key is under the mat"
    assert sender.device_id == await own_id(erin)
    await disconnect(erin, frank1, frank2)


async def test_contact_offline_since_before_the_first_login(server: Server) -> None:
    """A new device (a fresh install) whose contact is offline: the contact's device list
    reaches it anyway, and its first message is encrypted for the contact's device."""
    await accounts(server, "gus", "hal")
    await friends(server, "gus", "hal")
    hal = await device(server, "hal@localhost/phone")
    hal_id = await own_id(hal)
    await disconnect(hal)
    gus = await device(server, "gus@localhost/new-phone")
    await learns(gus, "hal@localhost", {hal_id})
    await disconnect(gus)


async def test_stranger_subscribes_to_the_device_list(server: Server) -> None:
    """No presence subscription (someone met in a group chat): slixmpp-omemo subscribes to
    the open device list node explicitly and hears of a new device through it."""
    await accounts(server, "ivy", "jay")
    ivy = await device(server, "ivy@localhost/phone")
    jay = await device(server, "jay@localhost/phone")
    message = ivy.make_message(mto="jay@localhost", mtype="chat")
    message["body"] = "hello stranger"
    sent, errors = await omemo(ivy).encrypt_message(message, SlixJID("jay@localhost"))
    assert sent is not None and not errors, errors
    sent.send()
    got = await encrypted(jay.messages, jay)
    plain, _ = await omemo(jay).decrypt_message(got)
    assert plain["body"] == "hello stranger"
    jay2 = await device(server, "jay@localhost/laptop")
    await learns(ivy, "jay@localhost", {await own_id(jay), await own_id(jay2)})
    await disconnect(ivy, jay, jay2)


async def test_omemo2_message_without_body(server: Server) -> None:
    """An omemo:2 message has no <body> (XEP-0384 §6: the content is in the SCE envelope):
    it reaches the contact's device, its other device as a carbon, and when the contact is
    offline it waits in offline storage and is in the archive."""
    await accounts(server, "kit", "lee")
    await friends(server, "kit", "lee")
    kit = await device(server, "kit@localhost/phone")
    lee1 = await device(server, "lee@localhost/phone")
    lee2 = await device(server, "lee@localhost/laptop")
    await learns(kit, "lee@localhost", {await own_id(lee1), await own_id(lee2)})
    carbons: asyncio.Queue[Any] = asyncio.Queue()
    lee2.add_event_handler("carbon_received", lambda msg: carbons.put_nowait(
        msg["carbon_received"]))
    live = await twomemo_message(kit, "lee@localhost/phone", "no body here")
    assert live.xml.find("{jabber:client}body") is None
    live.send()
    for client, queue in ((lee1, lee1.messages), (lee2, carbons)):
        got = await encrypted(queue, client)
        assert await decrypt_twomemo(client, got) == ("no body here", await own_id(kit))
    await disconnect(lee1, lee2)
    later = await twomemo_message(kit, "lee@localhost", "while you were away")
    later.send()
    lee1 = await device(server, "lee@localhost/phone")
    got = await encrypted(lee1.messages, lee1)
    assert got["id"] == later["id"]
    assert await decrypt_twomemo(lee1, got) == ("while you were away", await own_id(kit))
    result = await lee1.plugin["xep_0313"].retrieve(with_jid=SlixJID("kit@localhost"))
    archived = [r["mam_result"]["forwarded"]["stanza"] for r in result["mam"]["results"]]
    assert [m["id"] for m in archived if m["from"].bare == "kit@localhost"] == [
        live["id"], later["id"]]
    await disconnect(kit, lee1)


async def test_encrypted_message_without_body_or_store_hint_is_archived(server: Server) -> None:
    """An OMEMO message is a chat message whatever else it carries: kept in both archives even
    without a <body> or a store hint (as offline storage keeps it), so a device catching up
    by MAM does not miss it."""
    await accounts(server, "mia", "ned")
    await friends(server, "mia", "ned")
    mia = await device(server, "mia@localhost/phone")
    ned = await device(server, "ned@localhost/phone")
    await learns(mia, "ned@localhost", {await own_id(ned)})
    bare = await twomemo_message(mia, "ned@localhost", "no hint", store=False)
    assert bare.xml.find("{urn:xmpp:hints}store") is None
    bare.send()
    got = await encrypted(ned.messages, ned)
    assert await decrypt_twomemo(ned, got) == ("no hint", await own_id(mia))
    for client, peer in ((ned, "mia@localhost"), (mia, "ned@localhost")):
        result = await client.plugin["xep_0313"].retrieve(with_jid=SlixJID(peer))
        ids = [r["mam_result"]["forwarded"]["stanza"]["id"] for r in result["mam"]["results"]]
        assert bare["id"] in ids, (client.boundjid, ids)
    await disconnect(mia, ned)


async def test_group_chat(server: Server) -> None:
    """OMEMO in a members-only, non-anonymous room (what Conversations and Monal require): the
    sender encrypts for the members' real JIDs; the occupant decrypts the message the room
    sends, the sender its own reflection; a member's device that was not in the room reads
    both messages from the room's archive (XEP-0313), the legacy one and a bodiless omemo:2
    one without a store hint, and decrypts them, the archive naming the real sender."""
    from tests.muc.conftest import SERVICE, create_room
    room = f"secret@{SERVICE}"
    await accounts(server, "olga", "pete")
    olga = await device(server, "olga@localhost/phone")
    pete = await device(server, "pete@localhost/phone")
    pete2 = await device(server, "pete@localhost/laptop")
    await create_room(olga, room, "Olga", {"muc#roomconfig_membersonly": "1",
                                           "muc#roomconfig_whois": "anyone"})
    await olga.plugin["xep_0045"].set_affiliation(SlixJID(room), "member",
                                                  jid=SlixJID("pete@localhost"), timeout=5)
    await pete.plugin["xep_0045"].join_muc_wait(SlixJID(room), "Pete", timeout=5)

    message = olga.make_message(mto=room, mtype="groupchat")
    message["body"] = "the plan"
    sent, errors = await omemo(olga).encrypt_message(message, SlixJID("pete@localhost"))
    assert sent is not None and not errors, errors
    sent.send()
    for client in (pete, olga):
        while True:
            got = await encrypted(client.messages, client)
            if got["type"] == "groupchat":
                break
        plain, sender = await omemo(client).decrypt_message(got)
        assert plain["body"] == "the plan" and sender.bare_jid == "olga@localhost"
    bare = await twomemo_message(olga, room, "no hint in the room", store=False,
                                 recipients=("pete@localhost",), mtype="groupchat")
    bare.send()
    while True:
        got = await encrypted(pete.messages, pete)
        if got.xml.find(f"{{{TWO}}}encrypted") is not None:
            break
    assert await decrypt_twomemo(pete, got, "olga@localhost") == (
        "no hint in the room", await own_id(olga))

    result = await pete2.plugin["xep_0313"].retrieve(jid=SlixJID(room))
    archived = [r["mam_result"]["forwarded"]["stanza"] for r in result["mam"]["results"]]
    archived = [m for m in archived if omemo(pete2).is_encrypted(m)]
    assert [m["id"] for m in archived] == [sent["id"], bare["id"]]
    for stanza in archived:
        item = stanza.xml.find("{http://jabber.org/protocol/muc#user}x/"
                               "{http://jabber.org/protocol/muc#user}item")
        assert item is not None and item.get("jid", "").split("/")[0] == "olga@localhost"
    assert await decrypt_oldmemo(pete2, archived[0], "olga@localhost") == (
        "the plan", await own_id(olga))
    assert await decrypt_twomemo(pete2, archived[1], "olga@localhost") == (
        "no hint in the room", await own_id(olga))
    await disconnect(olga, pete, pete2)
