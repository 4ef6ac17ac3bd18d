"""XEP-0060 service walk with slixmpp over TLS and raw stanzas: items paged with XEP-0059
(§6.5.4), the publish-only affiliation (§4.1), collection and item-expiry configuration
refused rather than ignored, node deletion with a redirect (§8.4.1), the get-pending
ad-hoc command (§8.7)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.modules.mod_pubsub.store import Item
from tests.e2e.harness import disconnect, running_server
from tests.pubsub.conftest import PUBSUB_MODULES, accounts, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SERVICE = "pubsub.localhost"
PUBSUB = "http://jabber.org/protocol/pubsub"
RSM = "http://jabber.org/protocol/rsm"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
COMMANDS = "http://jabber.org/protocol/commands"
GET_PENDING = f"{PUBSUB}#get-pending"
NEWS = "<entry xmlns='urn:example:news'>hello</entry>"


async def send(client: Any, stype: str, xml: str) -> ET.Element:
    """A raw IQ to the service; its answer's XML (IqError for an error)."""
    iq = client.Iq(sto=SERVICE, stype=stype)
    iq.xml.append(ET.fromstring(xml))
    answer = await iq.send(timeout=5)
    return answer.xml  # type: ignore[no-any-return]


def create_with(node: str, **fields: str) -> str:
    values = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>"
                     for k, v in fields.items())
    return (f"<pubsub xmlns='{PUBSUB}'><create node='{node}'/><configure>"
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#node_config</value></field>{values}</x></configure></pubsub>")


def page(answer: ET.Element) -> tuple[list[str], dict[str, Any]]:
    """The item ids of an items answer and its RSM <set/>: first (with index), last, count."""
    pubsub = answer.find(f"{{{PUBSUB}}}pubsub")
    assert pubsub is not None
    ids = [i.get("id", "") for i in pubsub.iter(f"{{{PUBSUB}}}item")]
    rsm = pubsub.find(f"{{{RSM}}}set")
    assert rsm is not None, ET.tostring(answer)
    first = rsm.find(f"{{{RSM}}}first")
    return ids, {"first": None if first is None else (first.text, first.get("index")),
                 "last": rsm.findtext(f"{{{RSM}}}last"),
                 "count": rsm.findtext(f"{{{RSM}}}count")}


def items_query(node: str, rsm: str, max_items: str = "") -> str:
    attr = f" max_items='{max_items}'" if max_items else ""
    return (f"<pubsub xmlns='{PUBSUB}'><items node='{node}'{attr}/>"
            f"<set xmlns='{RSM}'>{rsm}</set></pubsub>")


async def test_items_of_a_1000_item_node_are_paged_with_rsm(tmp_path: Path) -> None:
    modules = PUBSUB_MODULES.replace("[modules.mod_pubsub]\n",
                                     "[modules.mod_pubsub]\nmax_items_node = 1000\n")
    async with running_server(tmp_path, modules=modules) as server:
        await accounts(server, "alice", "bob")
        alice, _ = await online(server, "alice")
        bob, _ = await online(server, "bob")
        await send(alice, "set", create_with("feed", max_items="1000"))
        store = server.modules["mod_pubsub"].store
        now = time.time_ns()
        for i in range(1000):  # written directly: 1000 publishes by IQ take too long here
            await store.publish((SERVICE, ""), "feed",
                                Item(f"i{i}", "alice@localhost", NEWS, now + i), 1000)
        info = await bob.plugin["xep_0030"].get_info(jid=SERVICE)
        assert f"{PUBSUB}#rsm" in info["disco_info"]["features"]
        # §6.5.4: the first page is the newest items; before, every item came back.
        ids, rsm = page(await send(bob, "get", items_query("feed", "<max>10</max>")))
        assert ids == [f"i{i}" for i in range(999, 989, -1)]
        assert rsm == {"first": ("i999", "0"), "last": "i990", "count": "1000"}
        ids, rsm = page(await send(bob, "get", items_query(
            "feed", "<max>10</max><after>i990</after>")))
        assert ids == [f"i{i}" for i in range(989, 979, -1)]
        assert rsm["first"] == ("i989", "10")
        ids, rsm = page(await send(bob, "get", items_query("feed", "<max>5</max><before/>")))
        assert ids == ["i4", "i3", "i2", "i1", "i0"] and rsm["first"] == ("i4", "995")
        ids, rsm = page(await send(bob, "get", items_query("feed", "<max>0</max>")))
        assert ids == [] and rsm == {"first": None, "last": None, "count": "1000"}
        # max_items bounds the set to the newest items.
        ids, rsm = page(await send(bob, "get", items_query("feed", "<max>2</max>", "3")))
        assert ids == ["i999", "i998"] and rsm["count"] == "3"
        with pytest.raises(IqError) as err:
            await send(bob, "get", items_query("feed", "<max>5</max><after>nope</after>"))
        assert err.value.condition == "item-not-found"
        await disconnect(alice, bob)


async def test_publish_only_affiliation(server: Any) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, _ = await online(server, "bob")
    owner, sensor = alice.plugin["xep_0060"], bob.plugin["xep_0060"]
    await owner.create_node(SERVICE, "telemetry")
    await owner.publish(SERVICE, "telemetry", id="by-owner", payload=payload(NEWS))
    # §8.9: before, 'publish-only' was refused with bad-request.
    await owner.modify_affiliations(SERVICE, "telemetry", [("bob@localhost", "publish-only")])
    affs = await owner.get_node_affiliations(SERVICE, "telemetry")
    assert ("bob@localhost", "publish-only") in {
        (str(a["jid"]), a["affiliation"]) for a in affs["pubsub_owner"]["affiliations"]}
    await sensor.publish(SERVICE, "telemetry", id="by-bob", payload=payload(NEWS))
    # §4.1: it may not subscribe nor retrieve items, even on an open node.
    for request in (sensor.subscribe(SERVICE, "telemetry"),
                    sensor.get_items(SERVICE, "telemetry")):
        with pytest.raises(IqError) as err:
            await request
        assert err.value.condition == "forbidden"
    # It retracts its own items only.
    with pytest.raises(IqError) as err:
        await sensor.retract(SERVICE, "telemetry", "by-owner")
    assert err.value.condition == "forbidden"
    await sensor.retract(SERVICE, "telemetry", "by-bob")
    items = await owner.get_items(SERVICE, "telemetry")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["by-owner"]
    await disconnect(alice, bob)


async def test_collections_and_item_expiry_are_refused(server: Any) -> None:
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    # Before, the fields were dropped: a leaf node without expiry was created, "success".
    with pytest.raises(IqError) as err:
        await send(alice, "set", create_with("tree", node_type="collection"))
    assert err.value.condition == "feature-not-implemented"
    unsupported = err.value.iq.xml.find(f".//{{{ERRORS}}}unsupported")
    assert unsupported is not None and unsupported.get("feature") == "collections"
    with pytest.raises(IqError) as err:
        await send(alice, "set", create_with("child", collection="tree"))
    assert err.value.condition == "feature-not-implemented"
    with pytest.raises(IqError) as err:
        await send(alice, "set", create_with("short", item_expire="60"))
    assert err.value.condition == "not-acceptable" and "item_expire" in err.value.text
    listing = await alice.plugin["xep_0030"].get_items(jid=SERVICE)
    assert not listing["disco_items"]["items"]
    await send(alice, "set", create_with("leaf", node_type="leaf", item_expire="0"))
    await disconnect(alice)


async def test_delete_with_redirect_tells_subscribers(server: Any) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")
    await alice.plugin["xep_0060"].create_node(SERVICE, "old")
    await bob.plugin["xep_0060"].subscribe(SERVICE, "old")
    uri = "xmpp:pubsub.localhost?;node=new"
    await send(alice, "set", f"<pubsub xmlns='{PUBSUB}#owner'><delete node='old'>"
                             f"<redirect uri='{uri}'/></delete></pubsub>")
    event = await bob_events.next("delete")
    redirect = event.xml.find(f".//{{{PUBSUB}#event}}redirect")
    assert redirect is not None and redirect.get("uri") == uri  # §8.4.1
    await disconnect(alice, bob)


async def test_owner_gets_pending_subscriptions_with_the_ad_hoc_command(server: Any) -> None:
    await accounts(server, "alice", "bob", "dave")
    alice, _ = await online(server, "alice")
    bob, _ = await online(server, "bob")
    dave, _ = await online(server, "dave")
    forms: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("message_xform", forms.put_nowait)
    await send(alice, "set", create_with("vip", access_model="authorize"))
    await dave.plugin["xep_0060"].subscribe(SERVICE, "vip")
    await asyncio.wait_for(forms.get(), 5)  # §8.6, when dave asked
    # §8.7: get-pending was advertised, but the command was service-unavailable.
    listing = await alice.plugin["xep_0030"].get_items(jid=SERVICE, node=COMMANDS)
    assert (SERVICE, GET_PENDING) in {tuple(i[:2]) for i in listing["disco_items"]["items"]}
    command = f"<command xmlns='{COMMANDS}' node='{GET_PENDING}' action='execute'/>"
    answer = (await send(alice, "set", command)).find(f"{{{COMMANDS}}}command")
    assert answer is not None and answer.get("status") == "executing"
    options = [v.text for v in answer.iter("{jabber:x:data}value")]
    assert "vip" in options
    submit = (f"<command xmlns='{COMMANDS}' node='{GET_PENDING}' "
              f"sessionid='{answer.get('sessionid')}'><x xmlns='jabber:x:data' type='submit'>"
              "<field var='pubsub#node'><value>vip</value></field></x></command>")
    done = (await send(alice, "set", submit)).find(f"{{{COMMANDS}}}command")
    assert done is not None and done.get("status") == "completed"
    again = await asyncio.wait_for(forms.get(), 5)
    assert again["form"].get_fields()["pubsub#subscriber_jid"]["value"] == "dave@localhost"
    with pytest.raises(IqError) as err:
        await send(bob, "set", submit)  # not an owner
    assert err.value.condition == "forbidden"
    await disconnect(alice, bob, dave)


async def test_last_item_when_a_subscriber_comes_online(server: Any) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    await send(alice, "set", create_with("status", send_last_published_item="on_sub_and_presence"))
    await send(alice, "set", create_with("quiet", send_last_published_item="on_sub"))
    bob, bob_events = await online(server, "bob")
    for node in ("quiet", "status"):
        await bob.plugin["xep_0060"].subscribe(SERVICE, node)
    await disconnect(bob)
    for node in ("quiet", "status"):
        await alice.plugin["xep_0060"].publish(SERVICE, node, id=f"{node}-1",
                                               payload=payload(NEWS))
    # §16.4.4 on_sub_and_presence: "whenever a subscriber comes online"; before, nothing came
    # (and the headline notifications sent while bob was offline are not stored).
    bob, bob_events = await online(server, "bob")
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["node"] == "status"
    assert event["pubsub_event"]["items"]["item"]["id"] == "status-1"
    assert event.xml.find("{urn:xmpp:delay}delay") is not None
    await bob_events.none("publish", 0.2)  # not the on_sub node's
    await disconnect(alice, bob)


def app_error(err: IqError) -> str | None:
    found = [c.tag.split("}")[1] for c in err.iq.xml.iter() if c.tag.startswith(f"{{{ERRORS}}}")]
    return found[0] if found else None


async def test_publish_fits_the_event_type_of_the_node(server: Any) -> None:
    """§7.1.3.6: transient notification-only nodes take no item, notification-only nodes
    an item without payload; payload nodes need both."""
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")
    await send(alice, "set", create_with("ping", persist_items="0", deliver_payloads="0"))
    await send(alice, "set", create_with("ids", deliver_payloads="0"))
    await send(alice, "set", create_with("full"))
    await bob.plugin["xep_0060"].subscribe(SERVICE, "ping")
    # Before: item-required for the transient notification node (which then took nothing).
    answer = await send(alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='ping'/></pubsub>")
    published = answer.find(f".//{{{PUBSUB}}}item")
    assert published is not None and published.get("id")
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == published.get("id")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0060"].publish(SERVICE, "ping", id="x", payload=payload(NEWS))
    assert (err.value.condition, app_error(err.value)) == ("bad-request", "item-forbidden")
    # Before: payload-required for a notification-only node.
    await send(alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='ids'><item id='n1'/>"
                             "</publish></pubsub>")
    items = await alice.plugin["xep_0060"].get_items(SERVICE, "ids")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["n1"]
    for request, condition in (("<item id='e'/>", "payload-required"), ("", "item-required")):
        with pytest.raises(IqError) as err:
            await send(alice, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='full'>{request}"
                                     "</publish></pubsub>")
        assert (err.value.condition, app_error(err.value)) == ("bad-request", condition)
    await disconnect(alice, bob)


async def test_an_open_node_publisher_retracts_its_own_items(server: Any) -> None:
    await accounts(server, "alice", "dave")
    alice, _ = await online(server, "alice")
    dave, _ = await online(server, "dave")
    await send(alice, "set", create_with("wall", publish_model="open"))
    await alice.plugin["xep_0060"].publish(SERVICE, "wall", id="a1", payload=payload(NEWS))
    await dave.plugin["xep_0060"].publish(SERVICE, "wall", id="d1", payload=payload(NEWS))
    # Before: anyone could publish, but only owners and publishers retract (forbidden).
    await dave.plugin["xep_0060"].retract(SERVICE, "wall", "d1")
    with pytest.raises(IqError) as err:
        await dave.plugin["xep_0060"].retract(SERVICE, "wall", "a1")
    assert err.value.condition == "forbidden"
    items = await alice.plugin["xep_0060"].get_items(SERVICE, "wall")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["a1"]
    await disconnect(alice, dave)
