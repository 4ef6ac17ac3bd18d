"""PEP (XEP-0163) and the message archive (XEP-0313) between two Redis nodes: two real
``suricate serve`` processes sharing the real Redis and one SQLite file, real slixmpp clients.

What people chatting across a cluster rely on and what is proven here:
- a contact on the other node learns of a PEP publication (OMEMO device lists, avatars and
  bookmarks are PEP nodes: a publication that stays on its node breaks encryption and avatars
  for every contact elsewhere), both ways, with the interest (+notify) the publisher's node
  learnt from the contact's caps on the other node (XEP-0115, XEP-0163 §4.3);
- the last item reaches a contact who comes online on the other node (XEP-0163 §4.3.4);
- an inbox conversation marked read on one node is told to the account's sessions on the
  other (MongooseIM's inbox properties);
- an avatar set in the vCard on one node is announced in the presence of the account's
  sessions on the other (XEP-0153 §4.1);
- a subscriber online on the other node gets the pubsub service's notifications of a node
  with presence_based_delivery (XEP-0060 §12.18);
- a contact online on the other node is online for XEP-0012 last activity (0 seconds);
- a chat message crossing nodes is archived once in each party's archive, and a second
  device of the recipient, on the sender's node, finds it there with the stanza-id its first
  device got live (XEP-0313 §3.5, XEP-0359).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import marshal
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.modules.mod_mam import PREFS_CAST
from tests.cluster.test_redis_nodes import Node, _rows
from tests.cluster.test_sm_nodes import _two_nodes
from tests.cluster.test_workers import LIMIT
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.xdist_group("redis_nodes")

MODULES = MODULES_TOML + (
    "\n[modules.mod_caps]\n[modules.mod_pubsub]\n"
    "[modules.mod_mam]\nasync_writer.flush_interval = 100\n[modules.mod_mam.pm]\n"
    "[modules.mod_inbox]\n")
PLUGINS = ("xep_0012", "xep_0030", "xep_0004", "xep_0059", "xep_0060", "xep_0115", "xep_0163",
           "xep_0313", "xep_0359", "xep_0441")
TUNE = "http://jabber.org/protocol/tune"


@pytest.fixture
def nodes(tmp_path: Path, redis_db: int) -> Any:
    # Room for three sessions of an account (bob's phone, laptop and tablet).
    yield from _two_nodes(tmp_path, redis_db, MODULES, LIMIT.replace("value = 2", "value = 3"))


async def _pep_client(node: Node, jid: str) -> Any:
    """A client interested in tunes (+notify in its caps), with its PEP events queued."""
    client: Any = await connect(node, jid, "pw", plugins=PLUGINS)  # type: ignore[arg-type]
    client.events = asyncio.Queue()
    client.add_event_handler("pubsub_publish", client.events.put_nowait)
    client.plugin["xep_0030"].add_feature(f"{TUNE}+notify")
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    return client


async def _publish(client: Any, title: str) -> None:
    payload = ET.fromstring(f"<tune xmlns='{TUNE}'><title>{title}</title></tune>")
    await client.plugin["xep_0060"].publish(client.boundjid.bare, TUNE, id=title,
                                            payload=payload, timeout=5)


async def _event(client: Any, timeout: float = 5) -> tuple[str, str]:
    event = await asyncio.wait_for(client.events.get(), timeout)
    return str(event["from"].bare), str(event["pubsub_event"]["items"]["item"]["id"])


async def _subscribe_both_ways(alice: Any, bob: Any) -> None:
    """alice and bob subscribe to each other (slixmpp accepts and subscribes back); both
    asked for their roster first, so they get its pushes (RFC 6121 §2.2)."""
    await alice.get_roster(timeout=5)
    await bob.get_roster(timeout=5)
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    bob.send_presence(pto="alice@localhost", ptype="subscribe")

    def both() -> bool:
        return (alice.client_roster["bob@localhost"]["subscription"] == "both"
                and bob.client_roster["alice@localhost"]["subscription"] == "both")
    await eventually(both, timeout=10)


def _casts_to(db: int, node: Node) -> Any:
    """A subscription to ``node``'s request channel (cluster/admin.py), where casts reach it."""
    pubsub = redis.Redis(host="127.0.0.1", port=6379, db=db).pubsub()
    pubsub.subscribe(f"suricate:ctl:{node.name}")
    confirmed = pubsub.get_message(timeout=5)  # subscribed before anything is published
    assert confirmed is not None and confirmed["type"] == "subscribe", confirmed
    return pubsub


def _cast_seen(pubsub: Any, topic: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            frame = marshal.loads(message["data"]) if message is not None else None
            if isinstance(frame, tuple) and len(frame) > 1 and frame[1] == topic:
                return
        raise AssertionError(f"no {topic} cast in {timeout} s")
    finally:
        pubsub.close()


def test_pep_and_archive_across_nodes(nodes: tuple[Node, Node, int]) -> None:
    a, b, db = nodes

    async def run() -> None:
        alice = await _pep_client(a, "alice@localhost/laptop")
        bob = await _pep_client(b, "bob@localhost/phone")
        later: Any = None
        bob_laptop: Any = None
        try:
            alice.send_presence()
            bob.send_presence()
            await _subscribe_both_ways(alice, bob)
            await eventually(lambda: len(_rows(db, "alice@localhost")) == 1
                             and len(_rows(db, "bob@localhost")) == 1)
            # alice publishes on A; bob, on B, is told (his caps, learnt by A through his
            # presence crossing to alice, say +notify). A's disco#info query of bob's caps
            # crosses nodes too, so the first publications may come before A knows them.
            for attempt in range(20):
                await _publish(alice, f"a{attempt}")
                with contextlib.suppress(TimeoutError):
                    got = await _event(bob, 0.5)
                    break
            else:
                raise AssertionError("bob on node B never heard of alice's publication on A")
            assert got[0] == "alice@localhost"
            # Only the item that reached bob remains to compare: the rest are in order.
            await _publish(alice, "steady")
            while got[1] != "steady":
                got = await _event(bob)
            # ... and the other way.
            await _publish(bob, "from-b")
            while (got := await _event(alice)) != ("bob@localhost", "from-b"):
                assert got[0] == "alice@localhost"  # her own earlier items, to her resource

            # XEP-0012 §3: a contact online on the other node has been idle 0 seconds.
            last_activity = await alice.plugin["xep_0012"].get_last_activity(
                "bob@localhost", timeout=5)
            assert last_activity["last_activity"]["seconds"] == 0

            # The pubsub service (pubsub.localhost), a node with presence_based_delivery
            # (XEP-0060 §12.18): bob, online on B only, is online for it on A.
            form = Form()
            form["type"] = "submit"
            form.add_field(var="FORM_TYPE", ftype="hidden",
                           value="http://jabber.org/protocol/pubsub#node_config")
            form.add_field(var="pubsub#presence_based_delivery", value="1")
            await alice.plugin["xep_0060"].create_node("pubsub.localhost", "news",
                                                       config=form, timeout=5)
            await bob.plugin["xep_0060"].subscribe("pubsub.localhost", "news", timeout=5)
            payload = ET.fromstring("<entry xmlns='urn:example:news'>hi</entry>")
            await alice.plugin["xep_0060"].publish("pubsub.localhost", "news", id="n1",
                                                   payload=payload, timeout=5)
            while (got := await _event(bob))[0] != "pubsub.localhost":
                pass
            assert got == ("pubsub.localhost", "n1")

            # XEP-0163 §4.3.4: a contact coming online on B gets alice's last item.
            later = await _pep_client(b, "bob@localhost/tablet")
            later.send_presence()
            last = {await _event(later), await _event(later)}  # bob's own last item too
            assert last == {("alice@localhost", "steady"), ("bob@localhost", "from-b")}

            # A chat message from A to B: archived once in each archive.
            live: asyncio.Queue[Any] = asyncio.Queue()
            bob.add_event_handler("message", live.put_nowait)
            alice.send_message(mto="bob@localhost/phone", mbody="across", mtype="chat")
            while (msg := await asyncio.wait_for(live.get(), 5))["body"] != "across":
                pass
            sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == "bob@localhost"
            # bob's laptop, on alice's node, finds it in his archive with that id.
            bob_laptop = await connect(a, "bob@localhost/laptop", "pw",  # type: ignore[arg-type]
                                       plugins=PLUGINS)

            async def archived(client: Any, with_jid: str) -> list[Any]:
                return [m async for m in client.plugin["xep_0313"].iterate(
                    jid=None, with_jid=SJID(with_jid), rsm={"max": 10})]

            async def bob_has_it() -> bool:
                return len(await archived(bob_laptop, "alice@localhost")) == 1
            for _ in range(50):
                if await bob_has_it():
                    break
                await asyncio.sleep(0.1)
            results = await archived(bob_laptop, "alice@localhost")
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in results] \
                == ["across"]
            assert str(results[0]["mam_result"]["id"]) == sid.get("id")
            mine = await archived(alice, "bob@localhost")
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in mine] \
                == ["across"]
            # Inbox (MongooseIM's): bob marks the conversation read on his laptop (A); his
            # phone on B is told, as every resource of the account is.
            conv = "erlang-solutions.com:xmpp:inbox:0#conversation"
            notices: asyncio.Queue[Any] = asyncio.Queue()
            bob.register_handler(Callback("inbox", MatchXPath(
                f"{{jabber:client}}message/{{{conv}}}x"), notices.put_nowait))
            mark = bob_laptop.make_iq_set()
            mark.xml.append(ET.fromstring(f"<query xmlns='{conv}' jid='alice@localhost'>"
                                          "<read>true</read></query>"))
            await mark.send(timeout=5)
            notice = await asyncio.wait_for(notices.get(), 5)
            assert notice.xml.find(f"{{{conv}}}x").get("jid") == "alice@localhost"
            assert notice.xml.findtext(f"{{{conv}}}x/{{{conv}}}read") == "true"

            # XEP-0153: bob sets an avatar in his vCard from his laptop (A); his phone's
            # presence (B) is sent again with the new hash (each node keeps the hashes of its
            # sessions' accounts).
            photo = b"not really a png"
            presences: asyncio.Queue[Any] = asyncio.Queue()
            alice.add_event_handler("presence_available", presences.put_nowait)
            vcard = bob_laptop.make_iq_set()
            vcard.xml.append(ET.fromstring(
                "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>"
                f"{base64.b64encode(photo).decode()}</BINVAL></PHOTO></vCard>"))
            await vcard.send(timeout=5)
            update = "{vcard-temp:x:update}x/{vcard-temp:x:update}photo"
            while True:
                pres = await asyncio.wait_for(presences.get(), 5)
                if str(pres["from"]) == "bob@localhost/phone" \
                        and pres.xml.findtext(update) == hashlib.sha1(photo).hexdigest():
                    break

            # bob's reply from B: his copy's id is made on B, alice's "across" on A. The
            # node bits (the low byte) differ, so the two nodes never make the same id.
            bob.send_message(mto="alice@localhost/laptop", mbody="back", mtype="chat")
            for _ in range(50):
                theirs = await archived(bob, "alice@localhost")
                if len(theirs) == 2:
                    break
                await asyncio.sleep(0.1)
            ids = {str(r["mam_result"]["forwarded"]["stanza"]["body"]): int(r["mam_result"]["id"])
                   for r in theirs}
            assert set(ids) == {"across", "back"}
            made_on_a = int(mine[0]["mam_result"]["id"])
            assert made_on_a & 0xFF != ids["back"] & 0xFF

            # XEP-0441 prefs set from bob's laptop on A (never archive alice) hold on B, which
            # kept bob's prefs for his phone and decides his copy of what reaches him there.
            casts = _casts_to(db, b)
            await bob_laptop.plugin["xep_0441"].set_preferences(
                default="always", never=[SJID("alice@localhost")])
            # B hears of it (a cast through Redis): published to B before alice writes, the
            # cast is in B's hands before her message (through A, then the link) can be.
            await asyncio.to_thread(_cast_seen, casts, PREFS_CAST)
            alice.send_message(mto="bob@localhost/phone", mbody="unkept", mtype="chat")
            while (msg := await asyncio.wait_for(live.get(), 5))["body"] != "unkept":
                pass
            await asyncio.sleep(0.5)  # the writer's flush interval is 100 ms
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"])
                    for r in await archived(bob_laptop, "alice@localhost")] \
                == ["across", "back"]
        finally:
            await disconnect(*(c for c in (alice, bob, later, bob_laptop) if c is not None))

    asyncio.run(run())


def test_node_indexes_are_distinct_and_freed(redis_db: int) -> None:
    """The node bits of archive ids (``microseconds << 8 | node``): every listed node holds an
    index of its own. Before, every node used 0, so two nodes archiving in the same
    microsecond made the same id: the room archive (keyed by id) kept one message of the two,
    and two messages to one account could get one stanza-id."""
    from redis.asyncio import Redis

    from suricate.cluster.redis_sm import NODE_INDEXES, RedisSessions

    async def run() -> None:
        client = Redis(host="127.0.0.1", port=6379, db=redis_db)
        prefix = f"unit-{uuid.uuid4().hex[:6]}:"
        try:
            nodes = [RedisSessions(client, f"n{i}", prefix) for i in range(3)]
            for node in nodes:
                await node.join()
            # All three start from the same index: each ends up with its own.
            got = [await node.claim_index(7) for node in nodes]
            assert got == [7, 8, 9]
            assert await nodes[0].claim_index(7) == 7  # ours stays ours
            # A clean stop frees it; a node reaped as dead (no longer listed) loses it.
            await nodes[1].free_index(8)
            late = RedisSessions(client, "late", prefix)
            await late.join()
            assert await late.claim_index(8) == 8
            await client.hdel(f"{prefix}nodes", "n2")
            again = RedisSessions(client, "again", prefix)
            await again.join()
            assert await again.claim_index(9) == 9
            fresh = RedisSessions(client, "fresh", prefix)
            await fresh.join()
            assert await fresh.claim_index(NODE_INDEXES + 7) == 10  # modulo; 7 to 9 held
        finally:
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    asyncio.run(run())
