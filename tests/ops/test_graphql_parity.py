"""MongooseIM 6.4 GraphQL operations added for parity (tools/gql_parity.py lists what 6.4 has
and Suricate has not), over real HTTP, each checked by what a client or the database shows."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually
from tests.ops.harness import admin, gql, ops_server

REGISTER = ('mutation($d: DomainName!, $u: String, $p: String!) { account { '
            'registerUser(domain: $d, username: $u, password: $p) { jid } } }')
PLAIN = 'methods = ["rdbms"]\npassword.format = "plain"'


def code_of(result: dict[str, Any]) -> str:
    return str(result["errors"][0]["extensions"]["code"])


async def register(server: Any, *users: str, domain: str = "localhost") -> None:
    for user in users:
        await admin(server, REGISTER, d=domain, u=user, p="pw")


async def test_check_password_hash_and_import_users(tmp_path: Path) -> None:
    async with ops_server(tmp_path, auth_extra=PLAIN) as server:
        await register(server, "ann")
        query = ('query($h: String!, $m: String!) { account { checkPasswordHash('
                 'user: "ann@localhost", passwordHash: $h, hashMethod: $m) { correct } } }')
        for method, fn in (("md5", hashlib.md5), ("sha", hashlib.sha1)):
            data = await admin(server, query, h=fn(b"pw").hexdigest(), m=method)
            assert data["account"]["checkPasswordHash"] == {"correct": True}
        data = await admin(server, query, h=hashlib.md5(b"no").hexdigest(), m="md5")
        assert data["account"]["checkPasswordHash"] == {"correct": False}
        _, bad = await gql(server, query, {"h": "x", "m": "sha256"})
        assert code_of(bad) == "not_allowed"

        csv = tmp_path / "users.csv"
        csv.write_text("bob,localhost,secret\nann,localhost,other\ncid,elsewhere.example,pw\n"
                       "dan,localhost,\nnot a record\n", encoding="utf-8")
        data = await admin(server, 'mutation($f: String!) { account { importUsers(filename: $f)'
                           ' { status created existing notAllowed emptyPassword invalidRecord'
                           ' invalidJID } } }', f=str(csv))
        assert data["account"]["importUsers"] == {
            "status": "Completed", "created": ["bob@localhost"], "existing": ["ann@localhost"],
            "notAllowed": ["cid@elsewhere.example"], "emptyPassword": ["dan@localhost"],
            "invalidRecord": ["not a record"], "invalidJID": []}
        bob = await connect(server, "bob@localhost/r", "secret")  # the imported account logs in
        await disconnect(bob)
        assert await server.auth.check_password(JID.parse("ann@localhost"), "pw")  # untouched
        _, missing = await gql(server, 'mutation { account { importUsers(filename: '
                               '"/nonexistent.csv") { status } } }')
        assert code_of(missing) == "file_not_found"


async def test_check_password_hash_needs_plain_passwords(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:  # SCRAM records: nothing to hash
        await register(server, "ann")
        _, result = await gql(server, '{ account { checkPasswordHash(user: "ann@localhost", '
                              f'passwordHash: "{hashlib.md5(b"pw").hexdigest()}", '
                              'hashMethod: "md5") { correct } } }')
        assert code_of(result) == "not_allowed"


async def _item(server: Any, user: str, contact: str) -> tuple[str, str, str | None] | None:
    item = await server.modules["mod_roster"].store.get_roster_item("localhost", user,
                                                                    f"{contact}@localhost")
    return None if item is None else (item.subscription, item.ask, item.name)


async def test_roster_batch_operations(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await register(server, "ann", "ben", "cid", "dan")
        data = await admin(server, 'mutation { roster { addContacts(user: "ann@localhost", '
                           'contacts: [{jid: "ben@localhost", name: "Ben", groups: ["g"]}, '
                           '{jid: "cid@localhost", name: "Cid"}, {jid: "not a jid@@", '
                           'name: "x"}]) } }')
        answers = data["roster"]["addContacts"]
        assert answers[:2] == ["Contact ben@localhost added successfully",
                               "Contact cid@localhost added successfully"]
        assert "invalid JID" in answers[2]
        assert await _item(server, "ann", "ben") == ("none", "none", "Ben")
        data = await admin(server, 'mutation { roster { deleteContacts(user: "ann@localhost", '
                           'contacts: ["ben@localhost", "dan@localhost"]) } }')
        assert data["roster"]["deleteContacts"][0] == "Contact ben@localhost deleted successfully"
        assert "not in the roster" in data["roster"]["deleteContacts"][1]
        assert await _item(server, "ann", "ben") is None
        assert await _item(server, "ann", "cid") is not None

        # subscribeToAll: the user and each contact, both ways, named as the inputs say
        await admin(server, 'mutation { roster { subscribeToAll(user: {jid: "dan@localhost", '
                    'name: "Dan"}, contacts: [{jid: "ben@localhost", name: "Ben"}]) } }')
        assert await _item(server, "dan", "ben") == ("both", "none", "Ben")
        assert await _item(server, "ben", "dan") == ("both", "none", "Dan")
        # subscribeAllToAll: every pair
        data = await admin(server, 'mutation { roster { subscribeAllToAll(contacts: ['
                           '{jid: "ann@localhost", name: "A"}, {jid: "ben@localhost", '
                           'name: "B"}, {jid: "cid@localhost", name: "C"}]) } }')
        assert len(data["roster"]["subscribeAllToAll"]) == 3
        for user, contact in (("ann", "ben"), ("ann", "cid"), ("ben", "cid")):
            assert (await _item(server, user, contact))[0] == "both"  # type: ignore[index]
            assert (await _item(server, contact, user))[0] == "both"  # type: ignore[index]

        # a domain admin names users of its domain only, in input objects too
        await admin(server, 'mutation { domain { setDomainPassword(domain: "localhost", '
                    'password: "dpw") } }')
        _, refused = await gql(server, 'mutation { roster { subscribeAllToAll(contacts: ['
                               '{jid: "ann@localhost", name: "A"}, {jid: "x@other.example", '
                               'name: "X"}]) } }', auth=("admin@localhost", "dpw"),
                               path="/api/graphql/domain")
        assert code_of(refused) == "no_permissions"

        # the user API: its own roster
        _, result = await gql(server, 'mutation { roster { addContacts(contacts: [{jid: '
                              '"ben@localhost", name: "Benny"}]) deleteContacts(contacts: '
                              '["cid@localhost"]) } }', auth=("dan@localhost", "pw"),
                              path="/api/graphql/user")
        assert "errors" not in result, result
        assert await _item(server, "dan", "ben") == ("both", "none", "Benny")


async def test_subscription_decline_and_cancel(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await register(server, "ann", "ben")
        sub = ('mutation($u: JID!, $c: JID!, $a: SubAction!) { roster { subscription('
               'user: $u, contact: $c, action: $a) } }')
        await admin(server, sub, u="ann@localhost", c="ben@localhost", a="INVITE")

        async def asked() -> bool:
            return await _item(server, "ann", "ben") == ("none", "out", None)
        await eventually(asked)
        await admin(server, sub, u="ben@localhost", c="ann@localhost", a="DECLINE")

        async def declined() -> bool:
            return await _item(server, "ann", "ben") == ("none", "none", None)
        await eventually(declined)
        await admin(server, 'mutation { roster { setMutualSubscription(userA: "ann@localhost", '
                    'userB: "ben@localhost", action: CONNECT) } }')
        await admin(server, sub, u="ann@localhost", c="ben@localhost", a="CANCEL")

        async def cancelled() -> bool:
            return ((await _item(server, "ann", "ben")) or ("",))[0] == "from" and \
                ((await _item(server, "ben", "ann")) or ("",))[0] == "to"
        await eventually(cancelled)


async def test_list_and_remove_old_users(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await register(server, "fresh", "stale", "never", "online")
        store = server.modules["mod_last"].store
        now = int(time.time())
        await store.set_last("localhost", "fresh", now, "")
        await store.set_last("localhost", "stale", now - 90 * 86400, "gone")
        await store.set_last("localhost", "online", now - 90 * 86400, "")
        online = await connect(server, "online@localhost/r", "pw")
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30 * 86400))
        query = ('query($t: String!) { last { listOldUsers(domain: "localhost", timestamp: $t) '
                 '{ jid timestamp } } }')
        data = await admin(server, query, t=cutoff)
        old = {u["jid"]: u["timestamp"] for u in data["last"]["listOldUsers"]}
        assert old == {"stale@localhost": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime(now - 90 * 86400)),
                       "never@localhost": None}
        data = await admin(server, 'mutation($t: String!) { last { removeOldUsers(timestamp: $t)'
                           ' { jid } } }', t=cutoff)  # every domain
        assert sorted(u["jid"] for u in data["last"]["removeOldUsers"]) == [
            "never@localhost", "stale@localhost"]
        assert sorted(await server.storage.list_users("localhost")) == ["fresh", "online"]
        assert await store.get_last("localhost", "stale") is None  # its data went with it
        _, bad = await gql(server, query, {"t": "yesterday"})
        assert code_of(bad) == "bad_timestamp"
        await disconnect(online)


async def test_request_remove_domain(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        await register(server, "zoe", domain="dyn.example")
        zoe = await connect(server, "zoe@dyn.example/r", "pw")
        data = await admin(server, 'mutation { domain { requestRemoveDomain(domain: '
                           '"dyn.example", hostType: "dynamic") { domain status } } }')
        assert data["domain"]["requestRemoveDomain"] == {"domain": "dyn.example",
                                                         "status": "DELETING"}

        async def gone() -> bool:
            return not server.is_local_domain("dyn.example") and \
                await server.storage.list_users("dyn.example") == []
        await eventually(gone)
        await asyncio.sleep(0)
        await disconnect(zoe)
        _, refused = await gql(server, 'mutation { domain { requestRemoveDomain(domain: '
                               '"localhost", hostType: "localhost") { status } } }')
        assert code_of(refused) == "domain_static"


async def test_user_sends_headlines_and_stanzas(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await register(server, "ann", "ben")
        ann = await connect(server, "ann@localhost/a", "pw")
        ben = ("ben@localhost", "pw")
        _, result = await gql(server, 'mutation { stanza { sendMessageHeadLine(to: '
                              '"ann@localhost/a", subject: "News", body: "Read this") { id } } }',
                              auth=ben, path="/api/graphql/user")
        assert "errors" not in result, result
        got = await ann.next_message()
        assert (got["type"], got["subject"], got["body"], got["from"].bare) == (
            "headline", "News", "Read this", "ben@localhost")
        _, result = await gql(server, 'mutation($s: String!) { stanza { sendStanza(stanza: $s) '
                              '{ id } } }', {"s": "<message to='ann@localhost/a' type='chat'>"
                                                  "<body>raw</body></message>"},
                              auth=ben, path="/api/graphql/user")
        assert "errors" not in result, result
        got = await ann.next_message()
        assert (got["body"], got["from"].bare) == ("raw", "ben@localhost")
        # not as somebody else
        _, result = await gql(server, 'mutation($s: String!) { stanza { sendStanza(stanza: $s) '
                              '{ id } } }', {"s": "<message from='ann@localhost' "
                                                  "to='ann@localhost/a'><body>x</body></message>"},
                              auth=ben, path="/api/graphql/user")
        assert code_of(result) == "invalid_sender"  # 6.4's code and message
        assert result["errors"][0]["message"] == "Sender's JID is different from the user's JID"
        await disconnect(ann)


UPLOAD = """
[modules.mod_http_upload]
backend = "disk"
max_file_size = 1000
disk.directory = "files"
disk.base_url = "http://127.0.0.1:{port}/upload"

[[listen.http]]
port = {port}
ip_address = "127.0.0.1"

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"
"""


async def test_http_upload_get_url(tmp_path: Path) -> None:
    from tests.e2e.harness import MODULES_TOML, free_port
    from tests.ops.harness import _request

    port = free_port()
    async with ops_server(tmp_path, modules=MODULES_TOML + UPLOAD.format(port=port)) as server:
        await register(server, "ann")
        data = await admin(server, 'mutation { httpUpload { getUrl(domain: "localhost", '
                           'filename: "notes.txt", size: 5, contentType: "text/plain", '
                           'timeout: 60) { putUrl getUrl headers { name value } } } }')
        urls = data["httpUpload"]["getUrl"]
        status, _, _ = await asyncio.to_thread(_request, urls["putUrl"], b"hello",
                                               {"content-type": "text/plain"}, "PUT")
        assert status in (200, 201)
        status, _, body = await asyncio.to_thread(_request, urls["getUrl"], None, {}, "GET")
        assert (status, body) == (200, b"hello")
        assert any(p.read_bytes() == b"hello" for p in (tmp_path / "files").rglob("*")
                   if p.is_file())
        # the user API, and what a client's request would be refused for
        _, result = await gql(server, 'mutation { httpUpload { getUrl(filename: "a.bin", '
                              'size: 10, timeout: 30) { putUrl } } }', auth=("ann@localhost", "pw"),
                              path="/api/graphql/user")
        assert "errors" not in result and "/upload/" in result["data"]["httpUpload"]["getUrl"][
            "putUrl"]
        # the user's own slot: the file goes with the account (docs/upload.md)
        assert result["data"]["httpUpload"]["getUrl"]["putUrl"].endswith("&o=ann@localhost")
        _, big = await gql(server, 'mutation { httpUpload { getUrl(domain: "localhost", '
                           'filename: "big", size: 5000, timeout: 60) { putUrl } } }')
        assert code_of(big) == "bad_request" and "1000" in big["errors"][0]["message"]
    async with ops_server(tmp_path / "none") as server:  # no mod_http_upload
        _, result = await gql(server, 'mutation { httpUpload { getUrl(domain: "localhost", '
                              'filename: "f", size: 1, timeout: 1) { putUrl } } }')
        assert code_of(result) == "module_not_loaded"


async def test_request_and_revoke_auth_tokens(tmp_path: Path) -> None:
    import base64

    from tests.e2e.test_auth_token import modules, x_oauth

    async with ops_server(tmp_path, modules=modules()) as server:
        await register(server, "alice")
        data = await admin(server, 'mutation { token { requestToken(user: "alice@localhost") '
                           '{ access refresh } } }')
        access, refresh = (data["token"]["requestToken"][k] for k in ("access", "refresh"))
        assert base64.b64decode(refresh).startswith(b"refresh\0alice@localhost\0")
        answer, raw = await x_oauth(server, access)  # a client logs in with it
        assert answer.startswith("<success"), answer
        await raw.close()
        await admin(server, 'mutation { token { revokeToken(user: "alice@localhost") } }')
        answer, raw = await x_oauth(server, refresh)
        assert "<not-authorized/>" in answer, answer
        await raw.close()
        _, result = await gql(server, 'mutation { token { requestToken { refresh } } }',
                              auth=("alice@localhost", "pw"), path="/api/graphql/user")
        assert "errors" not in result, result
        answer, raw = await x_oauth(server, result["data"]["token"]["requestToken"]["refresh"])
        assert answer.startswith("<success"), answer
        await raw.close()


async def test_gdpr_takes_the_domain_apart(tmp_path: Path) -> None:
    import zipfile

    async with ops_server(tmp_path) as server:
        await register(server, "ann")
        out = tmp_path / "ann.zip"
        await admin(server, 'query($f: String!) { gdpr { retrievePersonalData(username: "ann", '
                    'domain: "localhost", resultFilepath: $f) } }', f=str(out))
        with zipfile.ZipFile(out) as archive:
            assert "ann@localhost" in archive.read("account.csv").decode()


async def test_what_suricate_cannot_do_answers_with_a_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.ops.harness import ops_toml

    async with ops_server(tmp_path) as server:
        for query, code in (
                ('{ mnesia { systemInfo { key result } } }', "deps_not_loaded"),
                ('mutation { mnesia { backup(path: "/tmp/x") } }', "deps_not_loaded"),
                ('{ cets { systemInfo { joinedNodes } tableInfo { tableName } } }',
                 "deps_not_loaded"),
                ('{ server { getCookie } }', "not_supported"),
                ('mutation { server { joinCluster(node: "mongooseim@other") } }',
                 "not_supported"),
                ('mutation { server { restart } }', "not_supported")):
            status, result = await gql(server, query)
            assert status == 200 and code_of(result) == code, (query, result)
            assert result["errors"][0]["message"].startswith("Suricate"), result
        assert not server.stop_requested.is_set()  # type: ignore[union-attr]
        config = tmp_path / "cli.toml"
        config.write_text(ops_toml(tmp_path, server.c2s_port, server.tls_port,  # type: ignore[attr-defined]
                                   server.http_port))  # type: ignore[attr-defined]
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "suricate", "mnesia", "backup", "--path",
                             "/tmp/x", "--config", str(config)],
            capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and "deps_not_loaded" in res.stderr, res


async def test_user_muc_category_acts_with_the_callers_rights(tmp_path: Path) -> None:
    from slixmpp import JID as SJID

    from tests.muc.conftest import SERVICE, drain, muc_toml, next_groupchat, presence_from, user

    room = f"mine@{SERVICE}"

    async def as_user(name: str, query: str, **variables: Any) -> dict[str, Any]:
        _, result = await gql(server, query, variables, auth=(f"{name}@localhost", f"{name}-pw"),
                              path="/api/graphql/user")
        return result

    async with ops_server(tmp_path, modules=muc_toml()) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        made = await as_user("alice", 'mutation { muc { createInstantRoom(mucDomain: '
                             f'"{SERVICE}", name: "mine", nick: "Al") {{ jid }} }} }}')
        assert made == {"data": {"muc": {"createInstantRoom": {"jid": room}}}}, made
        entered = await as_user("alice", f'mutation {{ muc {{ enterRoom(room: "{room}", '
                                'nick: "Al", resource: "r") } }')
        assert "errors" not in entered, entered
        assert (await presence_from(alice, f"{room}/Al"))["muc"]["affiliation"] == "owner"
        await bob.plugin["xep_0045"].join_muc_wait(SJID(room), "Bob", timeout=5)
        drain(alice, bob)
        # alice speaks from her session in the room, without naming it
        sent = await as_user("alice", f'mutation {{ muc {{ sendMessageToRoom(room: "{room}", '
                             'body: "hi all") } }')
        assert "errors" not in sent, sent
        assert (await next_groupchat(bob))["body"] == "hi all"
        # bob is no owner, no moderator
        for query in (f'{{ muc {{ getRoomConfig(room: "{room}") {{ title }} }} }}',
                      f'{{ muc {{ listRoomAffiliations(room: "{room}") {{ jid }} }} }}',
                      f'mutation {{ muc {{ kickUser(room: "{room}", nick: "Al") }} }}',
                      f'mutation {{ muc {{ deleteRoom(room: "{room}") }} }}',
                      f'mutation {{ muc {{ setUserAffiliation(room: "{room}", '
                      'user: "bob@localhost", affiliation: OWNER) } }'):
            refused = await as_user("bob", query)
            assert code_of(refused) == "not_allowed", (query, refused)
        seen = await as_user("bob", f'{{ muc {{ listRoomUsers(room: "{room}") {{ nick }} }} }}')
        assert seen["data"]["muc"]["listRoomUsers"] == [{"nick": "Al"}, {"nick": "Bob"}]
        # alice may
        conf = await as_user("alice", 'mutation($c: MUCRoomConfigInput!) { muc { '
                             f'changeRoomConfiguration(room: "{room}", config: $c) '
                             '{ title } } }', c={"title": "Alice's"})
        assert conf["data"]["muc"]["changeRoomConfiguration"] == {"title": "Alice's"}, conf
        await as_user("alice", f'mutation {{ muc {{ setUserAffiliation(room: "{room}", '
                      'user: "bob@localhost", affiliation: ADMIN) } }')
        affs = await as_user("bob", f'{{ muc {{ listRoomAffiliations(room: "{room}", '
                             'affiliation: ADMIN) { jid } } }')  # an admin now
        assert affs["data"]["muc"]["listRoomAffiliations"] == [{"jid": "bob@localhost"}], affs
        drain(bob)
        # an admin may not kick the owner
        refused = await as_user("bob", f'mutation {{ muc {{ kickUser(room: "{room}", '
                                'nick: "Al") } }')
        assert code_of(refused) == "not_allowed", refused
        kicked = await as_user("alice", f'mutation {{ muc {{ kickUser(room: "{room}", '
                               'nick: "Bob", reason: "out") } }')
        assert "errors" not in kicked, kicked  # an owner may kick an admin
        out = await presence_from(bob, f"{room}/Bob", "unavailable")
        assert "307" in {str(c) for c in out["muc"]["status_codes"]}
        listed = await as_user("bob", f'{{ muc {{ listRooms(mucDomain: "{SERVICE}") '
                               '{ rooms { jid } count } } }')
        assert listed["data"]["muc"]["listRooms"]["count"] == 1
        gone = await as_user("alice", f'mutation {{ muc {{ deleteRoom(room: "{room}", '
                             'reason: "done") } }')
        assert "errors" not in gone, gone
        await presence_from(alice, f"{room}/Al", "unavailable")
        assert await server.modules["mod_muc"].get_room(JID.parse(room)) is None
        await disconnect(alice, bob)


async def test_kick_results_and_cluster_metrics_on_one_node(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server:
        await register(server, "ann")
        ann = await connect(server, "ann@localhost/a", "pw")
        data = await admin(server, 'mutation { session { kickUser(user: "ann@localhost") '
                           '{ jid kicked code message } } }')
        assert data["session"]["kickUser"] == [{"jid": "ann@localhost/a", "kicked": True,
                                                "code": None, "message": "Session kicked"}]
        await eventually(lambda: _no_sessions(server))
        data = await admin(server, '{ metric { getClusterMetricsAsDicts(name: ["sm_session"], '
                           'keys: ["logins"]) { node result { name labels { value } '
                           'dict { key value } } } } }')
        (only,) = data["metric"]["getClusterMetricsAsDicts"]
        assert only["node"] == "local"
        # a series per host type from start-up (6.4): "dynamic" at 0, then "localhost"
        assert [(r["labels"][0]["value"], r["dict"]) for r in only["result"]] == [
            ("dynamic", [{"key": "logins", "value": 0.0}]),
            ("localhost", [{"key": "logins", "value": 1.0}])]
        _, bad = await gql(server, '{ metric { getClusterMetricsAsDicts(nodes: ["other"]) '
                           '{ node } } }')
        assert code_of(bad) == "node_not_found"
        await disconnect(ann)


async def _no_sessions(server: Any) -> bool:
    return len(server.sessions) == 0


async def test_admin_speaks_and_reads_only_for_existing_accounts(tmp_path: Path) -> None:
    """6.4 (graphql_stanza_SUITE): an admin's sender, and the owner of the archive read, must
    be an account of a served domain; else unknown_user, and nothing is sent or archived. A
    forged sender of a foreign domain would otherwise leave over s2s in this server's name."""
    async with ops_server(tmp_path, modules=MODULES_TOML + "\n[modules.mod_mam.pm]") as server:
        await register(server, "bob")
        bob = await connect(server, "bob@localhost/b", "pw")
        send = 'mutation($s: String!) { stanza { sendStanza(stanza: $s) { id } } }'
        for sender, message in (("ghost@localhost", "User does not exist"),
                                ("ghost@oopsie.example", "User's domain does not exist")):
            stanza = f"<message from='{sender}' to='bob@localhost'><body>boo</body></message>"
            _, result = await gql(server, send, {"s": stanza})
            assert code_of(result) == "unknown_user", result
            assert result["errors"][0]["message"] == message
            _, result = await gql(server, 'mutation($f: JID!) { stanza { sendMessage(from: $f, '
                                  'to: "bob@localhost", body: "boo") { id } } }', {"f": sender})
            assert code_of(result) == "unknown_user", result
            _, result = await gql(server, 'mutation($f: JID!) { stanza { sendMessageHeadLine('
                                  'from: $f, to: "bob@localhost", body: "boo") { id } } }',
                                  {"f": sender})
            assert code_of(result) == "unknown_user", result
            _, result = await gql(server, 'query($c: JID!) { stanza { getLastMessages('
                                  'caller: $c) { limit } } }', {"c": sender})
            assert code_of(result) == "unknown_user", result
        await admin(server, 'mutation { stanza { sendMessage(from: "bob@localhost", '
                    'to: "bob@localhost/b", body: "real") { id } } }')
        got = await bob.next_message()
        assert (got["body"], got["from"].bare) == ("real", "bob@localhost")  # nothing before
        # XEP-0082 DateTimes far out (year 9999, year 1) bound the archive's ids, not overflow
        last = ('query($b: String) { stanza { getLastMessages(caller: "bob@localhost", '
                'before: $b) { stanzas { stanza } } } }')
        _, result = await gql(server, last, {"b": "9999-12-31T23:59:59Z"})
        assert "real" in str(result["data"]["stanza"]["getLastMessages"]), result
        _, result = await gql(server, last, {"b": "0001-01-01T00:00:00Z"})
        assert result["data"]["stanza"]["getLastMessages"]["stanzas"] == [], result
        await disconnect(bob)


async def test_domain_admin_runs_the_rooms_of_its_domain(tmp_path: Path) -> None:
    """6.4 (graphql_muc_SUITE, domain_admin_muc): a domain admin lists, reads and removes the
    rooms of its domain's MUC service (conference.DOMAIN), and no other domain's."""
    from tests.muc.conftest import muc_toml

    async with ops_server(tmp_path, modules=muc_toml()) as server:
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        await admin(server, 'mutation { domain { setDomainPassword(domain: "dyn.example", '
                    'password: "dpw") } }')
        await register(server, "dan", domain="dyn.example")
        await register(server, "lou")
        create = ('mutation($m: String!, $o: JID!) { muc { createInstantRoom(mucDomain: $m, '
                  'name: "hall", owner: $o, nick: "n") { jid } } }')
        await admin(server, create, m="conference.dyn.example", o="dan@dyn.example")
        await admin(server, create, m="conference.localhost", o="lou@localhost")

        async def as_domain_admin(query: str) -> dict[str, Any]:
            _, result = await gql(server, query, auth=("admin@dyn.example", "dpw"),
                                  path="/api/graphql/domain")
            return result

        listed = await as_domain_admin('{ muc { listRooms(mucDomain: "conference.dyn.example")'
                                       ' { rooms { jid } } } }')
        assert listed.get("data") == {"muc": {"listRooms": {"rooms": [
            {"jid": "hall@conference.dyn.example"}]}}}, listed
        config = await as_domain_admin('{ muc { getRoomConfig(room: '
                                       '"hall@conference.dyn.example") { persistent } } }')
        assert "errors" not in config, config
        for query in ('{ muc { listRooms(mucDomain: "conference.localhost") { count } } }',
                      '{ muc { getRoomConfig(room: "hall@conference.localhost") { title } } }',
                      'mutation { muc { deleteRoom(room: "hall@conference.localhost") } }'):
            refused = await as_domain_admin(query)
            assert code_of(refused) == "no_permissions", (query, refused)
        deleted = await as_domain_admin('mutation { muc { deleteRoom(room: '
                                        '"hall@conference.dyn.example") } }')
        assert "errors" not in deleted, deleted
        listed = await as_domain_admin('{ muc { listRooms(mucDomain: "conference.dyn.example")'
                                       ' { count } } }')
        assert listed["data"]["muc"]["listRooms"]["count"] == 0, listed
        # That subdomain is the MUC service's: it cannot become a domain (whose users the
        # service would shadow), and it is no domain of dyn.example's admin either.
        _, taken = await gql(server, 'mutation { domain { addDomain(domain: '
                             '"conference.dyn.example", hostType: "dynamic") { domain } } }')
        assert code_of(taken) == "domain_duplicate", taken
        refused = await as_domain_admin('{ account { listUsers(domain: '
                                        '"conference.dyn.example") } }')
        assert code_of(refused) == "domain_not_found", refused


async def test_data_of_an_account_that_does_not_exist(tmp_path: Path) -> None:
    """The operations writing an account's data name an existing account: a contact, vCard,
    private element or last status stored for nobody would wait in the database for whoever
    registers that name."""
    async with ops_server(tmp_path) as server:
        await register(server, "bob")
        for query in ('mutation { roster { addContact(user: "ghost@localhost", '
                      'contact: "bob@localhost") } }',
                      'mutation { roster { addContacts(user: "ghost@localhost", '
                      'contacts: [{jid: "bob@localhost", name: "B"}]) } }',
                      '{ roster { listContacts(user: "ghost@localhost") { jid } } }',
                      '{ roster { getContact(user: "ghost@localhost", contact: "bob@localhost")'
                      ' { jid } } }',
                      'mutation { vcard { setVcard(user: "ghost@localhost", vcard: '
                      '"<vCard xmlns=\'vcard-temp\'><FN>G</FN></vCard>") } }',
                      'mutation { private { setPrivate(user: "ghost@localhost", elementString: '
                      '"<my xmlns=\'x:y\'>d</my>") } }',
                      '{ private { getPrivate(user: "ghost@localhost", element: "my", '
                      'nameSpace: "x:y") } }',
                      'mutation { last { setLast(user: "ghost@localhost", status: "x") '
                      '{ status } } }'):
            _, result = await gql(server, query)
            assert code_of(result) == "user_does_not_exist", (query, result)
        await register(server, "ghost")
        data = await admin(server, '{ roster { listContacts(user: "ghost@localhost") '
                           '{ jid } } }')
        assert data["roster"]["listContacts"] == []
        _, result = await gql(server, '{ vcard { getVcard(user: "ghost@localhost") } '
                              'last { getLast(user: "ghost@localhost") { status } } }')
        assert {code_of({"errors": [e]}) for e in result["errors"]} == {
            "vcard_not_found", "not_found"}, result
        data = await admin(server, '{ private { getPrivate(user: "ghost@localhost", '
                           'element: "my", nameSpace: "x:y") } }')
        assert data["private"]["getPrivate"] == '<my xmlns="x:y"/>'
