"""XEP-0402 PEP native bookmarks with real clients: the account's other resources hear about
a new bookmark, contacts do not (whitelist), and the bookmarks are read back."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import PLUGINS, accounts, friends, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BOOKMARKS = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"  # XEP-0048
ROOM = "coven@chat.shakespeare.lit"


def bookmark_options() -> Form:
    """XEP-0402 §3: the publish-options a client sends with each bookmark."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for var, value in (("persist_items", "true"), ("max_items", "max"),
                       ("send_last_published_item", "never"), ("access_model", "whitelist")):
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


async def test_bookmarks_reach_own_resources_only(server: Server) -> None:
    await accounts(server, "juliet", "romeo")
    await friends(server, "juliet", "romeo")
    plugins = (*PLUGINS, "xep_0402")
    phone, _ = await online(server, "juliet", (BOOKMARKS,), resource="phone", plugins=plugins)
    laptop, laptop_events = await online(server, "juliet", (BOOKMARKS,), resource="laptop",
                                         plugins=plugins)
    romeo, romeo_events = await online(server, "romeo", (BOOKMARKS,), plugins=plugins)
    conference = payload(f"<conference xmlns='{BOOKMARKS}' name='The Coven' autojoin='true'>"
                         "<nick>JC</nick></conference>")
    await phone.plugin["xep_0060"].publish("juliet@localhost", BOOKMARKS, id=ROOM,
                                           payload=conference, options=bookmark_options())
    event = await laptop_events.next("publish")
    item = event["pubsub_event"]["items"]["item"]
    conf = item.xml.find(f"{{{BOOKMARKS}}}conference")
    assert item["id"] == ROOM and conf.get("autojoin") == "true"
    assert conf.findtext(f"{{{BOOKMARKS}}}nick") == "JC"
    await romeo_events.none("publish")  # whitelist: the contact is not told
    items = await laptop.plugin["xep_0060"].get_items("juliet@localhost", BOOKMARKS)
    assert [i["conference"]["name"] for i in items["pubsub"]["items"]] == ["The Coven"]
    await phone.plugin["xep_0060"].retract("juliet@localhost", BOOKMARKS, ROOM, notify=True)
    retract = await laptop_events.next("retract")
    assert retract["pubsub_event"]["items"]["retract"]["id"] == ROOM
    await disconnect(phone, laptop, romeo)


async def test_xep_0411_private_and_pep_bookmarks_are_one_list(server: Server) -> None:
    from slixmpp.plugins.xep_0048.stanza import Bookmarks

    await accounts(server, "juliet")
    plugins = (*PLUGINS, "xep_0049", "xep_0048", "xep_0402")
    old, _ = await online(server, "juliet", resource="old", plugins=plugins)
    new, new_events = await online(server, "juliet", (BOOKMARKS,), resource="new",
                                   plugins=plugins)
    info = await new.plugin["xep_0030"].get_info(jid="juliet@localhost")
    assert f"{BOOKMARKS}#compat" in info["disco_info"]["features"]
    # XEP-0060 §10: "max" is understood as a value of pubsub#max_items: clients (Converse.js,
    # Gajim, Monal) send it with bookmarks only when this is advertised, else a number
    # (Converse.js: 9999) that max_items_node (1000 in the embedded default) refuses.
    assert "http://jabber.org/protocol/pubsub#config-node-max" in info["disco_info"]["features"]
    # An old client stores XEP-0048 bookmarks in private XML: the new one sees a PEP item.
    legacy = Bookmarks()
    legacy.add_conference(ROOM, "JC", name="The Coven", autojoin=True)
    await old.plugin["xep_0048"].set_bookmarks(legacy)
    event = await new_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == ROOM
    items = await new.plugin["xep_0060"].get_items("juliet@localhost", BOOKMARKS)
    conf = items["pubsub"]["items"]["item"].xml.find(f"{{{BOOKMARKS}}}conference")
    assert conf.get("name") == "The Coven" and conf.get("autojoin") == "true"
    assert conf.findtext(f"{{{BOOKMARKS}}}nick") == "JC"
    # A new client adds one through PEP: the old one reads both from private XML.
    other = "balcony@chat.shakespeare.lit"
    await new.plugin["xep_0060"].publish(
        "juliet@localhost", BOOKMARKS, id=other, options=bookmark_options(),
        payload=payload(f"<conference xmlns='{BOOKMARKS}' name='Balcony' autojoin='false'/>"))
    stored = await old.plugin["xep_0048"].get_bookmarks()
    rooms = {str(c["jid"]): c["name"] for c in stored["private"]["bookmarks"]["conferences"]}
    assert rooms == {ROOM: "The Coven", other: "Balcony"}
    # The old client removes one: it is retracted from PEP.
    await new_events.next("publish")
    legacy = Bookmarks()
    legacy.add_conference(other, None, name="Balcony")
    await old.plugin["xep_0048"].set_bookmarks(legacy)
    assert (await new_events.next("retract"))["pubsub_event"]["items"]["retract"]["id"] == ROOM
    await disconnect(old, new)


def legacy_options() -> Form:
    """XEP-0223 §3: the publish-options of a private PEP node (XEP-0048 §3.1 on PEP)."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#persist_items", value="true")
    form.add_field(var="pubsub#access_model", value="whitelist")
    return form


async def test_xep_0402_compat_pep_legacy_node_is_a_view(server: Server) -> None:
    """XEP-0402 §5.3 "#compat-pep": XEP-0048's PEP node (``storage:bookmarks``, one item
    ``current``) and XEP-0402's are one list; Gajim 1.7 uses XEP-0402 only where this is
    advertised (with config-node-max), the private XML copy otherwise."""
    from slixmpp.plugins.xep_0048.stanza import Bookmarks

    await accounts(server, "juliet")
    plugins = (*PLUGINS, "xep_0049", "xep_0048", "xep_0402")
    old, old_events = await online(server, "juliet", (LEGACY,), resource="old",
                                   plugins=plugins)
    new, new_events = await online(server, "juliet", (BOOKMARKS,), resource="new",
                                   plugins=plugins)
    info = await new.plugin["xep_0030"].get_info(jid="juliet@localhost")
    features = info["disco_info"]["features"]
    assert f"{BOOKMARKS}#compat-pep" in features
    assert "urn:xmpp:bookmarks-conversion:0" in features  # XEP-0411 §2
    # No bookmarks yet: the legacy node has no item.
    with pytest.raises(IqError) as err:
        await old.plugin["xep_0060"].get_items("juliet@localhost", LEGACY)
    assert err.value.condition == "item-not-found"
    # The legacy client publishes the whole list: XEP-0402's clients hear of each room.
    legacy = Bookmarks()
    legacy.add_conference(ROOM, "JC", name="The Coven", autojoin=True)
    await old.plugin["xep_0060"].publish("juliet@localhost", LEGACY, id="current",
                                         payload=legacy.xml, options=legacy_options())
    event = await new_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == ROOM
    assert (await old_events.next("publish"))["pubsub_event"]["items"]["node"] == LEGACY
    # A XEP-0402 client adds one: the legacy clients get the whole list, as the node's
    # item, and so reads the private XML copy.
    other = "balcony@chat.shakespeare.lit"
    await new.plugin["xep_0060"].publish(
        "juliet@localhost", BOOKMARKS, id=other, options=bookmark_options(),
        payload=payload(f"<conference xmlns='{BOOKMARKS}' name='Balcony' autojoin='false'/>"))
    notified = await old_events.next("publish")
    item = notified["pubsub_event"]["items"]["item"]
    assert item["id"] == "current"
    rooms = {c.get("jid") for c in item.xml.iter(f"{{{LEGACY}}}conference")}
    assert rooms == {ROOM, other}
    items = await old.plugin["xep_0060"].get_items("juliet@localhost", LEGACY)
    read = items["pubsub"]["items"]["item"]
    conferences = {c.get("jid"): c for c in read.xml.iter(f"{{{LEGACY}}}conference")}
    assert read["id"] == "current" and set(conferences) == {ROOM, other}
    assert conferences[ROOM].get("autojoin") == "true"
    assert conferences[ROOM].findtext(f"{{{LEGACY}}}nick") == "JC"
    stored = await old.plugin["xep_0048"].get_bookmarks()
    assert {str(c["jid"]) for c in stored["private"]["bookmarks"]["conferences"]} == \
        {ROOM, other}
    # The legacy client drops a room: it is retracted from XEP-0402's node.
    await new_events.next("publish")  # (its own Balcony)
    legacy = Bookmarks()
    legacy.add_conference(other, None, name="Balcony")
    await old.plugin["xep_0060"].publish("juliet@localhost", LEGACY, id="current",
                                         payload=legacy.xml, options=legacy_options())
    assert (await new_events.next("retract"))["pubsub_event"]["items"]["retract"]["id"] == ROOM
    await disconnect(old, new)


async def test_a_legacy_node_stored_before_joins_xep_0402_once(server: Server) -> None:
    """A storage:bookmarks node an old client published before it became a view: its rooms
    that XEP-0402's list lacks join it at the first legacy request, and the node goes."""
    import time

    from suricate.jid import JID
    from suricate.modules.mod_pubsub import Host
    from suricate.modules.mod_pubsub.store import Item

    await accounts(server, "juliet")
    module = server.modules["mod_pubsub"]
    host = Host(JID.parse("juliet@localhost"), True)
    old_room = "attic@chat.shakespeare.lit"
    await module.store.create_node(host.key, LEGACY, module.defaults(host, LEGACY),
                                   "juliet@localhost")
    await module.store.publish(host.key, LEGACY, Item(
        "current", "juliet@localhost",
        f"<storage xmlns='{LEGACY}'><conference jid='{old_room}' name='Attic' "
        "autojoin='true'><nick>JC</nick></conference></storage>", time.time_ns()), 1)
    plugins = (*PLUGINS, "xep_0049", "xep_0048", "xep_0402")
    new, _ = await online(server, "juliet", (BOOKMARKS,), resource="new", plugins=plugins)
    await new.plugin["xep_0060"].publish(
        "juliet@localhost", BOOKMARKS, id=ROOM, options=bookmark_options(),
        payload=payload(f"<conference xmlns='{BOOKMARKS}' name='The Coven' autojoin='true'/>"))
    items = await new.plugin["xep_0060"].get_items("juliet@localhost", LEGACY)
    rooms = {c.get("jid") for c in items["pubsub"]["items"]["item"].xml.iter(
        f"{{{LEGACY}}}conference")}
    assert rooms == {ROOM, old_room}
    native = await new.plugin["xep_0060"].get_items("juliet@localhost", BOOKMARKS)
    assert {i["id"] for i in native["pubsub"]["items"]} == {ROOM, old_room}
    assert await module.store.get_node(host.key, LEGACY) is None
    await disconnect(new)
