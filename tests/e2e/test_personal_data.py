"""An account's personal data, end to end (GDPR art. 15 and 17): on the embedded default plus
every module that keeps something about an account, real clients (slixmpp over TLS, SASL2 for
a FAST token, HTTPS for an upload) and the admin API leave data in each; GraphQL
``gdpr.retrievePersonalData`` must export every kind of it (MongooseIM 6.4's zip of CSV files),
and each way of removing the account (GraphQL ``account.removeUser``, XEP-0077 §3.2 in band,
``suricate account unregister``) must leave no row naming it in any table of the database and
no file of it in the data folder, but for what other accounts keep (``OTHERS``). The same name
registered again must inherit nothing.

One table-driven test: the scan reads every table the migrations made, so a module added later
is checked without touching this file."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import secrets
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from slixmpp import JID as SlixJID

from suricate.admin import HTTP_HANDLERS
from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, serving
from tests.e2e.test_account_life import iq, make_contacts
from tests.e2e.test_auth_token import x_oauth
from tests.mobile.client import Sasl2Client, bind2, request_token
from tests.ops.harness import admin, admin_endpoint_toml
from tests.storage.conftest import pg_admin

USER = "xena"  # a name no other value of the test contains, so any trace of it is found
JID_ = f"{USER}@localhost"
ROOM = "club@conference.localhost"  # bob's
OWN_ROOM = "den@conference.localhost"  # the account's own
LIGHT = "muclight.localhost"
PUBSUB = "pubsub.localhost"
PS = "http://jabber.org/protocol/pubsub"

EXTRA_MODULES = """
[modules.mod_inbox]
[modules.mod_muc_light]
[modules.mod_smart_markers]
[modules.mod_privacy]
[modules.mod_event_pusher.push]
[modules.mod_keystore]
keys = [{name = "token_secret", type = "ram"}]
[modules.mod_auth_token]
"""

#: Rows other accounts keep that name the account: their own data (GDPR: the account's
#: contacts' rosters and archives are theirs), or the rooms' (a room's archive is its
#: occupants' conversation; 6.4 exports the account's group chat messages and keeps them).
OTHERS: dict[str, str] = {
    "roster_items": "bob's roster item of the account (bob's contact list)",
    "roster_groups": "bob's group of that item",
    "mam_message": "bob's archive of their conversation",
    "inbox": "bob's inbox entry of their conversation",
    "smart_markers": "bob's chat markers of their conversation",
    "mam_muc_message": "the room's archive of what the account said there (6.4 keeps it)",
    "offline_messages": "messages the account sent that wait for their recipients",
    "pubsub_items": "items it published on nodes others own (those nodes' content)",
}


def publish(node: str, item: str, payload: str) -> str:
    return (f"<pubsub xmlns='{PS}'><publish node='{node}'><item id='{item}'>{payload}</item>"
            "</publish></pubsub>")


PEP = {
    "urn:xmpp:bookmarks:1": publish(
        "urn:xmpp:bookmarks:1", ROOM, "<conference xmlns='urn:xmpp:bookmarks:1' name='C'/>"),
    "eu.siacs.conversations.axolotl.devicelist": publish(
        "eu.siacs.conversations.axolotl.devicelist", "current",
        "<list xmlns='eu.siacs.conversations.axolotl'><device id='4242'/></list>"),
    "urn:xmpp:avatar:metadata": publish(
        "urn:xmpp:avatar:metadata", "abc1", "<metadata xmlns='urn:xmpp:avatar:metadata'>"
        "<info id='abc1' bytes='3' type='image/png'/></metadata>"),
}


def pg_pool(name: str) -> str:
    return f"""
[outgoing_pools.rdbms.default]
workers = 4

[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "127.0.0.1"
database = "{name}"
username = "postgres"
password = ""
"""


@contextlib.asynccontextmanager
async def full_server(tmp: Path, backend: str) -> AsyncIterator[Server]:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload", "muclight"))
    ports = {"c2s_port": free_port(), "tls_port": free_port(), "http_port": free_port()}
    https = free_port()
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp / "suricate.db"),
                               c2s_port=ports["c2s_port"], tls_port=ports["tls_port"],
                               http_port=free_port(), https_port=https)
    toml += admin_endpoint_toml(ports["http_port"]) + EXTRA_MODULES
    db = None
    if backend == "pgsql":
        db = f"suricate_gdpr_{secrets.token_hex(5)}"
        try:
            await pg_admin(f'CREATE DATABASE "{db}"')
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL not reachable: {exc}")
            pytest.skip(f"PostgreSQL not reachable: {exc}")
        toml = re.sub(r"\[outgoing_pools\.rdbms\.default\.connection\]\ndriver = \"sqlite\"\n"
                      r"database = .*\n", pg_pool(db), toml)
    try:
        async with serving(tmp, toml, HTTP_HANDLERS, **ports) as server:
            server.https_port = https  # type: ignore[attr-defined]
            server.toml_text = toml  # type: ignore[attr-defined]
            yield server
    finally:
        if db is not None:
            await pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def fast_token(server: Server) -> None:
    client = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    try:
        client.features()
        out = client.plain(USER, "pw", bind2() + request_token("HT-SHA-256-NONE"),
                           agent="phone")
        assert out.ok and out.token is not None, out.xml
    finally:
        client.close()


async def ok(client: Client, kind: str, payload: str, to: str | None = None) -> str:
    answer = await iq(client, kind, payload, to)
    assert 'type="result"' in answer, answer
    return answer


async def upload(server: Server, xena: Client) -> None:
    answer = await ok(xena, "get", "<request xmlns='urn:xmpp:http:upload:0' filename='me.jpg' "
                      "size='5' content-type='image/jpeg'/>", to="upload.localhost")
    put = re.search(r"<put url=\"([^\"]+)\"", answer)
    assert put is not None, answer
    url = put.group(1).replace("&amp;", "&")
    async with aiohttp.ClientSession() as http, http.put(
            url, data=b"hello", headers={"content-type": "image/jpeg"}, ssl=False) as resp:
        assert resp.status == 201, await resp.text()


async def fill(server: Server, xena: Client, bob: Client) -> list[str]:
    """Data of the account in every module (the comments name the tables); its access and
    refresh tokens (mod_auth_token)."""
    await make_contacts(xena, bob)  # roster_items
    await ok(xena, "set", "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'>"
             "<group>friends</group></item></query>")  # roster_groups
    await ok(xena, "set", "<query xmlns='jabber:iq:private'><n xmlns='urn:x:notes'>note</n>"
             "</query>")  # private_storage
    await ok(xena, "set", "<vCard xmlns='vcard-temp'><FN>Xena W</FN><NICKNAME>xw</NICKNAME>"
             "</vCard>")  # vcards, vcard_search
    for payload in PEP.values():  # pubsub_nodes, pubsub_items (PEP)
        await ok(xena, "set", payload)
    # The pubsub service: a node of the account's (pubsub_affiliations) and a subscription
    # to bob's node (pubsub_subscriptions).
    await ok(xena, "set", f"<pubsub xmlns='{PS}'><create node='xnews'/></pubsub>", to=PUBSUB)
    await ok(bob, "set", f"<pubsub xmlns='{PS}'><create node='bnews'/></pubsub>", to=PUBSUB)
    await ok(xena, "set", f"<pubsub xmlns='{PS}'><subscribe node='bnews' jid='{JID_}'/>"
             "</pubsub>", to=PUBSUB)
    await ok(xena, "set", f"<pubsub xmlns='{PS}'><publish node='xnews'><item id='i1'>"
             "<entry xmlns='urn:x:e'>news</entry></item></publish></pubsub>", to=PUBSUB)
    await ok(xena, "set", "<block xmlns='urn:xmpp:blocking'><item jid='spam@example.org'>"
             "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/>"
             "</item></block>")  # blocklist, and spam_report (XEP-0377: the report filed)
    await ok(xena, "set", "<query xmlns='jabber:iq:privacy'><list name='work'>"
             "<item type='jid' value='boss@example.org' action='deny' order='1'/></list>"
             "</query>")  # privacy_lists, privacy_list_items
    tokens = re.findall(r"<(?:access|refresh)_token>([^<]+)<", await ok(
        xena, "get", "<query xmlns='erlang-solutions.com:xmpp:token-auth:0'/>", to=JID_))
    assert len(tokens) == 2  # auth_token
    tokens.append(str(time.time()))  # when (the new account must be created a second later)
    await asyncio.to_thread(fast_token, server)  # fast_auth_token
    await upload(server, xena)  # the data folder's upload/
    # Rooms: a member of bob's (muc_affiliations) with a registered nick (muc_registered),
    # the owner of its own (muc_rooms, muc_affiliations), a groupchat message (mam_muc).
    config = ("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
              "type='submit'><field var='FORM_TYPE'><value>"
              "http://jabber.org/protocol/muc#roomconfig</value></field>"
              "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>")
    for owner, room, nick in ((bob, ROOM, "bob"), (xena, OWN_ROOM, "x")):
        await owner.plugin["xep_0045"].join_muc_wait(SlixJID(room), nick, maxchars=0)
        await ok(owner, "set", config, to=room)
    await ok(bob, "set", "<query xmlns='http://jabber.org/protocol/muc#admin'><item "
             f"affiliation='member' jid='{JID_}'/></query>", to=ROOM)
    await ok(xena, "set", "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' "
             "type='submit'><field var='FORM_TYPE'><value>"
             "http://jabber.org/protocol/muc#register</value></field>"
             "<field var='muc#register_roomnick'><value>warrior</value></field></x></query>",
             to=ROOM)
    await xena.plugin["xep_0045"].join_muc_wait(SlixJID(ROOM), "warrior", maxchars=0)
    xena.send_message(mto=SlixJID(ROOM), mbody="hello club", mtype="groupchat")
    # MUC Light: a room with bob (muc_light_occupants), and a blocked user there
    # (muc_light_blocking).
    await ok(xena, "set", "<query xmlns='urn:xmpp:muclight:0#create'><configuration>"
             "<roomname>Lite</roomname></configuration><occupants><user affiliation='member'>"
             "bob@localhost</user></occupants></query>", to=f"lite@{LIGHT}")
    await ok(xena, "set", "<query xmlns='urn:xmpp:muclight:0#blocking'><user action='deny'>"
             "troll@localhost</user></query>", to=LIGHT)
    # One-to-one messages (mam_message, inbox) and a displayed marker (smart_markers).
    bob.send_message(mto=SlixJID(JID_), mbody="hi xena", mtype="chat")
    got = await xena.next_message()
    xena.send_message(mto=SlixJID("bob@localhost"), mbody="hi bob", mtype="chat")
    await bob.next_message()
    marker = xena.make_message(mto=SlixJID("bob@localhost"), mtype="chat")
    marker.xml.append(ET.fromstring(f"<displayed xmlns='urn:xmpp:chat-markers:0' "
                                    f"id='{got['id']}'/>"))
    marker.send()
    # Offline, and last activity: the account goes unavailable, bob writes.
    xena.send_presence(ptype="unavailable")
    await eventually(lambda: not server.sessions.available(JID.parse(JID_)))
    bob.send_message(mto=SlixJID(JID_), mbody="waiting offline", mtype="chat")
    # Push registered after it (a notification to an app server nobody runs would end it).
    await eventually(lambda: offline(server))
    await ok(xena, "set", "<enable xmlns='urn:xmpp:push:0' jid='push.example.org' "
             "node='n1'/>")  # push_registrations
    return tokens


async def offline(server: Server) -> bool:
    return await server.modules["mod_offline"].store.count_offline(  # type: ignore[attr-defined]
        "localhost", USER) == 1


# -- the database -------------------------------------------------------------------------
async def rows_naming(server: Server, needle: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table whose text holds ``needle``, by table (the archives' rows
    waiting in their writers written first)."""
    mam: Any = server.modules["mod_mam"]
    await mam.writer.flush_all()
    await mam.muc_archive.writer.flush_all()
    store: Any = server.storage
    if store.dialect == "sqlite":
        names = [r[0] for r in await store._fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        names = [r[0] for r in await store._fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name in names:
        for row in await store._fetch(f"SELECT * FROM {name}"):
            if needle in " ".join(str(v) for v in tuple(row)).lower():
                found.setdefault(name, []).append(tuple(row))
    return found


def read_zip(path: Path) -> dict[str, list[list[str]]]:
    with zipfile.ZipFile(path) as archive:
        return {name: list(csv.reader(io.StringIO(archive.read(name).decode())))
                for name in archive.namelist()}


def files_naming(base: Path, needle: str, data: bytes) -> list[str]:
    """Files of the data folder whose name or content holds the account or its upload."""
    found = []
    for path in base.rglob("*"):
        if not path.is_file() or path.suffix in (".db", ".db-wal", ".db-shm", ".log"):
            continue
        if needle in str(path.relative_to(base)).lower() or path.read_bytes() == data:
            found.append(str(path.relative_to(base)))
    return found


#: The kinds of data the export must hold (their CSV files), each filled by ``fill``.
EXPORTED = {
    "account", "roster", "vcard", "private", "offline", "mam_pm", "mam_muc",
    "inbox", "smart_markers", "last", "privacy_lists", "pep_nodes", "pep_items",
    "pubsub_subscriptions", "pubsub_nodes", "pubsub_payloads", "blocking", "spam_reports",
    "push",
    "auth_token", "fast_auth_token", "muc", "muc_light", "http_upload",
}


#: The headers of MongooseIM 6.4's files (its gdpr_SUITE): a tool reading its exports reads ours.
SIX_FOUR = {
    "roster": ["jid", "name", "subscription", "ask", "groups", "askmessage", "xs"],
    "vcard": ["jid", "vcard"], "private": ["ns", "xml"],
    "offline": ["timestamp", "from", "to", "packet"], "mam_pm": ["id", "from", "message"],
    "mam_muc": ["id", "message"], "inbox": ["jid", "content", "unread_count", "timestamp"],
    "pubsub_payloads": ["node_name", "item_id", "payload"],
    "pubsub_nodes": ["node_name", "type"], "pubsub_subscriptions": ["node_name"],
    "privacy_lists": ["name", "type", "value", "action", "order", "match_all", "match_iq",
                      "match_message", "match_presence_in", "match_presence_out"],
}


async def remove_in_band(server: Server, xena: Client) -> None:
    xena.send_presence()
    result = await xena.plugin["xep_0077"].cancel_registration()
    assert result["type"] == "result"


async def remove_by_graphql(server: Server, xena: Client) -> None:
    await admin(server, f'mutation {{ account {{ removeUser(user: "{JID_}") {{ jid }} }} }}')


REMOVALS = {"in_band": remove_in_band, "graphql": remove_by_graphql}


def remove_by_cli_offline(tmp: Path, toml: str) -> None:
    """``suricate account unregister`` with the server stopped: its admin endpoint refuses
    the connection, so the command works on the database itself."""
    from suricate.cli.main import main
    config = tmp / "cli.toml"
    config.write_text(toml)
    assert main(["account", "unregister", JID_, "--config", str(config)]) == 0


@pytest.mark.parametrize(("backend", "how"), [
    ("sqlite", "in_band"), ("sqlite", "graphql"), ("sqlite", "cli_offline"),
    pytest.param("pgsql", "graphql", marks=pytest.mark.postgres)])
async def test_export_then_erase_every_kind_of_data(tmp_path: Path, backend: str,
                                                    how: str) -> None:
    plugins = ("xep_0030", "xep_0045", "xep_0077")
    async with full_server(tmp_path, backend) as server:
        for user in (USER, "bob"):
            await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
        xena = await connect(server, f"{JID_}/phone", "pw", plugins=plugins)
        bob = await connect(server, "bob@localhost/laptop", "pw", plugins=plugins)
        xena.send_presence()
        bob.send_presence()
        tokens = await fill(server, xena, bob)
        assert await token_login(server, tokens[1]) == "success"

        async def stored() -> bool:
            tables = await rows_naming(server, USER)
            return {"last_activity", "smart_markers", "mam_muc_message"} <= set(tables)
        await eventually(stored)
        before = await rows_naming(server, USER)

        # Art. 15: every kind of data is in the export.
        target = tmp_path / "xena.zip"
        await admin(server, '{ gdpr { retrievePersonalData(username: "xena", '
                    f'domain: "localhost", resultFilepath: "{target}") }} }}')
        files = read_zip(target)
        missing = {kind for kind in EXPORTED if len(files.get(f"{kind}.csv", [])) < 2}
        assert not missing, (missing, sorted(files))
        assert "hello club" in str(files["mam_muc.csv"])
        assert "warrior" in str(files["muc.csv"])
        assert "4242" in str(files["pep_items.csv"])
        # MongooseIM 6.4's headers, where 6.4 has the kind.
        for kind, header in SIX_FOUR.items():
            assert files[f"{kind}.csv"][0] == header, kind
        assert files["roster.csv"][1][4] == "friends"
        target.unlink()  # the export, the operator's to hand over

        # Art. 17: removed, every table is clean but for what the others keep.
        if how == "cli_offline":
            await disconnect(xena, bob)
            toml = server.toml_text  # type: ignore[attr-defined]
        else:
            await REMOVALS[how](server, xena)
            await check_erased(server, bob, before, tokens, uploads=True)
            return
    await asyncio.to_thread(remove_by_cli_offline, tmp_path, toml)
    async with full_server(tmp_path, backend) as server:
        bob = await connect(server, "bob@localhost/laptop", "pw", plugins=plugins)
        # Uploaded files stay: only a running mod_http_upload knows its folder (operations.md).
        await check_erased(server, bob, before, tokens, uploads=False)


async def token_login(server: Server, token: str) -> str:
    """X-OAUTH with ``token``: 'success' or 'failure'."""
    answer, raw = await x_oauth(server, token)
    await raw.close()
    return "success" if answer.startswith("<success") else "failure"


async def check_erased(server: Server, bob: Client, before: dict[str, Any], tokens: list[str],
                       uploads: bool) -> None:
    plugins = ("xep_0030", "xep_0045", "xep_0077")
    assert not await server.auth.user_exists(JID.parse(JID_))
    await asyncio.sleep(0.3)
    left = await rows_naming(server, USER)
    assert set(left) <= set(OTHERS), {t: left[t] for t in set(left) - set(OTHERS)}
    for table, rows in left.items():
        assert all(USER not in str(row[:2]) for row in rows), (table, rows)
    assert set(before) - set(left), before
    if uploads:
        assert files_naming(server.base_dir, USER, b"hello") == []

    # The same name again inherits nothing: no row but its account, no room, no node.
    # (Created a second after the old tokens at least: their times are whole seconds.)
    await eventually(lambda: time.time() >= float(tokens[2]) + 1, timeout=2)
    await server.auth.register(JID.parse(JID_), "pw2")
    again = await connect(server, f"{JID_}/new", "pw2", plugins=plugins)
    again.send_presence()
    with contextlib.suppress(asyncio.TimeoutError):
        message = await again.next_message(timeout=0.5)
        raise AssertionError(f"an old message came back: {message}")
    members = await iq(bob, "get", "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                       "<item affiliation='member'/></query>", to=ROOM)
    assert USER not in members, members
    rooms = await iq(again, "get", "<query xmlns='urn:xmpp:muclight:0#info'/>",
                     to=f"lite@{LIGHT}")
    assert "type=\"error\"" in rooms, rooms
    light = await iq(bob, "get", "<query xmlns='urn:xmpp:muclight:0#affiliations'/>",
                     to=f"lite@{LIGHT}")
    assert "affiliation=\"owner\">bob@localhost" in light, light  # handed on (§5.4)
    pep = await iq(again, "get", f"<pubsub xmlns='{PS}'><items node="
                   "'eu.siacs.conversations.axolotl.devicelist'/></pubsub>")
    assert "4242" not in pep, pep
    after = await rows_naming(server, USER)
    assert set(after) - set(OTHERS) == {"users"}, after
    # The old account's tokens do not open the new one, even once it has tokens of its own
    # (its refresh-token number starts again where the old one's did).
    await ok(again, "get", "<query xmlns='erlang-solutions.com:xmpp:token-auth:0'/>", to=JID_)
    assert [await token_login(server, t) for t in tokens[:2]] == ["failure", "failure"]
    await disconnect(again, bob)
