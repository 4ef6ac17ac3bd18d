"""XEP-0313 end to end: a real Suricate with mod_mam, real slixmpp clients over TLS."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, connect, disconnect, eventually, running_server
from tests.e2e.test_roster_presence import raw_session
from tests.mam.conftest import mam_modules

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
PLUGINS = ("xep_0030", "xep_0059", "xep_0280", "xep_0313", "xep_0359")


async def login(srv: Server, jid: str) -> Client:
    client = await connect(srv, jid, "pw", direct_tls=True, plugins=PLUGINS)
    client.send_presence()
    return client


def queue_of(client: Client, path: str) -> asyncio.Queue[Any]:
    """Stanzas slixmpp does not turn into 'message' events (those have no <body/>)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.register_handler(Callback(path, StanzaPath(path), queue.put_nowait))
    return queue


async def next_of(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), 5)


async def iq(client: Client, payload: str, type_: str = "set", to: str | None = None) -> Any:
    stanza = client.make_iq_set() if type_ == "set" else client.make_iq_get()
    if to is not None:
        stanza["to"] = to
    stanza.xml.append(ET.fromstring(payload))
    return await stanza.send(timeout=5)


async def error_of(client: Client, payload: str, **kwargs: Any) -> str:
    with pytest.raises(IqError) as err:
        await iq(client, payload, **kwargs)
    return str(err.value.iq["error"]["condition"])


async def archive(client: Client, **kwargs: Any) -> list[Any]:
    """Every message of the client's archive, oldest first, through slixmpp's xep_0313."""
    return [m async for m in client.plugin["xep_0313"].iterate(rsm={"max": 50}, **kwargs)]


def stanza_id(msg: Any, by: str) -> str | None:
    for el in msg.xml.findall(f"{{{SID}}}stanza-id"):
        if el.get("by") == by:
            return el.get("id")
    return None


def forwarded_body(result: Any) -> str:
    return str(result["mam_result"]["forwarded"]["stanza"]["body"])


async def test_thousand_messages_paged_both_ways(tmp_path: Path) -> None:
    # slixmpp 1.17's RSM iterator stops paging backward after the first page whenever the
    # server gives a count and first index (it tests first + n == count in both directions):
    # simple queries (no count) let it page the whole archive both ways.
    modules = mam_modules("enforce_simple_queries = true\n")
    async with running_server(tmp_path, modules=modules) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        # The 1000 messages go out in one write from a raw stream, to a raw recipient.
        sender = await raw_session(srv, "alice", "pw", "raw")
        receiver = await raw_session(srv, "bob", "pw", "raw")
        await receiver.send("<presence/>")
        await sender.send("".join(f"<message to='bob@localhost' type='chat' id='{i}'>"
                                  f"<body>m{i}</body></message>" for i in range(1000)))
        await receiver.expect("<body>m999</body>", timeout=10)
        alice = await login(srv, "alice@localhost/a")
        expected = [f"m{i}" for i in range(1000)]
        forward = await archive(alice)
        assert [forwarded_body(m) for m in forward] == expected
        backward = await archive(alice, reverse=True)
        assert [forwarded_body(m) for m in backward] == expected[::-1]
        assert len({m["mam_result"]["id"] for m in backward}) == 1000
        await disconnect(alice)
        await sender.close()
        await receiver.close()


async def test_stanza_ids_carbons_and_second_device(server: Server) -> None:
    alice_a = await login(server, "alice@localhost/a")
    alice_b = await login(server, "alice@localhost/b")
    await alice_b.plugin["xep_0280"].enable()
    carbons = queue_of(alice_b, "message/carbon_sent")
    bob = await login(server, "bob@localhost/b")
    # A stanza-id in bob's name written by alice's client is not vouched for (XEP-0359 §3).
    forged = alice_a.make_message(mto="bob@localhost", mbody="hello bob", mtype="chat")
    forged.xml.append(ET.fromstring(f"<stanza-id xmlns='{SID}' by='bob@localhost' id='1'/>"))
    forged.send()
    live = await bob.next_message()
    bob_id = stanza_id(live, "bob@localhost")
    assert bob_id is not None and bob_id != "1"
    assert stanza_id(live, "alice@localhost") is None
    carbon = await next_of(carbons)
    sent = carbon["carbon_sent"]
    assert sent["body"] == "hello bob"
    alice_id = stanza_id(sent, "alice@localhost")
    assert alice_id is not None
    bob.send_message(mto="alice@localhost", mbody="hello alice", mtype="chat")
    for client in (alice_a, alice_b):
        assert (await client.next_message())["body"] == "hello alice"
    # The second device sees what the first sent and what the account received.
    results = await archive(alice_b)
    assert [forwarded_body(m) for m in results] == ["hello bob", "hello alice"]
    assert results[0]["mam_result"]["id"] == alice_id
    (bob_result,) = [m for m in await archive(bob) if forwarded_body(m) == "hello bob"]
    assert bob_result["mam_result"]["id"] == bob_id
    await disconnect(alice_a, alice_b, bob)


async def test_without_carbons_or_inbox_no_sender_stanza_id_is_made(tmp_path: Path) -> None:
    # The sender's stanza-id exists only for mod_carboncopy and mod_inbox (priorities 78 and
    # 80); without them it is not made at all, and the archives and the peer's id are as usual.
    modules = mam_modules().replace("[modules.mod_carboncopy]\n", "")
    async with running_server(tmp_path, modules=modules) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        mam: Any = srv.modules["mod_mam"]
        assert not mam.sender_ids
        mam.unwire()
        made: list[str | None] = []
        outgoing = mam.outgoing

        def watch(stanza: Any, c2s: Any) -> Any:
            result = outgoing(stanza, c2s)
            if result is not None and result.name == "message":
                # What the hooks after outgoing (75) see of the sender's stanza-id.
                made.extend(c.attrs.get("by") for c in result.find_all("stanza-id", SID))
            return result

        mam.outgoing = watch
        mam.wire()
        alice = await login(srv, "alice@localhost/a")
        bob = await login(srv, "bob@localhost/b")
        alice.send_message(mto="bob@localhost", mbody="no carbons here", mtype="chat")
        live = await bob.next_message()
        assert stanza_id(live, "alice@localhost") is None
        bob_id = stanza_id(live, "bob@localhost")
        assert bob_id is not None
        assert made == []
        (sent,) = await archive(alice)
        assert forwarded_body(sent) == "no carbons here"
        (received,) = await archive(bob)
        assert received["mam_result"]["id"] == bob_id
        await disconnect(alice, bob)


async def test_a_blocked_senders_messages_stay_out_of_the_recipients_archive(
        server: Server) -> None:
    """XEP-0191 §3.3: the server does not deliver a blocked JID's messages; nor may it keep
    them in the recipient's archive, where the account's other devices would sync them."""
    bob = await login(server, "bob@localhost/b")
    await iq(bob, "<block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block>")
    alice = await login(server, "alice@localhost/a")
    alice.send_message(mto="bob@localhost", mbody="while online", mtype="chat")
    await disconnect(bob)
    alice.send_message(mto="bob@localhost", mbody="while offline", mtype="chat")
    alice.send_message(mto="carol@localhost", mbody="to carol", mtype="chat")
    # The sender's archive keeps what was sent (the blocked sender's own history).
    sent = await archive(alice)
    assert [forwarded_body(m) for m in sent] == ["while online", "while offline", "to carol"]
    bob = await login(server, "bob@localhost/b")
    assert [forwarded_body(m) for m in await archive(bob)] == []
    await disconnect(alice, bob)


async def test_a_note_to_self_arrives_with_its_archive_id(server: Server) -> None:
    """A message to the account's own bare JID is archived once (as sent); the copy the
    account receives carries that archive id as its stanza-id (XEP-0359 §4), which clients
    use to match it against what they later fetch from the archive."""
    alice = await login(server, "alice@localhost/a")
    alice.send_message(mto="alice@localhost", mbody="note to self", mtype="chat")
    received = await alice.next_message()
    assert received["body"] == "note to self"
    (archived,) = await archive(alice)
    assert forwarded_body(archived) == "note to self"
    assert stanza_id(received, "alice@localhost") == archived["mam_result"]["id"]
    await disconnect(alice)


async def test_a_message_of_unknown_type_is_archived_as_normal(server: Server) -> None:
    """RFC 6121 §5.2.2: a message of a type the server does not understand is handled as
    "normal"; XEP-0313 archives normal messages with a body, in both archives."""
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    msg = alice.make_message(mto="bob@localhost/b", mbody="odd type")
    msg.xml.set("type", "x-unknown")  # slixmpp's own setter refuses types it does not know
    msg.send()
    assert (await bob.next_message())["body"] == "odd type"
    for client in (alice, bob):
        assert [forwarded_body(m) for m in await archive(client)] == ["odd type"]
    await disconnect(alice, bob)


async def test_offline_copy_carries_the_archived_id(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    alice.send_message(mto="bob@localhost", mbody="while away", mtype="chat")

    async def stored() -> bool:
        return await server.modules["mod_offline"].store.count_offline("localhost", "bob") == 1

    await eventually(stored)
    bob = await login(server, "bob@localhost/b")
    msg = await bob.next_message()
    assert msg["body"] == "while away"
    (result,) = await archive(bob)
    assert stanza_id(msg, "bob@localhost") == result["mam_result"]["id"]
    await disconnect(alice, bob)


async def test_a_query_while_stored_messages_are_read_gets_its_results_first(
        server: Server) -> None:
    """A phone back online asks for its archive at once (Conversations and slixmpp collect a
    query's results until its IQ result): while the stored messages are still being read
    from the database, the results come before the IQ result, not after it (they are
    answers, not news waiting behind the stored messages), and the stored message arrives
    once."""
    alice = await login(server, "alice@localhost/a")
    alice.send_message(mto="bob@localhost", mbody="while away", mtype="chat")
    store = server.modules["mod_offline"].store

    async def stored() -> bool:
        return await store.count_offline("localhost", "bob") == 1

    await eventually(stored)
    release = asyncio.Event()
    real_pop = store.pop_offline

    async def slow_pop(*args: object, **kwargs: object) -> object:
        await asyncio.wait_for(release.wait(), 5)  # the database answers later
        return await real_pop(*args, **kwargs)

    store.pop_offline = slow_pop
    try:
        bob = await login(server, "bob@localhost/b")
        await eventually(lambda: bool(server.router._turns_held))  # noqa: SLF001
        results = await archive(bob)
        assert [forwarded_body(r) for r in results] == ["while away"]
        release.set()
        assert (await bob.next_message())["body"] == "while away"
    finally:
        release.set()
        store.pop_offline = real_pop
    await disconnect(alice, bob)


async def test_rsm_count_index_flip_and_limits(server: Server) -> None:
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    results = queue_of(alice, "message/mam_result")
    for i in range(60):
        alice.send_message(mto="bob@localhost", mbody=f"m{i}", mtype="chat")
    for _ in range(60):
        await bob.next_message()
    # A max above max_result_limit (50) is capped; count and first index come along.
    fin = await iq(alice, f"<query xmlns='{MAM}'><set xmlns='http://jabber.org/protocol/rsm'>"
                          "<max>500</max><before/></set></query>")
    rsm = fin.xml.find(f"{{{MAM}}}fin/{{http://jabber.org/protocol/rsm}}set")
    assert rsm.findtext("{http://jabber.org/protocol/rsm}count") == "60"
    assert rsm.find("{http://jabber.org/protocol/rsm}first").get("index") == "10"
    assert fin.xml.find(f"{{{MAM}}}fin").get("complete") == "false"
    bodies = [forwarded_body(await next_of(results)) for _ in range(50)]
    assert bodies == [f"m{i}" for i in range(10, 60)]
    # flip-page: the same page, newest first; an index page; a page by #extended after-id.
    await iq(alice, f"<query xmlns='{MAM}'><set xmlns='http://jabber.org/protocol/rsm'>"
                    "<max>3</max><index>57</index></set><flip-page/></query>")
    assert [forwarded_body(await next_of(results)) for _ in range(3)] == \
        ["m59", "m58", "m57"]
    assert results.empty()
    await disconnect(alice, bob)


async def test_bad_queries_get_the_right_errors(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM}</value></field>{{}}</x>")
    unknown = form.format("<field var='colour'><value>red</value></field>")
    assert await error_of(alice, f"<query xmlns='{MAM}'>{unknown}</query>") == \
        "feature-not-implemented"
    bad_date = form.format("<field var='start'><value>yesterday</value></field>")
    assert await error_of(alice, f"<query xmlns='{MAM}'>{bad_date}</query>") == "bad-request"
    missing = form.format("<field var='after-id'><value>12345</value></field>")
    assert await error_of(alice, f"<query xmlns='{MAM}'>{missing}</query>") == "item-not-found"
    rsm_missing = ("<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>")
    assert await error_of(alice, f"<query xmlns='{MAM}'>{rsm_missing}</query>") == \
        "item-not-found"
    assert await error_of(alice, f"<query xmlns='{MAM}'/>", to="bob@localhost") == "forbidden"
    # The form itself, and the metadata of an empty archive.
    fields = await iq(alice, f"<query xmlns='{MAM}'/>", type_="get")
    names = {f.get("var") for f in fields.xml.iter("{jabber:x:data}field")}
    assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"} <= names
    meta = await iq(alice, f"<metadata xmlns='{MAM}'/>", type_="get")
    assert list(meta.xml.find(f"{{{MAM}}}metadata")) == []
    await disconnect(alice)


async def test_prefs_never_and_always(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    bob, carol = await login(server, "bob@localhost/b"), await login(server, "carol@localhost/c")
    reply = await iq(alice, f"<prefs xmlns='{MAM}' default='never'><always>"
                            "<jid>carol@localhost</jid></always><never/></prefs>")
    prefs = reply.xml.find(f"{{{MAM}}}prefs")
    assert prefs.get("default") == "never"
    assert prefs.findtext(f"{{{MAM}}}always/{{{MAM}}}jid") == "carol@localhost"
    alice.send_message(mto="bob@localhost", mbody="not kept", mtype="chat")
    alice.send_message(mto="carol@localhost", mbody="kept", mtype="chat")
    bob_live, carol_live = await bob.next_message(), await carol.next_message()
    assert [forwarded_body(m) for m in await archive(alice)] == ["kept"]
    # The peers' archives follow their own prefs (default always).
    assert stanza_id(bob_live, "bob@localhost") is not None
    assert [forwarded_body(m) for m in await archive(bob)] == ["not kept"]
    assert carol_live["body"] == "kept"
    assert await error_of(alice, f"<prefs xmlns='{MAM}' default='sometimes'/>") == \
        "bad-request"
    got = await iq(alice, f"<prefs xmlns='{MAM}'/>", type_="get")
    assert got.xml.find(f"{{{MAM}}}prefs").get("default") == "never"
    await disconnect(alice, bob, carol)


async def test_retracted_message_is_a_tombstone(server: Server) -> None:
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    original = alice.make_message(mto="bob@localhost", mbody="oops", mtype="chat")
    original.xml.append(ET.fromstring(f"<origin-id xmlns='{SID}' id='orig-1'/>"))
    original.send()
    await bob.next_message()
    retraction = alice.make_message(mto="bob@localhost", mbody="retracted", mtype="chat")
    retraction.xml.append(ET.fromstring(
        "<retract xmlns='urn:xmpp:message-retract:1' id='orig-1'/>"))
    retraction.send()
    await bob.next_message()
    for client in (alice, bob):
        first, second = await archive(client)
        tomb = first["mam_result"]["forwarded"]["stanza"].xml
        assert tomb.find("{jabber:client}body") is None
        assert tomb.find("{urn:xmpp:message-retract:1}retracted").get("stamp")
        assert forwarded_body(second) == "retracted"
    await disconnect(alice, bob)


ESL = "urn:esl:message-retract-by-stanza-id:0"
TOMBSTONE = "urn:xmpp:message-retract:1#tombstone"


def retract_by_stanza_id(client: Client, to: str, target: str) -> None:
    """MongooseIM's retraction by stanza-id (its mod_mam documentation), with a fallback
    body as XEP-0424 §4 suggests."""
    msg = client.make_message(mto=to, mbody="retracted a message", mtype="chat")
    msg.xml.append(ET.fromstring(f"<apply-to xmlns='urn:xmpp:fasten:0' id='{target}'>"
                                 f"<retract xmlns='{ESL}'/></apply-to>"))
    msg.send()


def retracted_of(result: Any) -> Any:
    return result["mam_result"]["forwarded"]["stanza"].xml.find(f"{{{ESL}}}retracted")


async def test_retraction_by_stanza_id_tombstones_both_archives(tmp_path: Path) -> None:
    # The interval never flushes here: the retraction joins its message in the writer's lane
    # and applies after it is written (the query flushes the lane).
    slow = mam_modules().replace("flush_interval = 200", "flush_interval = 600000")
    async with running_server(tmp_path, modules=slow) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        alice_a = await login(srv, "alice@localhost/a")
        alice_b = await login(srv, "alice@localhost/b")
        await alice_b.plugin["xep_0280"].enable()
        carbons = queue_of(alice_b, "message/carbon_sent")
        bob = await login(srv, "bob@localhost/b")
        # Advertised on the account, as MongooseIM does; and the tombstones (XEP-0424
        # §"Tombstones": Monal ignores the tombstones of an archive that does not say so).
        info = await alice_a.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=5)
        assert {ESL, TOMBSTONE} <= set(info["disco_info"]["features"])
        alice_a.send_message(mto="bob@localhost", mbody="oops", mtype="chat")
        bob_id = stanza_id(await bob.next_message(), "bob@localhost")
        alice_id = stanza_id((await next_of(carbons))["carbon_sent"], "alice@localhost")
        assert alice_id is not None and bob_id is not None and alice_id != bob_id
        alice_a.send_message(mto="bob@localhost", mbody="kept", mtype="chat")
        await bob.next_message()
        # Alice names the message by the stanza-id her archive gave it (her carbon's).
        retract_by_stanza_id(alice_a, "bob@localhost", alice_id)
        delivered = await bob.next_message()
        assert delivered.xml.find("{urn:xmpp:fasten:0}apply-to").get("id") == alice_id
        assert await srv.modules["mod_mam"].store.bounds("localhost", "alice") is None
        for client, owner, own_id in ((alice_b, "alice@localhost", alice_id),
                                      (bob, "bob@localhost", bob_id)):
            first, second, third = await archive(client)
            assert first["mam_result"]["id"] == own_id
            tomb = first["mam_result"]["forwarded"]["stanza"].xml
            assert tomb.find("{jabber:client}body") is None
            retracted = retracted_of(first)
            assert retracted is not None and retracted.get("stamp")
            # The tombstone names the message by the stanza-id this archive gave it.
            sid = retracted.find(f"{{{SID}}}stanza-id")
            assert (sid.get("id"), sid.get("by")) == (own_id, owner)
            assert forwarded_body(second) == "kept" and retracted_of(second) is None
            # The retraction itself is archived and delivered as it was sent.
            assert forwarded_body(third) == "retracted a message"
            assert third["mam_result"]["forwarded"]["stanza"].xml.find(
                "{urn:xmpp:fasten:0}apply-to").get("id") == alice_id
        await disconnect(alice_a, alice_b, bob)


async def test_only_the_sender_retracts_by_stanza_id(server: Server) -> None:
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    carol = await login(server, "carol@localhost/c")
    alice.send_message(mto="bob@localhost", mbody="alice's", mtype="chat")
    bob_id = stanza_id(await bob.next_message(), "bob@localhost")
    bob.send_message(mto="alice@localhost", mbody="bob's", mtype="chat")
    alice_got = stanza_id(await alice.next_message(), "alice@localhost")
    alice_sent = (await archive(alice))[0]["mam_result"]["id"]
    assert bob_id is not None and alice_got is not None
    # Bob and Carol name Alice's message by either archive's id; Alice names Bob's message
    # (an id of her archive, but a message she received), ids of no message, malformed ids.
    for sender, to, target in ((bob, "alice@localhost", bob_id),
                               (bob, "alice@localhost", alice_sent),
                               (carol, "alice@localhost", alice_sent),
                               (carol, "bob@localhost", bob_id),
                               (alice, "bob@localhost", alice_got),
                               (alice, "bob@localhost", "123"),
                               (alice, "bob@localhost", "99999999999999999999999"),
                               (alice, "bob@localhost", "not-an-id")):
        retract_by_stanza_id(sender, to, target)
        receiver = alice if to == "alice@localhost" else bob
        assert (await receiver.next_message())["body"] == "retracted a message"
    for client in (alice, bob):
        results = await archive(client)
        assert [forwarded_body(m) for m in results][:2] == ["alice's", "bob's"]
        assert all(retracted_of(m) is None for m in results)
    # The lane goes on: Alice's own retraction still applies.
    retract_by_stanza_id(alice, "bob@localhost", alice_sent)
    await bob.next_message()
    for client in (alice, bob):
        first = (await archive(client))[0]
        assert retracted_of(first) is not None
        assert first["mam_result"]["forwarded"]["stanza"].xml.find("{jabber:client}body") \
            is None
    await disconnect(alice, bob, carol)


async def test_retraction_by_stanza_id_for_an_offline_recipient(server: Server) -> None:
    # Bob is offline: his copies are archived on the offline path; Alice's message has an
    # origin-id she used before (the pairing takes the copy after her row).
    alice = await login(server, "alice@localhost/a")
    for body in ("first", "second"):
        msg = alice.make_message(mto="bob@localhost", mbody=body, mtype="chat")
        msg.xml.append(ET.fromstring(f"<origin-id xmlns='{SID}' id='same'/>"))
        msg.send()
    second_id = (await archive(alice))[1]["mam_result"]["id"]
    retract_by_stanza_id(alice, "bob@localhost", second_id)
    await archive(alice)  # a round trip: the retraction went the offline way before it
    bob = await login(server, "bob@localhost/b")
    for _ in range(3):
        await bob.next_message()
    for client in (alice, bob):
        first, second, _ = await archive(client)
        assert forwarded_body(first) == "first" and retracted_of(first) is None
        assert retracted_of(second) is not None
    await disconnect(alice, bob)


async def test_removed_account_loses_its_archive(server: Server) -> None:
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    alice.send_message(mto="bob@localhost", mbody="bye", mtype="chat")
    await bob.next_message()
    await disconnect(alice)
    store = server.modules["mod_mam"].store
    await server.auth.remove(JID.parse("alice@localhost"))
    assert await store.bounds("localhost", "alice") is None
    assert len(await archive(bob)) == 1  # bob's copy is bob's
    await disconnect(bob)


async def test_stop_drains_the_pending_batch(tmp_path: Path) -> None:
    slow = mam_modules().replace("flush_interval = 200", "flush_interval = 600000")
    async with running_server(tmp_path, modules=slow) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        alice, bob = await login(srv, "alice@localhost/a"), await login(srv, "bob@localhost/b")
        for i in range(5):
            alice.send_message(mto="bob@localhost", mbody=f"m{i}", mtype="chat")
        for _ in range(5):
            await bob.next_message()
        store = srv.modules["mod_mam"].store
        assert await store.bounds("localhost", "alice") is None  # still in the batch
        await disconnect(alice, bob)
    async with running_server(tmp_path, modules=slow) as srv:
        bob = await login(srv, "bob@localhost/b")
        assert len(await archive(bob)) == 5
        await disconnect(bob)


@pytest.mark.parametrize(("extra", "problem"), [
    ("[modules.mod_mam.muc]\ndb_jid_format = 'x'", "modules.mod_mam.muc.db_jid_format"),
    ("[modules.mod_mam.muc]\nno_stanzaid_element = true",
     "modules.mod_mam.muc.no_stanzaid_element: True is not available"),
    ("[modules.mod_mam.muc]\ncache_users = false",
     "modules.mod_mam.muc.cache_users: 'cache_users' does not apply to rooms"),
    ("[modules.mod_mam.pm]\nsame_mam_id_for_peers = true",
     "modules.mod_mam.pm.same_mam_id_for_peers: True is not available"),
    ("[modules.mod_mam]\ndelete_domain_limit = 0", "modules.mod_mam.delete_domain_limit"),
    ("[modules.mod_mam.muc]\ndelete_domain_limit = 10",
     "modules.mod_mam.muc.delete_domain_limit: 'delete_domain_limit' does not apply to rooms"),
    ("[modules.mod_mam]\nis_archivable_message = 'my_mod'",
     "modules.mod_mam.is_archivable_message: 'my_mod' is not available"),
])
def test_unimplemented_options_are_refused(tmp_path: Path, extra: str, problem: str) -> None:
    from suricate.config import parse_config
    from suricate.config.spec import ConfigError
    from tests.e2e.harness import server_toml

    toml = server_toml(tmp_path, 5222, 5223, modules="[modules.mod_mam]\n" + extra
                       if not extra.startswith("[modules.mod_mam]\n") else extra)
    with pytest.raises(ConfigError) as err:
        parse_config(toml, tmp_path)
    assert any(str(p).startswith(problem) for p in err.value.problems), err.value.problems


@pytest.fixture(params=[pytest.param("pg_database", marks=pytest.mark.postgres),
                        pytest.param("my_database", marks=pytest.mark.mysql)])
def server_database(request: pytest.FixtureRequest) -> Any:
    """The session's PostgreSQL or MariaDB test database. Synchronous: the session fixture
    runs its own asyncio.run() and so must be set up outside the test's loop."""
    return request.getfixturevalue(request.param)


async def test_archive_on_server_database(tmp_path: Path, server_database: Any) -> None:
    """The archive of a server on PostgreSQL or MariaDB (its pool configured as an operator
    does): 120 messages archived in order, with the ids the live copies carried."""
    from tests.storage.conftest import rdbms_pool_toml, reset_database

    await reset_database(server_database)
    pool = rdbms_pool_toml(server_database)
    async with running_server(tmp_path, modules=mam_modules(), pool_toml=pool) as srv:
        for user in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        alice = await login(srv, "alice@localhost/a")
        bob = await login(srv, "bob@localhost/b")
        for i in range(120):
            alice.send_message(mto="bob@localhost", mbody=f"m{i}", mtype="chat")
        lives = [await bob.next_message() for _ in range(120)]
        results = await archive(bob)
        assert [forwarded_body(m) for m in results] == [f"m{i}" for i in range(120)]
        assert [m["mam_result"]["id"] for m in results] == \
            [stanza_id(m, "bob@localhost") for m in lives]
        # A retraction by stanza-id finds both copies on this backend too.
        alice_id = (await archive(alice))[7]["mam_result"]["id"]
        retract_by_stanza_id(alice, "bob@localhost", alice_id)
        await bob.next_message()
        for client in (alice, bob):
            kept = await archive(client)
            assert retracted_of(kept[7]) is not None and forwarded_body(kept[8]) == "m8"
            assert [retracted_of(m) is None for m in kept].count(False) == 1
        # The ids a client names must all be in the archive (XEP-0313 §4.1.3).
        ids = [m["mam_result"]["id"] for m in await archive(bob)]
        fields = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
                  f"type='hidden'><value>{MAM}</value></field><field var='ids'>{{}}</field></x>")
        both = fields.format(f"<value>{ids[3]}</value><value>{ids[100]}</value>")
        results = queue_of(bob, "message/mam_result")
        await iq(bob, f"<query xmlns='{MAM}'>{both}</query>")
        assert [forwarded_body(results.get_nowait()) for _ in range(2)] == ["m3", "m100"]
        alices = fields.format(f"<value>{ids[3]}</value><value>{alice_id}</value>")
        assert await error_of(bob, f"<query xmlns='{MAM}'>{alices}</query>") == \
            "item-not-found"
        await disconnect(alice, bob)


def test_without_pm_section_check_config_warns(tmp_path: Path) -> None:
    from suricate.config.loader import parse_config_with_warnings
    from tests.e2e.harness import server_toml

    _, warnings = parse_config_with_warnings(
        server_toml(tmp_path, 5222, 5223, modules="[modules.mod_mam]"), tmp_path)
    assert [str(w) for w in warnings] == [
        "modules.mod_mam: no [modules.mod_mam.pm] section: nothing is archived (as in "
        "MongooseIM, the pm section enables one-to-one archives)"]


class _Session:
    """What mod_mam's hooks read of a session: its JID (and no blocklist in its slots)."""

    def __init__(self, jid: JID) -> None:
        self.jid, self.module_state = jid, {}


async def test_live_copy_reuses_the_archive_xml_only_while_the_stanza_is_unchanged(
        server: Server) -> None:
    from suricate.xml import Element, ns
    from suricate.xml.element import WrittenElement

    mam: Any = server.modules["mod_mam"]
    alice, bob = JID.parse("alice@localhost/a"), JID.parse("bob@localhost/b")
    rows: list[Any] = []
    mam.writer.add = rows.append

    def send(change: bool) -> bytes:
        msg = Element("message", ns.CLIENT, {"to": str(bob), "type": "chat", "id": "m1",
                                              "from": str(alice)})
        msg.add("body", ns.CLIENT, text="hi")
        out = mam.outgoing(msg, _Session(alice))
        # mod_carboncopy is loaded: the sender's stanza-id was made for the carbons, and
        # comes off before routing (user_send_packet at 85).
        out = mam.drop_own_id(out, _Session(alice))
        if change:  # something between the sender's hook and the recipient's
            out.add("x", "urn:example")
        live = mam.incoming(out, alice, bob, [_Session(bob)])
        assert isinstance(live, WrittenElement) is not change
        return bytes(live.to_bytes(ns.CLIENT))

    for change in (False, True):
        rows.clear()
        data = send(change)
        sent_row, received_row = rows
        stanza_id = ET.fromstring(data).find(f"{{{SID}}}stanza-id")
        assert stanza_id is not None
        # XEP-0359: the live copy's stanza-id is the recipient's archive id.
        assert stanza_id.get("by") == "bob@localhost"
        assert stanza_id.get("id") == str(received_row[0]) and received_row[0] > sent_row[0]
        # The recipient's row is the stanza as delivered, without its own stanza-id.
        assert ET.fromstring(received_row[9]).find(f"{{{SID}}}stanza-id") is None
        assert (ET.fromstring(received_row[9]).find("{urn:example}x") is not None) is change
        assert (ET.fromstring(data).find("{urn:example}x") is not None) is change
