"""XEP-0060 pubsub service at pubsub.localhost with real clients: node life cycle, items,
subscriptions and notifications, affiliations and access models, discovery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from suricate.core.server import Server
from tests.e2e.harness import disconnect, running_server
from tests.pubsub.conftest import PUBSUB_MODULES, accounts, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SERVICE = "pubsub.localhost"
NEWS = "<entry xmlns='urn:example:news'>hello</entry>"


def node_config(**fields: str) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#node_config")
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


def one(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


async def test_node_life_cycle_with_notifications(server: Server) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")
    owner, sub = alice.plugin["xep_0060"], bob.plugin["xep_0060"]
    await owner.create_node(SERVICE, "news", config=node_config(notify_retract="1",
                                                                 title="News"))
    with pytest.raises(IqError) as err:
        await owner.create_node(SERVICE, "news")
    assert err.value.condition == "conflict"
    answer = await sub.subscribe(SERVICE, "news")
    assert answer["pubsub"]["subscription"]["subscription"] == "subscribed"
    await owner.publish(SERVICE, "news", id="n1", payload=payload(NEWS))
    event = await bob_events.next("publish")
    assert str(event["from"]) == SERVICE
    assert event["pubsub_event"]["items"]["item"]["id"] == "n1"
    # Same id again: a replacement, still one item.
    await owner.publish(SERVICE, "news", id="n1", payload=payload(NEWS))
    await bob_events.next("publish")
    items = await sub.get_items(SERVICE, "news")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["n1"]
    # Only publishers publish (publish_model = publishers).
    with pytest.raises(IqError) as err:
        await sub.publish(SERVICE, "news", id="b", payload=payload(NEWS))
    assert err.value.condition == "forbidden"
    await owner.retract(SERVICE, "news", "n1")  # notify_retract = 1 in the config
    assert (await bob_events.next("retract"))["pubsub_event"]["items"]["retract"]["id"] == "n1"
    await owner.publish(SERVICE, "news", id="n2", payload=payload(NEWS))
    await bob_events.next("publish")
    await owner.purge(SERVICE, "news")
    assert (await bob_events.next("purge"))["pubsub_event"]["purge"]["node"] == "news"
    assert len((await sub.get_items(SERVICE, "news"))["pubsub"]["items"]) == 0
    subs = await sub.get_subscriptions(SERVICE)
    assert [s["node"] for s in subs["pubsub"]["subscriptions"]] == ["news"]
    await sub.unsubscribe(SERVICE, "news")
    with pytest.raises(IqError) as err:
        await sub.unsubscribe(SERVICE, "news")
    # XEP-0060 §6.2.3.2: not a subscriber is unexpected-request + not-subscribed, type cancel.
    assert (err.value.condition, err.value.etype) == ("unexpected-request", "cancel")
    assert "not-subscribed" in str(err.value.iq)
    await sub.subscribe(SERVICE, "news")
    with pytest.raises(IqError) as err:
        await sub.delete_node(SERVICE, "news")
    assert err.value.condition == "forbidden"
    await owner.delete_node(SERVICE, "news")
    assert (await bob_events.next("delete"))["pubsub_event"]["delete"]["node"] == "news"
    with pytest.raises(IqError) as err:
        await sub.get_items(SERVICE, "news")
    assert err.value.condition == "item-not-found"
    await disconnect(alice, bob)


async def test_configure_affiliations_and_access_models(server: Server) -> None:
    await accounts(server, "alice", "bob", "carol")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")
    carol, _ = await online(server, "carol")
    owner = alice.plugin["xep_0060"]
    await owner.create_node(SERVICE, "club", config=node_config(access_model="whitelist"))
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0060"].subscribe(SERVICE, "club")
    assert err.value.condition == "not-allowed" and "closed-node" in str(err.value.iq)
    await owner.modify_affiliations(SERVICE, "club", [("bob@localhost", "member"),
                                                      ("carol@localhost", "publisher")])
    affs = await owner.get_node_affiliations(SERVICE, "club")
    assert {(str(a["jid"]), a["affiliation"]) for a in affs["pubsub_owner"]["affiliations"]} \
        == {("alice@localhost", "owner"), ("bob@localhost", "member"),
            ("carol@localhost", "publisher")}
    await bob.plugin["xep_0060"].subscribe(SERVICE, "club")
    await carol.plugin["xep_0060"].publish(SERVICE, "club", id="c1", payload=payload(NEWS))
    assert (await bob_events.next("publish"))["pubsub_event"]["items"]["item"]["id"] == "c1"
    # An outcast loses its subscription and its access.
    await owner.modify_affiliations(SERVICE, "club", [("bob@localhost", "outcast")])
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0060"].get_items(SERVICE, "club")
    assert err.value.condition == "forbidden"
    # Reconfigure: authorize; a newcomer waits for the owner's approval.
    config = await owner.get_node_config(SERVICE, "club")
    fields = config["pubsub_owner"]["configure"]["form"].get_fields()
    assert fields["pubsub#access_model"]["value"] == "whitelist"
    await owner.set_node_config(SERVICE, "club", node_config(access_model="authorize"))
    await accounts(server, "dave")
    dave, _ = await online(server, "dave")
    forms: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("message_xform", forms.put_nowait)
    answer = await dave.plugin["xep_0060"].subscribe(SERVICE, "club")
    assert answer["pubsub"]["subscription"]["subscription"] == "pending"
    request = await asyncio.wait_for(forms.get(), 5)  # XEP-0060 §8.6
    assert request["form"].get_fields()["pubsub#subscriber_jid"]["value"] == "dave@localhost"
    with pytest.raises(IqError) as err:
        await dave.plugin["xep_0060"].get_items(SERVICE, "club")
    assert err.value.condition == "not-authorized"
    await owner.modify_subscriptions(SERVICE, "club", [("dave@localhost", "subscribed")])
    items = await dave.plugin["xep_0060"].get_items(SERVICE, "club")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["c1"]
    await disconnect(alice, bob, carol, dave)


async def test_discovery_and_limits(server: Server) -> None:
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    disco = alice.plugin["xep_0030"]
    items = await disco.get_items(jid="localhost")
    assert SERVICE in {str(i[0]) for i in items["disco_items"]["items"]}
    info = await disco.get_info(jid=SERVICE)
    assert any(i[:2] == ("pubsub", "service") for i in info["disco_info"]["identities"])
    assert "http://jabber.org/protocol/pubsub#publish" in info["disco_info"]["features"]
    owner = alice.plugin["xep_0060"]
    await owner.create_node(SERVICE, "meta", config=node_config(title="Meta node"))
    node_info = await disco.get_info(jid=SERVICE, node="meta")
    form = node_info["disco_info"]["form"].get_fields()
    # XEP-0060 §5.4 (and its FORM_TYPE registration): pubsub#meta-data, hyphenated.
    assert one(form["FORM_TYPE"]["value"]) == "http://jabber.org/protocol/pubsub#meta-data"
    assert one(form["pubsub#title"]["value"]) == "Meta node"
    assert "alice@localhost" in str(form["pubsub#owner"]["value"])
    listing = await disco.get_items(jid=SERVICE)
    assert ("meta", "Meta node") in {(i[1], i[2]) for i in listing["disco_items"]["items"]}
    # max_items_node (10 by default) bounds max_items with a clear error.
    with pytest.raises(IqError) as err:
        await owner.create_node(SERVICE, "big", config=node_config(max_items="11"))
    assert err.value.condition == "not-acceptable"
    assert "max_items_node" in err.value.text
    # An instant node gets a name from the service.
    answer = await owner.create_node(SERVICE, None)
    assert answer["pubsub"]["create"]["node"]
    await disconnect(alice)


async def test_a_message_to_the_service_is_bounced(server: Server) -> None:
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    errors: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("message_error", errors.put_nowait)
    alice.send_message(mto=SERVICE, mbody="hello?")
    error = await asyncio.wait_for(errors.get(), 5)
    assert error["error"]["condition"] == "service-unavailable"
    await disconnect(alice)


async def test_owner_approves_a_subscription_with_the_authorization_form(server: Server) -> None:
    await accounts(server, "alice", "eve")
    alice, _ = await online(server, "alice")
    eve, _ = await online(server, "eve")
    forms: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("message_xform", forms.put_nowait)
    outcome: asyncio.Queue[Any] = asyncio.Queue()
    eve.add_event_handler("pubsub_subscription", outcome.put_nowait)
    await alice.plugin["xep_0060"].create_node(SERVICE, "vip",
                                               config=node_config(access_model="authorize"))
    answer = await eve.plugin["xep_0060"].subscribe(SERVICE, "vip")
    assert answer["pubsub"]["subscription"]["subscription"] == "pending"
    request = await asyncio.wait_for(forms.get(), 5)
    fields = request["form"].get_fields()
    reply = Form()
    reply["type"] = "submit"
    for var in ("FORM_TYPE", "pubsub#node", "pubsub#subscriber_jid"):
        reply.add_field(var=var, value=fields[var]["value"])
    reply.add_field(var="pubsub#allow", ftype="boolean", value=True)
    message = alice.make_message(mto=SERVICE)
    message.append(reply)
    message.send()
    event = await asyncio.wait_for(outcome.get(), 5)  # XEP-0060 §8.6
    assert event["pubsub_event"]["subscription"]["subscription"] == "subscribed"
    await eve.plugin["xep_0060"].get_items(SERVICE, "vip")  # now allowed
    await disconnect(alice, eve)


async def test_actions_emit_mongooseim_events(server: Server) -> None:
    seen: list[tuple[str, dict[str, float]]] = []
    emit = server.instrument.emit

    def record(event: Any, labels: dict[str, str], measurements: dict[str, float]) -> None:
        seen.append((event.name, measurements))
        emit(event, labels, measurements)

    server.instrument.emit = record  # type: ignore[method-assign]
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    await alice.plugin["xep_0060"].create_node(SERVICE, "ev")
    with pytest.raises(IqError):
        await alice.plugin["xep_0060"].create_node(SERVICE, "ev")
    await alice.plugin["xep_0060"].get_items(SERVICE, "ev")
    assert any(e == "mod_pubsub_set_create" and m.get("count") == 1 for e, m in seen)
    assert ("mod_pubsub_set_create", {"errors": 1}) in seen
    assert any(e == "mod_pubsub_get_items" and m.get("time", -1) >= 0 for e, m in seen)
    await disconnect(alice)


async def test_notifications_without_payload_and_subscription_limit(tmp_path: Path) -> None:
    modules = PUBSUB_MODULES.replace("[modules.mod_pubsub]\n",
                                     "[modules.mod_pubsub]\nmax_subscriptions_node = 1\n")
    async with running_server(tmp_path, modules=modules) as server:
        await accounts(server, "alice", "bob", "carol")
        alice, _ = await online(server, "alice")
        bob, bob_events = await online(server, "bob")
        carol, _ = await online(server, "carol")
        await alice.plugin["xep_0060"].create_node(SERVICE, "ids",
                                                   config=node_config(deliver_payloads="0"))
        await bob.plugin["xep_0060"].subscribe(SERVICE, "ids")
        with pytest.raises(IqError) as err:
            await carol.plugin["xep_0060"].subscribe(SERVICE, "ids")
        assert err.value.condition == "not-allowed"
        assert "too-many-subscriptions" in str(err.value.iq)
        await alice.plugin["xep_0060"].publish(SERVICE, "ids", id="n1", payload=payload(NEWS))
        item = (await bob_events.next("publish"))["pubsub_event"]["items"]["item"]
        assert item["id"] == "n1" and len(item.xml) == 0  # §7.1.2.2: no payload
        await disconnect(alice, bob, carol)
