"""``suricate import-mongooseim``, a person's devices and conversations: PEP and PubSub
(bookmarks, avatar, OMEMO device list, a service node), the inbox, chat markers, push
registrations and MUC Light blocking lists, from a MongooseIM 6.4-shaped database on
PostgreSQL and on MariaDB, with the rows as 6.4's rdbms backends write them. The real CLI
runs twice, then real slixmpp clients log in over TLS and find them; a message to the
offline account reaches the app server (a XEP-0114 component) as a push notification."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.cli.main import main
from suricate.sasl.passwords import make_scram_record
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    free_port,
    server_toml,
    serving,
)
from tests.e2e.test_component import SECRET, component_toml
from tests.pusher.test_push import AppServer
from tests.xep0227.test_mongooseim import source_database

PW = "through the looking glass"
T = 1_700_000_000_000_000  # microseconds, as 6.4 writes its times
BOOKMARKS = "urn:xmpp:bookmarks:1"
METADATA = "urn:xmpp:avatar:metadata"
DEVICES = "eu.siacs.conversations.axolotl.devicelist"
INBOX = "erlang-solutions.com:xmpp:inbox:0"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"

# priv/pg.sql and priv/mysql.sql of 6.4, the columns the importer reads.
DDL = """
CREATE TABLE users (username varchar(250), server varchar(250), password text NOT NULL,
                    pass_details text);
CREATE TABLE pubsub_nodes (nidx BIGINT PRIMARY KEY, p_key VARCHAR(250) NOT NULL,
                           name VARCHAR(250) NOT NULL, type VARCHAR(250) NOT NULL,
                           owners JSON NOT NULL, options JSON NOT NULL);
CREATE TABLE pubsub_node_collections (name VARCHAR(250) NOT NULL,
                                      parent_name VARCHAR(250) NOT NULL);
CREATE TABLE pubsub_affiliations (nidx BIGINT NOT NULL, luser VARCHAR(250) NOT NULL,
                                  lserver VARCHAR(250) NOT NULL, aff SMALLINT NOT NULL);
CREATE TABLE pubsub_items (nidx BIGINT NOT NULL, itemid VARCHAR(250) NOT NULL,
    created_luser VARCHAR(250) NOT NULL, created_lserver VARCHAR(250) NOT NULL,
    created_at BIGINT NOT NULL, modified_luser VARCHAR(250) NOT NULL,
    modified_lserver VARCHAR(250) NOT NULL, modified_lresource VARCHAR(250) NOT NULL,
    modified_at BIGINT NOT NULL, publisher TEXT, payload TEXT NOT NULL);
CREATE TABLE pubsub_subscriptions (nidx BIGINT NOT NULL, luser VARCHAR(250) NOT NULL,
    lserver VARCHAR(250) NOT NULL, lresource VARCHAR(250) NOT NULL, type SMALLINT NOT NULL,
    sub_id VARCHAR(125) NOT NULL, options JSON NOT NULL);
CREATE TABLE inbox (luser VARCHAR(250) NOT NULL, lserver VARCHAR(250) NOT NULL,
    remote_bare_jid VARCHAR(250) NOT NULL, msg_id VARCHAR(250),
    box VARCHAR(64) NOT NULL DEFAULT 'inbox', content BLOB_T NOT NULL,
    timestamp BIGINT NOT NULL, muted_until BIGINT DEFAULT 0, unread_count INT NOT NULL);
CREATE TABLE smart_markers (lserver VARCHAR(250) NOT NULL, luser VARCHAR(250) NOT NULL,
    to_jid VARCHAR(250) NOT NULL, thread VARCHAR(250) NOT NULL, type CHAR(1) NOT NULL,
    msg_id VARCHAR(250) NOT NULL, timestamp BIGINT NOT NULL);
CREATE TABLE event_pusher_push_subscription (owner_jid VARCHAR(250), node VARCHAR(250),
    pubsub_jid VARCHAR(250), form JSON NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE muc_light_blocking (luser VARCHAR(250) NOT NULL, lserver VARCHAR(250) NOT NULL,
                                 what SMALLINT NOT NULL, who VARCHAR(500) NOT NULL);
"""


def _item(nidx: int, item_id: str, who: str, at: int, payload: str) -> tuple[str, tuple[Any, ...]]:
    # set_item: the payload wrapped in <item/> (exml:to_binary), times in microseconds, the
    # publisher's full JID.
    return ("INSERT INTO pubsub_items VALUES (?, ?, ?, 'localhost', ?, ?, 'localhost', 'phone',"
            " ?, ?, ?)", (nidx, item_id, who, at, who, at, f"{who}@localhost/phone",
                          f"<item>{payload}</item>"))


def _node(nidx: int, key: str, name: str, type_: str, owner: str, **opts: Any
          ) -> tuple[str, tuple[Any, ...]]:
    # set_node: owners and options as jiffy writes them (atoms as strings).
    return ("INSERT INTO pubsub_nodes VALUES (?, ?, ?, ?, ?, ?)",
            (nidx, key, name, type_, json.dumps([owner]), json.dumps(opts)))


def _conference(name: str) -> str:
    return (f"<conference xmlns='{BOOKMARKS}' name='{name}' autojoin='true'>"
            "<nick>alice</nick></conference>")


def _metadata(sha: str) -> str:
    return (f"<metadata xmlns='{METADATA}'><info id='{sha}' bytes='2048' type='image/png'"
            " width='64' height='64'/></metadata>")


def _message(frm: str, msg_id: str, body: str) -> bytes:
    return (f"<message xmlns='jabber:client' from='{frm}' to='alice@localhost' type='chat'"
            f" id='{msg_id}'><body>{body}</body></message>").encode()


def rows() -> list[tuple[str, tuple[Any, ...]]]:
    scram = make_scram_record(PW, iterations=4096)
    return [
        ("INSERT INTO users VALUES (?, 'localhost', '', ?), (?, 'localhost', '', ?)",
         ("alice", scram, "bob", scram)),
        # Alice's bookmarks as Conversations makes them (XEP-0402 §3: whitelist, max).
        _node(1, "alice@localhost", BOOKMARKS, "pep", "alice@localhost",
              access_model="whitelist", max_items="max", send_last_published_item="never",
              persist_items=True, purge_offline=False, node_type="leaf"),
        _item(1, "tea@conference.localhost", "alice", T, _conference("Tea")),
        _item(1, "garden@conference.localhost", "alice", T + 1, _conference("Garden")),
        _item(1, "broken@conference.localhost", "alice", T + 2, "<conference"),
        # Her avatar, published twice: the node keeps one (max_items = 1).
        _node(2, "alice@localhost", METADATA, "pep", "alice@localhost", access_model="presence",
              max_items=1),
        _item(2, "0ld", "alice", T, _metadata("0ld")),
        _item(2, "c0ffee", "alice", T + 5, _metadata("c0ffee")),
        # Bob's OMEMO device list, readable by anyone (what Conversations asks for).
        _node(3, "bob@localhost", DEVICES, "pep", "bob@localhost", access_model="open",
              max_items=1),
        _item(3, "current", "bob", T, "<list xmlns='eu.siacs.conversations.axolotl'>"
              "<device id='4223'/></list>"),
        # A service node with a publisher and a subscriber.
        _node(4, "pubsub.localhost", "news", "flat", "alice@localhost", title="News",
              max_items=5, access_model="open"),
        ("INSERT INTO pubsub_affiliations VALUES (4, 'alice', 'localhost', 1),"
         " (4, 'bob', 'localhost', 2), (1, 'alice', 'localhost', 1)", ()),
        ("INSERT INTO pubsub_subscriptions VALUES (4, 'bob', 'localhost', '', 3, 's1', ?)",
         (json.dumps({"deliver": True, "include_body": True}),)),
        _item(4, "first", "alice", T, "<entry xmlns='http://www.w3.org/2005/Atom'>"
              "<title>Hello</title></entry>"),
        # What Suricate does not serve: a push node (node_push) and a collection.
        _node(5, "pubsub.localhost", "phones", "push", "alice@localhost"),
        ("INSERT INTO pubsub_node_collections VALUES ('news', 'root')", ()),
        # Rows that cannot be taken: counted, the rest goes on.
        ("INSERT INTO pubsub_nodes VALUES (6, 'alice@localhost', 'odd', 'pep', '[]', '[]')",
         ()),
        _node(7, "pubsub.elsewhere.example", "feed", "flat", "alice@localhost"),
        ("INSERT INTO pubsub_subscriptions VALUES (4, 'dave', 'localhost', '', 0, 's0', '{}')",
         ()),
        ("INSERT INTO inbox VALUES ('alice', 'localhost', 'dave@localhost', 'd1', 'inbox', ?,"
         " ?, 0, 1)", (b"<message", T)),
        # The inbox: two unread from bob, one from carol, archived and muted.
        ("INSERT INTO inbox VALUES ('alice', 'localhost', 'bob@localhost', 'm2', 'inbox', ?,"
         " ?, 0, 2)", (_message("bob@localhost/desk", "m2", "See you at tea"), T + 10)),
        ("INSERT INTO inbox VALUES ('alice', 'localhost', 'carol@remote.example', 'c1',"
         " 'archive', ?, ?, ?, 1)", (_message("carol@remote.example/pc", "c1", "Off with"),
                                     T + 20, T + 10**13)),
        ("INSERT INTO smart_markers VALUES ('localhost', 'alice', 'bob@localhost', '', 'D',"
         " 'm1', ?)", (T + 9,)),
        # Alice's phone registered with push.localhost (XEP-0357), its publish-options.
        ("INSERT INTO event_pusher_push_subscription VALUES ('alice@localhost', 'phone-node',"
         " 'push.localhost', ?, ?)", (json.dumps({"secret": "s3cr3t"}), T)),
        ("INSERT INTO muc_light_blocking VALUES ('alice', 'localhost', 2,"
         " 'troll@remote.example'), ('alice', 'localhost', 1, 'spam@muclight.localhost')", ()),
    ]


@pytest.fixture(params=["pgsql", "mysql"])
def mim(request: pytest.FixtureRequest) -> Iterator[str]:
    with source_database(request.param, DDL, rows()) as dsn:
        yield dsn


MODULES = MODULES_TOML + """
[modules.mod_pubsub]
[modules.mod_inbox]
[modules.mod_smart_markers]
[modules.mod_muc_light]
[modules.mod_event_pusher.push]
"""


async def _inbox(client: Client) -> dict[str, tuple[int, str | None]]:
    """The client's inbox (the MongooseIM inbox protocol, raw): peer -> (unread, body)."""
    results: list[ET.Element | None] = []
    client.register_handler(Callback(
        "inbox", MatchXPath(f"{{jabber:client}}message/{{{INBOX}}}result"),
        lambda msg: results.append(msg.xml.find(f"{{{INBOX}}}result"))))
    iq = client.make_iq_set()
    iq.xml.append(ET.fromstring(f"<inbox xmlns='{INBOX}' queryid='q'/>"))
    await iq.send(timeout=5)
    out = {}
    for r in results:
        assert r is not None
        msg = r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")
        assert msg is not None
        out[msg.get("from", "").split("/")[0]] = (int(r.get("unread", "-1")),
                                                  msg.findtext("{jabber:client}body"))
    return out


async def test_pep_pubsub_inbox_markers_push_and_blocking(
        mim: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from suricate.cli import mongooseim, mongooseim_pubsub
    # Read in pages of two rows (nodes, inbox entries): the keyset paging is exercised.
    monkeypatch.setattr(mongooseim, "MAM_PAGE", 2)
    monkeypatch.setattr(mongooseim_pubsub, "PAGE", 2)
    c2s, tls, plain, comp_tls = free_port(), free_port(), free_port(), free_port()
    toml = server_toml(tmp_path, c2s, tls, extra=component_toml(tmp_path, plain, comp_tls),
                       modules=MODULES)
    cfg = tmp_path / "suricate.toml"
    cfg.write_text(toml)
    args = ["import-mongooseim", "--config", str(cfg), "--from", mim]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    for line in ("imported 4 PEP and PubSub nodes", "imported 5 PubSub items",
                 "imported 1 PubSub affiliations", "imported 1 PubSub subscriptions",
                 "imported 2 inbox entries", "imported 1 chat markers (smart_markers)",
                 "imported 1 push registrations (XEP-0357)",
                 "imported 2 MUC Light blocking items",
                 "skipped 1: PubSub items beyond their node's max_items",
                 "skipped 1: PubSub items that are not one <item/> with one payload",
                 "skipped 1: PubSub nodes of type push",
                 "skipped 1: pubsub_node_collections rows",
                 "skipped 1: PubSub nodes with unreadable owners or options",
                 "skipped 1: PubSub nodes of service pubsub.elsewhere.example",
                 "skipped 1: PubSub subscriptions unreadable (or none)",
                 "skipped 1: inbox entries whose peer or last message cannot be read"):
        assert line in out, out
    assert "error" not in out
    # A second run changes nothing.
    assert await asyncio.to_thread(main, args) == 0
    again = capsys.readouterr().out
    for line in ("skipped 4: PEP and PubSub nodes already present",
                 "skipped 5: PubSub items already present",
                 "skipped 1: PubSub subscriptions already present",
                 "skipped 2: inbox entries already present",
                 "skipped 1: chat markers (smart_markers) already present",
                 "skipped 1: push registrations (XEP-0357) already present",
                 "skipped 2: MUC Light blocking items already present"):
        assert line in again, again
    assert "imported 2 accounts" not in again and "PubSub items\n" not in again

    async with serving(tmp_path, toml, c2s_port=c2s, tls_port=tls) as server:
        app = AppServer("push.localhost", SECRET)
        app.connect("127.0.0.1", plain)
        await asyncio.wait_for(asyncio.shield(app.started), 10)
        bob = await connect(server, "bob@localhost/desk", PW, direct_tls=True)
        try:
            # Alice is offline: her phone's imported registration brings the notification,
            # with the publish-options her app gave MongooseIM.
            bob.send_message(mto=JID("alice@localhost"), mbody="Tea is ready", mtype="chat")
            _, iq = await asyncio.wait_for(app.published.get(), 5)
            publish = iq.xml.find(".//{http://jabber.org/protocol/pubsub}publish")
            assert publish is not None and publish.get("node") == "phone-node"
            fields = {f.get("var"): f.findtext("{jabber:x:data}value") for f in iq.xml.findall(
                ".//{http://jabber.org/protocol/pubsub}publish-options/{jabber:x:data}x/"
                "{jabber:x:data}field")}
            assert fields == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s3cr3t"}

            alice = await connect(server, "alice@localhost/phone", PW, direct_tls=True,
                                  plugins=("xep_0060",))
            try:
                pubsub = alice.plugin["xep_0060"]
                marks = await pubsub.get_items("alice@localhost", BOOKMARKS)
                assert sorted(i["id"] for i in marks["pubsub"]["items"]) == [
                    "garden@conference.localhost", "tea@conference.localhost"]
                assert "name=\"Garden\"" in str(marks)
                avatar = await pubsub.get_items("alice@localhost", METADATA)
                assert [i["id"] for i in avatar["pubsub"]["items"]] == ["c0ffee"]
                devices = await pubsub.get_items("bob@localhost", DEVICES)
                assert "<device id=\"4223\"" in str(devices)
                news = await pubsub.get_items("pubsub.localhost", "news")
                assert [i["id"] for i in news["pubsub"]["items"]] == ["first"]
                # Two unread from bob before the move, one since; carol's still archived.
                entries = await _inbox(alice)
                assert entries == {"bob@localhost": (3, "Tea is ready"),
                                   "carol@remote.example": (1, "Off with")}
            finally:
                await disconnect(alice)
        finally:
            await disconnect(bob)
            app.disconnect()
        st: dict[str, Any] = dict(server.module_stores)
        assert await st["mod_muc_light"].get_blocking("alice@localhost", "muclight.localhost") \
            == [("room", "spam@muclight.localhost"), ("user", "troll@remote.example")]
        [marker] = await st["mod_smart_markers"].of_user("localhost", "alice")
        assert (marker.to_jid, marker.type, marker.msg_id) == ("bob@localhost", "displayed",
                                                               "m1")
        assert await st["mod_pubsub"].affiliations(("pubsub.localhost", ""), "news") == [
            ("alice@localhost", "owner"), ("bob@localhost", "publisher")]
        assert await st["mod_pubsub"].subscription_options(
            ("pubsub.localhost", ""), "news", "bob@localhost", "s1") == {"include_body": True}
