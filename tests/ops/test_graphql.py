"""The admin, domain_admin and user GraphQL endpoints over real HTTP, with real clients."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from suricate.admin.schema import build
from tests.e2e.harness import Client, connect, disconnect, eventually
from tests.ops.harness import ADMIN, admin, basic, gql, http, ops_server

REGISTER = ('mutation($d: DomainName!, $u: String, $p: String!) { account { '
            'registerUser(domain: $d, username: $u, password: $p) { jid message } } }')


def watch_disconnect(client: Client) -> asyncio.Future[bool]:
    gone: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    client.add_event_handler("disconnected",
                             lambda _: gone.done() or gone.set_result(True))
    return gone


def code_of(result: dict[str, Any]) -> str:
    return str(result["errors"][0]["extensions"]["code"])


def test_every_schema_field_has_a_resolver() -> None:
    for endpoint in ("admin", "domain_admin", "user"):
        build(endpoint)  # raises on a field without a resolver


async def test_register_login_kick(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        data = await admin(server, REGISTER, d="localhost", u="alice", p="pw")
        assert data["account"]["registerUser"]["jid"] == "alice@localhost"
        dup_status, dup = await gql(server, REGISTER, {"d": "localhost", "u": "alice",
                                                       "p": "x"})
        assert dup_status == 200 and code_of(dup) == "user_exists"
        alice = await connect(server, "alice@localhost/phone", "pw")
        gone = watch_disconnect(alice)
        sessions = await admin(server, '{ session { listSessions(domain: "localhost") '
                               '{ user connection ip } countSessions } }')
        assert sessions["session"]["listSessions"] == [
            {"user": "alice@localhost/phone", "connection": "c2s_tls", "ip": "127.0.0.1"}]
        assert sessions["session"]["countSessions"] == 1
        kicked = await admin(server, 'mutation { session { kickUserSession(user: '
                             '"alice@localhost/phone", reason: "bye") { jid message } } }')
        assert kicked["session"]["kickUserSession"]["jid"] == "alice@localhost/phone"
        await asyncio.wait_for(gone, 5)
        await eventually(lambda: _no_sessions(server))


async def _no_sessions(server: Any) -> bool:
    return len(server.sessions) == 0


async def test_dynamic_domain_add_login_disable(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        added = await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                            'hostType: "dynamic") { domain hostType status } } }')
        assert added["domain"]["addDomain"] == {"domain": "dyn.example", "hostType": "dynamic",
                                                "status": "ENABLED"}
        await admin(server, REGISTER, d="dyn.example", u="zoe", p="pw")
        zoe = await connect(server, "zoe@dyn.example/r", "pw")  # no restart
        listed = await admin(server, '{ domain { domainsByHostType(hostType: "dynamic") } }')
        assert listed["domain"]["domainsByHostType"] == ["dyn.example"]
        gone = watch_disconnect(zoe)
        await admin(server, 'mutation { domain { disableDomain(domain: "dyn.example") '
                    '{ status } } }')
        await asyncio.wait_for(gone, 5)
        with pytest.raises((ConnectionError, PermissionError, asyncio.TimeoutError)):
            await connect(server, "zoe@dyn.example/r", "pw", timeout=5)
        await admin(server, 'mutation { domain { enableDomain(domain: "dyn.example") '
                    '{ status } } }')
        zoe = await connect(server, "zoe@dyn.example/r", "pw")
        await disconnect(zoe)
        status, bad = await gql(server, 'mutation { domain { addDomain(domain: "x.example", '
                                'hostType: "nope") { domain } } }')
        assert code_of(bad) == "unknown_host_type" and "unknown host type" in bad["errors"][0][
            "message"]
        # each refusal with its own code (6.4's), the same whichever operation meets it
        for query, code in (
                ('mutation { domain { addDomain(domain: "dyn.example", hostType: "dynamic") '
                 '{ domain } } }', "domain_duplicate"),
                ('mutation { domain { addDomain(domain: "localhost", hostType: "dynamic") '
                 '{ domain } } }', "domain_static"),
                ('mutation { domain { disableDomain(domain: "localhost") { domain } } }',
                 "domain_static"),
                ('mutation { domain { removeDomain(domain: "dyn.example", hostType: '
                 '"localhost") { domain } } }', "wrong_host_type"),
                ('mutation { domain { enableDomain(domain: "none.example") { domain } } }',
                 "domain_not_found"),
                ('mutation { domain { requestRemoveDomain(domain: "none.example", hostType: '
                 '"dynamic") { domain } } }', "domain_not_found"),
                ('{ domain { domainDetails(domain: "none.example") { domain } } }',
                 "domain_not_found")):
            _, bad = await gql(server, query)
            assert code_of(bad) == code, (query, bad)
        await admin(server, 'mutation { domain { removeDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { status } } }')
        assert await server.storage.list_users("dyn.example") == []
        assert not server.is_local_domain("dyn.example")


async def test_refusals(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        # bad credentials
        status, result = await gql(server, "{ checkAuth { authType } }", auth=("admin", "no"))
        assert status == 401 and code_of(result) == "no_permissions"
        status, result = await gql(server, "{ checkAuth { authType } }", auth=None)
        assert status == 401
        # malformed GraphQL, unknown field, GET mutation
        status, result = await gql(server, "{ account { listUsers(domain: ")
        assert status == 400 and code_of(result) == "parsing_error"
        status, result = await gql(server, "{ account { noSuchThing } }")
        assert status == 400 and code_of(result) == "validation_error"
        status, _, body = await http(server, "/api/graphql?query=mutation%7Bserver%7Bstop%7D%7D",
                                     headers=basic(*ADMIN))
        assert status == 405 and not server.stop_requested.is_set()  # type: ignore[union-attr]
        status, _, body = await http(server, "/api/graphql", b"not json",
                                     {"content-type": "application/json", **basic(*ADMIN)})
        assert status == 400 and b"not JSON" in body
        # a domain admin reaches only its own domain
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        await admin(server, 'mutation { domain { setDomainPassword(domain: "dyn.example", '
                    'password: "dpw") } }')
        await admin(server, REGISTER, d="dyn.example", u="yan", p="pw")
        await admin(server, REGISTER, d="localhost", u="local", p="pw")
        dom = ("admin@dyn.example", "dpw")
        status, result = await gql(server, '{ checkAuth { domain authType } account { '
                                   'listUsers(domain: "dyn.example") } }', auth=dom,
                                   path="/api/graphql/domain")
        assert status == 200 and "errors" not in result, result
        assert result["data"] == {"checkAuth": {"domain": "dyn.example",
                                                "authType": "DOMAIN_ADMIN"},
                                  "account": {"listUsers": ["yan@dyn.example"]}}
        for query in ('{ account { listUsers(domain: "localhost") } }',
                      'mutation { account { removeUser(user: "local@localhost") { jid } } }',
                      '{ session { listSessions { user } } }',
                      'mutation { domain { addDomain(domain: "b.example", hostType: "dynamic")'
                      ' { domain } } }',
                      '{ server { status { statusCode } } }'):
            status, result = await gql(server, query, auth=dom, path="/api/graphql/domain")
            assert status == 200 and code_of(result) == "no_permissions", (query, result)
        assert await server.storage.user_exists("localhost", "local")
        status, _ = await gql(server, "{ checkAuth { authType } }",
                              auth=("admin@dyn.example", "wrong"), path="/api/graphql/domain")
        assert status == 401
        status, _ = await gql(server, "{ checkAuth { authType } }",
                              auth=("admin@localhost", "dpw"), path="/api/graphql/domain")
        assert status == 401


async def test_allowed_categories(tmp_path: Path) -> None:
    async with ops_server(tmp_path, allowed='allowed_categories = ["account"]') as server:
        await admin(server, '{ checkAuth { authType } account { countUsers(domain: '
                    '"localhost") } }')
        status, result = await gql(server, "{ server { status { statusCode } } }")
        assert status == 200 and code_of(result) == "category_not_allowed"
        # the operator is told which option decides it
        assert result["errors"][0]["message"] == ("category server is not allowed on this "
                                                  "endpoint (its allowed_categories: account)")


async def test_every_admin_category(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        for user in ("ann", "ben"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        ann = await connect(server, "ann@localhost/a", "pw")
        ann.send_presence()
        # account
        data = await admin(server, '{ account { listUsers(domain: "localhost") '
                           'countUsers(domain: "localhost") '
                           'checkPassword(user: "ann@localhost", password: "pw") { correct } '
                           'checkUser(user: "zed@localhost") { exist } } }')
        assert data["account"] == {"listUsers": ["ann@localhost", "ben@localhost"],
                                   "countUsers": 2, "checkPassword": {"correct": True},
                                   "checkUser": {"exist": False}}
        await admin(server, 'mutation { account { changeUserPassword(user: "ben@localhost", '
                    'newPassword: "new") { message } } }')
        assert await server.auth.check_password(_jid("ben@localhost"), "new")
        # stanza: the connected client receives it
        await admin(server, 'mutation { stanza { sendMessage(from: "ben@localhost", '
                    'to: "ann@localhost/a", body: "from the API") { id } } }')
        assert (await ann.next_message())["body"] == "from the API"
        await admin(server, 'mutation($s: String!) { stanza { sendStanza(stanza: $s) { id } } }',
                    s="<message from='ben@localhost' to='ann@localhost/a' type='chat'>"
                      "<body>raw</body></message>")
        assert (await ann.next_message())["body"] == "raw"
        # session
        data = await admin(server, '{ session { listUserSessions(user: "ann@localhost") '
                           '{ user } countUserResources(user: "ann@localhost") '
                           'getUserResource(user: "ann@localhost", number: 1) } }')
        assert data["session"] == {"listUserSessions": [{"user": "ann@localhost/a"}],
                                   "countUserResources": 1, "getUserResource": "a"}
        await admin(server, 'mutation { session { setPresence(user: "ann@localhost/a", '
                    'type: AVAILABLE, show: AWAY, status: "lunch", priority: 1) { message } } }')

        async def away() -> bool:
            data = await admin(server, '{ session { countUsersWithStatus(status: "away") } }')
            return bool(data["session"]["countUsersWithStatus"] == 1)

        await eventually(away)
        # roster
        await admin(server, 'mutation { roster { addContact(user: "ann@localhost", contact: '
                    '"ben@localhost", name: "Ben", groups: ["work"]) } }')
        data = await admin(server, '{ roster { listContacts(user: "ann@localhost") '
                           '{ jid name groups subscription } } }')
        assert data["roster"]["listContacts"] == [{"jid": "ben@localhost", "name": "Ben",
                                                   "groups": ["work"], "subscription": "none"}]
        await admin(server, 'mutation { roster { deleteContact(user: "ann@localhost", '
                    'contact: "ben@localhost") } }')
        # vcard, private, last
        await admin(server, 'mutation($v: String!) { vcard { setVcard(user: "ann@localhost", '
                    'vcard: $v) } }', v="<vCard xmlns='vcard-temp'><FN>Ann</FN></vCard>")
        data = await admin(server, '{ vcard { getVcard(user: "ann@localhost") } }')
        assert "<FN>Ann</FN>" in data["vcard"]["getVcard"]
        await admin(server, 'mutation($e: String!) { private { setPrivate(user: '
                    '"ann@localhost", elementString: $e) } }',
                    e="<notes xmlns='storage:rosternotes'><note>x</note></notes>")
        data = await admin(server, '{ private { getPrivate(user: "ann@localhost", '
                           'element: "notes", nameSpace: "storage:rosternotes") } }')
        assert "<note>x</note>" in data["private"]["getPrivate"]
        await admin(server, 'mutation { last { setLast(user: "ben@localhost", '
                    'timestamp: 1700000000, status: "gone") { timestamp } } }')
        data = await admin(server, '{ last { getLast(user: "ben@localhost") { status } '
                           'countActiveUsers(domain: "localhost", timestamp: 1600000000) } }')
        assert data["last"] == {"getLast": {"status": "gone"}, "countActiveUsers": 1}
        # offline, token, stat, metric, server
        data = await admin(server, 'mutation { offline { deleteOldMessages(domain: '
                           '"localhost", days: 0) deleteExpiredMessages(domain: "localhost") } }')
        assert data["offline"]["deleteOldMessages"].startswith("Removed")
        # token: mod_fast_auth_token is not enabled here (see test_categories_need_their_module)
        status, result = await gql(server, '{ token { listTokens(user: "ann@localhost") '
                                   '{ userAgentId } } }')
        assert status == 200 and code_of(result) == "module_not_loaded"
        data = await admin(server, '{ stat { globalStats { registeredUsers onlineUsers } '
                           'domainStats(domain: "localhost") { registeredUsers onlineUsers } } }')
        assert data["stat"] == {"globalStats": {"registeredUsers": 2, "onlineUsers": 1},
                                "domainStats": {"registeredUsers": 2, "onlineUsers": 1}}
        data = await admin(server, '{ metric { getMetrics(name: ["sm_session", "count"]) '
                           '{ name value labels { key value } } } }')
        # one series per host type from start-up (6.4): the dynamic one at 0
        assert data["metric"]["getMetrics"] == [
            {"name": ["sm_session", "count"], "value": 0.0,
             "labels": [{"key": "host_type", "value": "dynamic"}]},
            {"name": ["sm_session", "count"], "value": 1.0,
             "labels": [{"key": "host_type", "value": "localhost"}]}]
        data = await admin(server, '{ metric { getMetricsAsDicts(name: ["xmpp_element_in"], '
                           'keys: ["count"]) { labels { value } dict { key value } } } }')
        assert data["metric"]["getMetricsAsDicts"][0]["dict"][0]["key"] == "count"
        data = await admin(server, '{ server { status { statusCode } getLoglevel } }')
        assert data["server"]["status"]["statusCode"] == "RUNNING"
        level = data["server"]["getLoglevel"]
        await admin(server, 'mutation { server { setLoglevel(level: DEBUG) } }')
        data = await admin(server, '{ server { getLoglevel } }')
        assert data["server"]["getLoglevel"] == "DEBUG"
        await admin(server, f'mutation {{ server {{ setLoglevel(level: {level}) }} }}')
        # ban, then remove
        gone = watch_disconnect(ann)
        await admin(server, 'mutation { account { banUser(user: "ann@localhost", '
                    'reason: "spam") { message } } }')
        await asyncio.wait_for(gone, 5)
        assert not await server.auth.check_password(_jid("ann@localhost"), "pw")
        await admin(server, 'mutation { account { removeUser(user: "ann@localhost") '
                    '{ message } } }')
        assert not await server.storage.user_exists("localhost", "ann")


async def test_user_api(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        for user in ("uma", "vic"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        uma = await connect(server, "uma@localhost/u", "pw")
        vic = await connect(server, "vic@localhost/v", "pw")
        me = ("uma@localhost", "pw")
        status, result = await gql(server, '{ checkAuth { username } session { listResources '
                                   'countResources } }', auth=me, path="/api/graphql/user")
        assert status == 200 and result["data"] == {
            "checkAuth": {"username": "uma@localhost"},
            "session": {"listResources": ["u"], "countResources": 1}}
        status, result = await gql(server, 'mutation { stanza { sendMessage(to: '
                                   '"vic@localhost/v", body: "hi from my API") { id } } }',
                                   auth=me, path="/api/graphql/user")
        assert status == 200 and "errors" not in result
        msg = await vic.next_message()
        assert msg["body"] == "hi from my API" and str(msg["from"]) == "uma@localhost"
        status, result = await gql(server, 'mutation { stanza { sendMessage(from: '
                                   '"vic@localhost", to: "uma@localhost", body: "x") { id } } }',
                                   auth=me, path="/api/graphql/user")
        assert code_of(result) == "invalid_sender"
        status, result = await gql(server, '{ session { countResources } }',
                                   auth=("uma@localhost", "bad"), path="/api/graphql/user")
        assert status == 401
        status, result = await gql(server, 'mutation { account { changePassword('
                                   'newPassword: "pw2") } }', auth=me, path="/api/graphql/user")
        assert "errors" not in result
        assert await server.auth.check_password(_jid("uma@localhost"), "pw2")
        await disconnect(uma, vic)


async def test_graphiql_page(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        status, headers, body = await http(server, "/api/graphql",
                                           headers={"accept": "text/html"})
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"GraphiQL" in body and b"/api/graphql" in body
        status, _, _ = await http(server, "/nowhere")
        assert status == 404


def _jid(text: str) -> Any:
    from suricate.jid import JID

    return JID.parse(text)


# Each category whose data a module owns, with an operation that would touch that data.
MODULE_CATEGORIES = {
    "mod_roster": '{ roster { listContacts(user: "ann@localhost") { jid } } }',
    "mod_offline": 'mutation { offline { deleteExpiredMessages(domain: "localhost") } }',
    "mod_vcard": '{ vcard { getVcard(user: "ann@localhost") } }',
    "mod_private": '{ private { getPrivate(user: "ann@localhost", element: "notes", '
                   'nameSpace: "storage:rosternotes") } }',
    "mod_last": '{ last { getLast(user: "ann@localhost") { status } } }',
    "mod_inbox": 'mutation { inbox { flushUserBin(user: "ann@localhost") } }',
    "mod_mam": '{ stanza { getLastMessages(caller: "ann@localhost") { limit } } }',
}


async def test_categories_need_their_module(tmp_path: Path) -> None:
    # Only mod_fast_auth_token (and the mod_sasl2 it needs) among the modules with data: its
    # category works, every other module's category says its module is not loaded (as
    # MongooseIM does), and nothing reads tables that no enabled module owns.
    modules = "[modules.mod_sasl2]\n[modules.mod_fast_auth_token]"
    async with ops_server(tmp_path, modules=modules) as server:
        await admin(server, REGISTER, d="localhost", u="ann", p="pw")
        data = await admin(server, '{ token { listTokens(user: "ann@localhost") '
                           '{ userAgentId } } }')
        assert data["token"]["listTokens"] == []
        data = await admin(server, 'mutation { token { revokeToken(user: "ann@localhost") } }')
        assert data["token"]["revokeToken"].startswith("Revoked")
        for module, query in MODULE_CATEGORIES.items():
            status, result = await gql(server, query)
            assert status == 200 and code_of(result) == "module_not_loaded", (module, result)
            assert result["errors"][0]["message"] == f"{module} is not enabled"


async def test_domain_removal_erases_archive_and_inbox_in_batches(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """delete_domain_limit (mod_mam, mod_inbox): rows written by real clients' chat go with
    the domain, in transactions of 2 rows; the domain is gone afterwards."""
    from suricate.modules.mod_inbox.store import Filters
    from tests.e2e.harness import MODULES_TOML

    modules = MODULES_TOML + """
[modules.mod_mam]
async_writer.flush_interval = 100
delete_domain_limit = 2
[modules.mod_mam.pm]
[modules.mod_inbox]
delete_domain_limit = 2
"""
    async with ops_server(tmp_path, modules=modules) as server:
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        for user in ("zoe", "yan"):
            await admin(server, REGISTER, d="dyn.example", u=user, p="pw")
        zoe = await connect(server, "zoe@dyn.example/r", "pw")
        yan = await connect(server, "yan@dyn.example/r", "pw")
        yan.send_presence()
        await yan.next_presence()  # its own, broadcast back (RFC 6121 §4.2.2): yan is online
        for i in range(5):
            zoe.send_message(mto="yan@dyn.example", mbody=f"m{i}", mtype="chat")
        for _ in range(5):
            await yan.next_message()
        mam, inbox = server.module_stores["mod_mam"], server.module_stores["mod_inbox"]
        await eventually(lambda: mam.bounds("dyn.example", "yan"))  # type: ignore[attr-defined]
        await eventually(lambda: _inbox_count(inbox, "yan", Filters()))
        await disconnect(zoe, yan)
        with caplog.at_level(logging.INFO, logger="suricate.server"):
            await admin(server, 'mutation { domain { removeDomain(domain: "dyn.example", '
                        'hostType: "dynamic") { status } } }')
        # Erased by the batches, before the domain's own transaction: 5 rows in each of the
        # two archives, one inbox entry each.
        erased = {r.getMessage() for r in caplog.records if "domain_rows_erased" in r.getMessage()}
        assert erased == {"domain_rows_erased domain=dyn.example store=mod_mam rows=10",
                          "domain_rows_erased domain=dyn.example store=mod_inbox rows=2"}
        for user in ("zoe", "yan"):
            assert await mam.bounds("dyn.example", user) is None  # type: ignore[attr-defined]
            assert await _inbox_count(inbox, user, Filters()) == 0
        assert not server.is_local_domain("dyn.example")


async def _inbox_count(store: Any, user: str, filters: Any) -> int:
    return int((await store.totals("dyn.example", user, filters)).count)


async def test_vcard_set_through_the_api_updates_the_avatar_hash(tmp_path: Path) -> None:
    """XEP-0153 §4.1/§4.3: the hash in vcard-temp:x:update is the SHA-1 of the current vCard
    PHOTO, and a new avatar is announced by presence. A vCard stored through GraphQL
    (setVcard) changes the avatar as much as one set over XMPP: the account's contacts see
    the new hash at once, and the empty <photo/> (no avatar) once PHOTO is gone."""
    import base64
    import hashlib
    import re
    import time

    from suricate.modules.mod_roster.store import RosterItem
    from tests.e2e.tls_client import TestClient, logged_in

    image = b"\x89PNG not really"
    digest = hashlib.sha1(image).hexdigest()
    with_photo = ("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>"
                  f"{base64.b64encode(image).decode()}</BINVAL></PHOTO></vCard>")
    without_photo = "<vCard xmlns='vcard-temp'><FN>Ann</FN></vCard>"
    set_vcard = 'mutation($v: String!) { vcard { setVcard(user: "ann@localhost", vcard: $v) } }'

    def next_presence(client: TestClient) -> str:
        found = client.expect(r"<presence[^>]*from=\"ann@localhost/a\".*?</presence>")
        return found.group(0)

    def quiet(client: TestClient) -> str:
        time.sleep(0.3)
        data = client._recv(0.05)  # noqa: SLF001 - whatever arrived so far
        return (client.buffer + (data or b"")).decode()

    async with ops_server(tmp_path) as server:
        for user in ("ann", "ben"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        store = server.modules["mod_roster"].store
        await store.put_roster_item("localhost", "ann", RosterItem("ben@localhost",
                                                                   subscription="both"))
        await store.put_roster_item("localhost", "ben", RosterItem("ann@localhost",
                                                                   subscription="both"))
        port = server.c2s_port  # type: ignore[attr-defined]
        ben = await asyncio.to_thread(logged_in, port, "ben", "pw", "b")
        ann = await asyncio.to_thread(logged_in, port, "ann", "pw", "a")
        try:
            ben.send("<presence/>")
            ann.send("<presence/>")
            assert "<photo/>" in await asyncio.to_thread(next_presence, ben)
            await asyncio.to_thread(quiet, ben)  # a probe's answer may come twice
            ben.buffer = b""
            await admin(server, set_vcard, v=with_photo)
            assert f"<photo>{digest}</photo>" in await asyncio.to_thread(next_presence, ben)
            await admin(server, set_vcard, v=without_photo)
            assert "<photo/>" in await asyncio.to_thread(next_presence, ben)
            # and the next presence of the client carries what is current, not what it says
            ann.send(f"<presence><show>away</show><x xmlns='vcard-temp:x:update'>"
                     f"<photo>{digest}</photo></x></presence>")
            away = await asyncio.to_thread(next_presence, ben)
            assert "<show>away</show>" in away and "<photo/>" in away, away
            assert not re.search(r"<photo>\w", await asyncio.to_thread(quiet, ben))
        finally:
            ann.close()
            ben.close()


async def test_user_reads_last_activity_only_where_xmpp_would_tell(tmp_path: Path) -> None:
    """XEP-0012 §3, §8: an account's last activity goes to those who may see its presence;
    the user endpoint's getLast follows the rule an iq:last over XMPP follows."""
    async with ops_server(tmp_path) as server:
        for user in ("ann", "ben"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        await admin(server, 'mutation { last { setLast(user: "ben@localhost", '
                    'status: "on holiday") { status } } }')
        ask = '{ last { getLast(user: "ben@localhost") { status } } }'
        ann = ("ann@localhost", "pw")
        _, result = await gql(server, ask, auth=ann, path="/api/graphql/user")
        assert code_of(result) == "no_permissions", result
        assert "on holiday" not in str(result)
        await admin(server, 'mutation { roster { setMutualSubscription(userA: "ann@localhost", '
                    'userB: "ben@localhost", action: CONNECT) } }')
        _, result = await gql(server, ask, auth=ann, path="/api/graphql/user")
        assert result["data"] == {"last": {"getLast": {"status": "on holiday"}}}, result
        _, result = await gql(server, '{ last { getLast { status } } }',
                              auth=("ben@localhost", "pw"), path="/api/graphql/user")
        assert result["data"] == {"last": {"getLast": {"status": "on holiday"}}}, result


async def test_sessions_of_an_account_with_several_resources(tmp_path: Path) -> None:
    """6.4's session category (graphql_session_SUITE): an account's resources listed and
    counted; a kick ends the real client's stream (policy-violation, the reason as its text);
    an account that does not exist is told apart from one that is offline."""
    from tests.e2e.test_register import stream_error_of

    async with ops_server(tmp_path) as server:
        for user in ("amy", "ida"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        phone = await connect(server, "amy@localhost/phone", "pw")
        laptop = await connect(server, "amy@localhost/laptop", "pw", direct_tls=True)
        data = await admin(server, '{ session { listUserSessions(user: "amy@localhost") '
                           '{ user connection } countUserResources(user: "amy@localhost") '
                           'getUserResource(user: "amy@localhost", number: 2) '
                           'countSessions(domain: "localhost") } }')
        assert data["session"] == {
            "listUserSessions": [{"user": "amy@localhost/laptop", "connection": "c2s_tls"},
                                 {"user": "amy@localhost/phone", "connection": "c2s_tls"}],
            "countUserResources": 2, "getUserResource": "phone", "countSessions": 2}
        for number in (0, -1, 3):  # resources are numbered from 1
            _, result = await gql(server, '{ session { getUserResource(user: "amy@localhost", '
                                  f'number: {number}) }} }}')
            assert code_of(result) == "wrong_resource_number", (number, result)
        error = stream_error_of(phone)
        text: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        phone.add_event_handler("stream_error", lambda e: text.done() or text.set_result(
            e["text"]))
        kicked = await admin(server, 'mutation { session { kickUserSession(user: '
                             '"amy@localhost/phone", reason: "maintenance") { jid kicked } } }')
        assert kicked["session"]["kickUserSession"] == {"jid": "amy@localhost/phone",
                                                        "kicked": True}
        assert await asyncio.wait_for(error, 5) == "policy-violation"
        assert text.result() == "maintenance"
        await eventually(lambda: _count(server, 1))
        data = await admin(server, '{ session { countUserResources(user: "amy@localhost") } }')
        assert data["session"]["countUserResources"] == 1
        for query in ('{ session { listUserSessions(user: "alien@localhost") { user } } }',
                      '{ session { countUserResources(user: "alien@localhost") } }',
                      '{ session { getUserResource(user: "alien@localhost", number: 1) } }',
                      'mutation { session { kickUser(user: "alien@localhost") { jid } } }',
                      'mutation { session { kickUserSession(user: "alien@localhost/r") '
                      '{ jid } } }',
                      'mutation { session { setPresence(user: "alien@localhost/r", '
                      'type: AVAILABLE) { message } } }'):
            _, result = await gql(server, query)
            assert code_of(result) == "no_user", (query, result)
            assert result["errors"][0]["message"] == "Given user does not exist"
        # ida exists and is offline: no session to kick, none listed
        _, result = await gql(server, 'mutation { session { kickUserSession(user: '
                              '"ida@localhost/r") { jid } } }')
        assert code_of(result) == "no_session" and "No active session" in str(result)
        data = await admin(server, '{ session { listUserSessions(user: "ida@localhost") '
                           '{ user } } }')
        assert data["session"]["listUserSessions"] == []
        await disconnect(laptop)


async def _count(server: Any, n: int) -> bool:
    return len(server.sessions) == n


async def test_jid_and_domain_arguments_must_be_strings(tmp_path: Path) -> None:
    """GraphQL §3.5 (input coercion of a custom scalar): a JID or DomainName given as a number,
    a boolean or a list is refused before anything runs, with 6.4's input_coercion code for a
    variable (400), as a literal of the wrong type is refused by validation."""
    async with ops_server(tmp_path) as server:
        status, result = await gql(server, '{ account { checkUser(user: 5) { exist } } }')
        assert status == 400 and code_of(result) == "validation_error", result
        for query, variables in (
                ('query($u: JID!) { account { checkUser(user: $u) { exist } } }', {"u": 5}),
                ('query($u: JID!) { account { checkUser(user: $u) { exist } } }',
                 {"u": ["alice@localhost"]}),
                ('query($d: DomainName!) { account { countUsers(domain: $d) } }', {"d": True})):
            status, result = await gql(server, query, variables)
            assert status == 400 and code_of(result) == "input_coercion", result
            assert "must be a string" in result["errors"][0]["message"]
        status, result = await gql(server, 'query($d: DomainName!) { account { countUsers('
                                   'domain: $d) } }', {"d": "localhost"})
        assert status == 200 and result == {"data": {"account": {"countUsers": 0}}}
