"""XEP-0163 PEP with real clients: notifications filtered by +notify caps, the last item on
presence, access models, publish-options preconditions, retract, delete, account removal."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import PLUGINS, accounts, friends, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TUNE = "http://jabber.org/protocol/tune"
SONG = f"<tune xmlns='{TUNE}'><title>Yesterday</title></tune>"


def options(**fields: str) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


async def test_publish_notifies_contacts_with_notify_caps_only(server: Server) -> None:
    await accounts(server, "alice", "bob", "carol")
    await friends(server, "alice", "bob")
    await friends(server, "alice", "carol")
    alice, alice_events = await online(server, "alice", (TUNE,))
    bob, bob_events = await online(server, "bob", (TUNE,))
    carol, carol_events = await online(server, "carol", ())  # caps, but no +notify
    await alice.plugin["xep_0060"].publish("alice@localhost", TUNE, id="current",
                                           payload=payload(SONG))
    event = await bob_events.next("publish")
    assert str(event["from"]) == "alice@localhost"
    item = event["pubsub_event"]["items"]["item"]
    assert item["id"] == "current" and "Yesterday" in str(item)
    # XEP-0163 §4.3.2: the owner's own resources that asked for it are told too.
    assert (await alice_events.next("publish"))["pubsub_event"]["items"]["node"] == TUNE
    await carol_events.none("publish")
    # XEP-0163 §5, §6.1: the account shows identity pubsub/pep and the features a PEP
    # service must support.
    info = await bob.plugin["xep_0030"].get_info(jid="alice@localhost")
    assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
    features = set(info["disco_info"]["features"])
    assert {f"http://jabber.org/protocol/pubsub#{f}" for f in (
        "auto-create", "auto-subscribe", "filtered-notifications", "publish-options")} <= features
    await disconnect(alice, bob, carol)


async def test_last_item_on_presence_and_access_models(server: Server) -> None:
    await accounts(server, "alice", "bob", "dave")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    await alice.plugin["xep_0060"].publish("alice@localhost", TUNE, id="t1",
                                           payload=payload(SONG))
    # bob comes online later with +notify: the last item arrives with its delay stamp.
    bob, bob_events = await online(server, "bob", (TUNE,))
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == "t1"
    assert event["delay"]["stamp"] is not None
    # Access model presence (the PEP default): bob (a contact) may read, dave may not.
    items = await bob.plugin["xep_0060"].get_items("alice@localhost", TUNE)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["t1"]
    dave, _ = await online(server, "dave")
    with pytest.raises(IqError) as err:
        await dave.plugin["xep_0060"].get_items("alice@localhost", TUNE)
    assert err.value.condition == "not-authorized"
    assert "presence-subscription-required" in str(err.value.iq)
    # An open node (as OMEMO uses) is readable by anyone.
    await alice.plugin["xep_0060"].publish("alice@localhost", "urn:example:open", id="x",
                                           payload=payload("<x xmlns='urn:example:open'/>"),
                                           options=options(access_model="open"))
    items = await dave.plugin["xep_0060"].get_items("alice@localhost", "urn:example:open")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["x"]
    await disconnect(alice, bob, dave)


async def test_publish_options_precondition_and_max_items(server: Server) -> None:
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    pubsub = alice.plugin["xep_0060"]
    node = "urn:example:list"
    for n in range(3):
        await pubsub.publish("alice@localhost", node, id=f"i{n}",
                             payload=payload(f"<v xmlns='urn:example:list'>{n}</v>"),
                             options=options(max_items="max", access_model="open"))
    items = await pubsub.get_items("alice@localhost", node)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["i0", "i1", "i2"]
    newest = await pubsub.get_items("alice@localhost", node, max_items=1)
    assert [i["id"] for i in newest["pubsub"]["items"]] == ["i2"]
    # §6.5.7: a count of items; a negative one is bad input, not a database LIMIT.
    with pytest.raises(IqError) as err:
        await pubsub.get_items("alice@localhost", node, max_items=-1)
    assert err.value.condition == "bad-request"
    by_id = await pubsub.get_item("alice@localhost", node, "i1")
    assert [i["id"] for i in by_id["pubsub"]["items"]] == ["i1"]
    # XEP-0060 §7.1.5: options that contradict the node's configuration are refused.
    with pytest.raises(IqError) as err:
        await pubsub.publish("alice@localhost", node, id="i3",
                             payload=payload("<v xmlns='urn:example:list'>3</v>"),
                             options=options(access_model="whitelist"))
    assert err.value.condition == "conflict"
    assert "precondition-not-met" in str(err.value.iq)
    # A node default of max_items = 1 keeps only the newest item.
    for n in range(2):
        await pubsub.publish("alice@localhost", TUNE, id=f"s{n}", payload=payload(SONG))
    items = await pubsub.get_items("alice@localhost", TUNE)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["s1"]
    await disconnect(alice)


async def test_publish_options_with_an_unknown_field_are_refused(server: Server) -> None:
    """XEP-0060 §7.1.5 (1.15): each publish-options field is a precondition on the node
    configuration field of the same name, and the service "MUST reject the publication upon
    encountering unknown fields": conflict + precondition-not-met, on an existing node and
    on one that would be auto-created (which is then not created)."""
    await accounts(server, "alice")
    alice, _ = await online(server, "alice")
    pubsub = alice.plugin["xep_0060"]
    node = "urn:example:bogus"
    item = payload("<v xmlns='urn:example:bogus'>1</v>")
    with pytest.raises(IqError) as err:
        await pubsub.publish("alice@localhost", node, id="new", payload=item,
                             options=options(access_model="open", bogus_option="1"))
    assert err.value.condition == "conflict"
    assert "precondition-not-met" in str(err.value.iq)
    with pytest.raises(IqError) as err:
        await pubsub.get_items("alice@localhost", node)
    assert err.value.condition == "item-not-found"  # not auto-created
    await pubsub.publish("alice@localhost", node, id="first", payload=item,
                         options=options(access_model="open"))
    with pytest.raises(IqError) as err:
        await pubsub.publish("alice@localhost", node, id="second", payload=item,
                             options=options(access_model="open", bogus_option="1"))
    assert err.value.condition == "conflict"
    assert "precondition-not-met" in str(err.value.iq)
    items = await pubsub.get_items("alice@localhost", node)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["first"]
    await disconnect(alice)


async def test_retract_delete_and_account_removal(server: Server) -> None:
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob", (TUNE,))
    pubsub = alice.plugin["xep_0060"]
    await pubsub.publish("alice@localhost", TUNE, id="t1", payload=payload(SONG))
    await bob_events.next("publish")
    await pubsub.retract("alice@localhost", TUNE, "t1", notify=True)
    retract = await bob_events.next("retract")
    assert retract["pubsub_event"]["items"]["retract"]["id"] == "t1"
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0060"].publish("alice@localhost", TUNE, id="x",
                                             payload=payload(SONG))
    assert err.value.condition == "forbidden"
    await pubsub.delete_node("alice@localhost", TUNE)
    with pytest.raises(IqError) as err:
        await pubsub.get_items("alice@localhost", TUNE)
    assert err.value.condition == "item-not-found"
    await pubsub.publish("alice@localhost", TUNE, id="t2", payload=payload(SONG))
    await disconnect(alice, bob)
    assert await server.module_stores["mod_pubsub"].list_nodes(("localhost", "alice"))
    await server.auth.remove(JID.parse("alice@localhost"))
    assert not await server.module_stores["mod_pubsub"].list_nodes(("localhost", "alice"))


async def test_roster_and_whitelist_access_models(server: Server) -> None:
    await accounts(server, "alice", "bob", "carol")
    await server.modules["mod_roster"].store.put_roster_item("localhost", "alice", RosterItem(
        "bob@localhost", subscription="both", groups=("Family",)))
    await friends(server, "alice", "carol")  # a contact, but in no group
    alice, _ = await online(server, "alice")
    bob, _ = await online(server, "bob")
    carol, _ = await online(server, "carol")
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", "urn:example:family", id="f",
        payload=payload("<f xmlns='urn:example:family'/>"),
        options=options(access_model="roster", roster_groups_allowed="Family"))
    items = await bob.plugin["xep_0060"].get_items("alice@localhost", "urn:example:family")
    assert [i["id"] for i in items["pubsub"]["items"]] == ["f"]
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0060"].get_items("alice@localhost", "urn:example:family")
    assert err.value.condition == "not-authorized" and "not-in-roster-group" in str(err.value.iq)
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", "urn:example:secret", id="s",
        payload=payload("<s xmlns='urn:example:secret'/>"),
        options=options(access_model="whitelist"))
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0060"].get_items("alice@localhost", "urn:example:secret")
    assert err.value.condition == "not-allowed" and "closed-node" in str(err.value.iq)
    await disconnect(alice, bob, carol)


async def test_a_new_presence_subscriber_gets_the_last_item(server: Server) -> None:
    """XEP-0163 §4.3.4: "a PEP service MUST send the last published item to all new
    subscribers": dave, online with +notify, gets alice's tune as soon as alice approves his
    presence subscription, not only at his next login."""
    await accounts(server, "alice", "dave")
    alice, _ = await online(server, "alice")
    dave, dave_events = await online(server, "dave", (TUNE,))
    await alice.plugin["xep_0060"].publish("alice@localhost", TUNE, id="t1",
                                           payload=payload(SONG))
    await dave_events.none("publish")  # not a contact yet
    dave.send_presence(pto="alice@localhost", ptype="subscribe")
    await alice.next_presence(type_="subscribe")
    alice.send_presence(pto="dave@localhost", ptype="subscribed")
    event = await dave_events.next("publish")
    assert str(event["from"]) == "alice@localhost"
    assert event["pubsub_event"]["items"]["item"]["id"] == "t1"
    assert event["delay"]["stamp"] is not None
    await disconnect(alice, dave)


async def test_a_subscriber_that_loses_access_loses_its_subscription(server: Server) -> None:
    """XEP-0163 §7.1: when a presence subscription changes, access to presence nodes is
    computed again and a subscriber that lost it "MUST" lose its subscription: bob, who
    subscribed explicitly to alice's tune, hears nothing more once alice cancels his
    presence subscription."""
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")  # no +notify: only the explicit subscription
    pubsub = alice.plugin["xep_0060"]
    await pubsub.publish("alice@localhost", TUNE, id="t1", payload=payload(SONG))
    await bob.plugin["xep_0060"].subscribe("alice@localhost", TUNE)
    await bob_events.next("publish")  # the last item, on subscription
    alice.send_presence(pto="bob@localhost", ptype="unsubscribed")
    await bob.next_presence(type_="unsubscribed")
    await pubsub.publish("alice@localhost", TUNE, id="t2", payload=payload(SONG))
    await bob_events.none("publish")
    subs = await bob.plugin["xep_0060"].get_subscriptions("alice@localhost")
    assert list(subs["pubsub"]["subscriptions"]) == []
    await disconnect(alice, bob)


async def test_a_blocked_contact_gets_an_error_not_silence(server: Server) -> None:
    """XEP-0191 §3.3: alice blocked bob, so her server keeps her PEP items from him; his
    request is still answered, with service-unavailable (RFC 6120 §8.2.3: an IQ gets a
    response), instead of being left to time out."""
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice", plugins=(*PLUGINS, "xep_0191"))
    bob, bob_events = await online(server, "bob", (TUNE,))
    await alice.plugin["xep_0060"].publish("alice@localhost", TUNE, id="t1",
                                           payload=payload(SONG))
    await bob_events.next("publish")
    await alice.plugin["xep_0191"].block("bob@localhost")
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0060"].get_items("alice@localhost", TUNE, timeout=3)
    assert err.value.condition == "service-unavailable"
    assert "Yesterday" not in str(err.value.iq)
    await disconnect(alice, bob)


AVATAR_METADATA = "urn:xmpp:avatar:metadata"


async def test_disco_info_and_items_of_a_pep_node(server: Server) -> None:
    """XEP-0060 §5.3 to §5.5 at the account's virtual pubsub service (XEP-0163 §2: the bare
    JID is the service): disco#info of an existing node answers identity pubsub/leaf and the
    ``pubsub#meta-data`` form, its disco#items the item ids; a node that does not exist, or
    that the asker may not read (as disco#items leaves it out), is item-not-found (XEP-0030
    §3.1, §4.1)."""
    await accounts(server, "alice", "bob", "dave")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, _ = await online(server, "bob")
    dave, _ = await online(server, "dave")
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", AVATAR_METADATA, id="none",
        payload=payload(f"<metadata xmlns='{AVATAR_METADATA}'/>"))
    for asker in (bob, alice):
        info = await asker.plugin["xep_0030"].get_info(jid="alice@localhost",
                                                       node=AVATAR_METADATA)
        disco = info["disco_info"]
        assert disco["node"] == AVATAR_METADATA
        assert [i[:2] for i in disco["identities"]] == [("pubsub", "leaf")]
        assert "http://jabber.org/protocol/pubsub" in disco["features"]
        form = disco["form"].get_fields()
        assert form["FORM_TYPE"]["type"] == "hidden"
        assert form["FORM_TYPE"]["value"] == ["http://jabber.org/protocol/pubsub#meta-data"]
        assert form["pubsub#access_model"]["value"] == "presence"  # the PEP default
        assert "alice@localhost" in str(form["pubsub#owner"]["value"])
    items = await bob.plugin["xep_0030"].get_items(jid="alice@localhost", node=AVATAR_METADATA)
    assert items["disco_items"]["node"] == AVATAR_METADATA
    assert [(str(i[0]), i[1], i[2]) for i in items["disco_items"]["items"]] == [
        ("alice@localhost", None, "none")]  # §5.5: named by ItemID, no 'node'
    for ask in (bob.plugin["xep_0030"].get_info, bob.plugin["xep_0030"].get_items):
        with pytest.raises(IqError) as err:
            await ask(jid="alice@localhost", node="urn:example:none")
        assert (err.value.condition, err.value.etype) == ("item-not-found", "cancel")
    for ask in (dave.plugin["xep_0030"].get_info, dave.plugin["xep_0030"].get_items):
        with pytest.raises(IqError) as err:  # not one of alice's presence subscribers
            await ask(jid="alice@localhost", node=AVATAR_METADATA)
        assert err.value.condition == "item-not-found"
    await disconnect(alice, bob, dave)
