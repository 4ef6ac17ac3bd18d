"""The GraphQL side of the archive and inbox, over real HTTP: stanza.getLastMessages (mod_mam),
inbox.flush*Bin (mod_inbox), gdpr.retrievePersonalData (every module's personal_data), and
their generated CLI commands."""

from __future__ import annotations

import asyncio
import csv
import io
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect
from tests.inbox.conftest import INBOX_TOML
from tests.ops.harness import admin, gql, ops_server, ops_toml
from tests.ops.test_cli import SURICATE
from tests.ops.test_graphql import REGISTER, code_of

MODULES = ("[modules.mod_roster]\n[modules.mod_vcard]\n[modules.mod_private]\n"
           "[modules.mod_offline]\n[modules.mod_pubsub]\n[modules.mod_presence]\n" + INBOX_TOML)
CONV = "erlang-solutions.com:xmpp:inbox:0#conversation"


def read_zip(path: Path) -> dict[str, list[list[str]]]:
    with zipfile.ZipFile(path) as archive:
        return {name: list(csv.reader(io.StringIO(archive.read(name).decode())))
                for name in archive.namelist()}


async def test_last_messages_bin_and_personal_data(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=MODULES) as server:
        for user in ("ann", "ben", "cid"):
            await admin(server, REGISTER, d="localhost", u=user, p="pw")
        ann = await connect(server, "ann@localhost/a", "pw")
        ben = await connect(server, "ben@localhost/b", "pw")
        for client in (ann, ben):
            client.send_presence()
        for i in range(3):
            ann.send_message(mto="ben@localhost", mbody=f"m{i}", mtype="chat")
            await ben.next_message()
        ben.send_message(mto="cid@localhost", mbody="to cid, offline", mtype="chat")
        # stanza.getLastMessages reads ann's archive (what the writer still holds included).
        data = await admin(server, '{ stanza { getLastMessages(caller: "ann@localhost", '
                           'limit: 2) { stanzas { sender stanza_id stanza timestamp } limit } } }')
        got = data["stanza"]["getLastMessages"]
        assert got["limit"] == 2 and [s["stanza"].count("<body>m") for s in got["stanzas"]] == [1, 1]
        assert ["m1" in got["stanzas"][0]["stanza"], "m2" in got["stanzas"][1]["stanza"]] == \
            [True, True]
        assert got["stanzas"][0]["sender"] == "ann@localhost/a"
        data = await admin(server, '{ stanza { getLastMessages(caller: "ann@localhost", '
                           'with: "cid@localhost") { stanzas { stanza } } } }')
        assert data["stanza"]["getLastMessages"]["stanzas"] == []
        status, result = await gql(server, '{ stanza { getLastMessages(caller: "ann@localhost",'
                                   ' before: "not a date") { limit } } }')
        assert code_of(result) == "bad_timestamp"
        # The user API reads one's own archive.
        status, result = await gql(server, '{ stanza { getLastMessages(limit: 1) { stanzas '
                                   '{ stanza } } } }', auth=("ben@localhost", "pw"),
                                   path="/api/graphql/user")
        assert "to cid" in result["data"]["stanza"]["getLastMessages"]["stanzas"][0]["stanza"]

        # inbox: ben bins his conversation with ann; flushUserBin empties it.
        iq = ben.make_iq_set()
        iq.xml.append(ET.fromstring(
            f"<query xmlns='{CONV}' jid='ann@localhost'><box>bin</box></query>"))
        await iq.send(timeout=5)
        data = await admin(server, 'mutation { inbox { flushUserBin(user: "ben@localhost", '
                           'days: 1) } }')
        assert data["inbox"]["flushUserBin"] == 0  # the entry is not a day old
        data = await admin(server, 'mutation { inbox { flushDomainBin(domain: "localhost") '
                           'flushGlobalBin(hostType: "localhost") } }')
        assert data["inbox"] == {"flushDomainBin": 1, "flushGlobalBin": 0}
        status, result = await gql(server, 'mutation { inbox { flushGlobalBin(hostType: '
                                   '"nope") } }')
        assert code_of(result) == "unknown_host_type"
        # GraphQL's largest Int of days is older than anything: nothing, and no overflow.
        data = await admin(server, 'mutation { inbox { flushUserBin(user: "ben@localhost", '
                           'days: 2147483647) } }')
        assert data["inbox"]["flushUserBin"] == 0
        # 6.4: an account that does not exist is an error, not an empty bin.
        status, result = await gql(server, 'mutation { inbox { flushUserBin(user: '
                                   '"zed@localhost", days: 0) } }')
        assert code_of(result) == "user_does_not_exist"

        # gdpr: a zip with a CSV per kind of data, from every module that keeps some.
        await admin(server, 'mutation($v: String!) { vcard { setVcard(user: "ann@localhost", '
                    'vcard: $v) } }', v="<vCard xmlns='vcard-temp'><FN>Ann</FN></vCard>")
        await admin(server, 'mutation { roster { addContact(user: "ann@localhost", contact: '
                    '"ben@localhost", name: "Ben", groups: ["work"]) } }')
        await admin(server, 'mutation($e: String!) { private { setPrivate(user: '
                    '"ann@localhost", elementString: $e) } }',
                    e="<notes xmlns='storage:rosternotes'><note>x</note></notes>")
        target = tmp_path / "ann.zip"
        data = await admin(server, '{ gdpr { retrievePersonalData(username: "ann@localhost", '
                           'resultFilepath: $p) } }'.replace("$p", f'"{target}"'))
        assert data["gdpr"]["retrievePersonalData"] == "Data retrieved"
        files = read_zip(target)
        # 6.4's contract: a file per kind of data that has rows.
        assert {"account.csv", "roster.csv", "vcard.csv", "private.csv", "mam_pm.csv",
                "inbox.csv"} <= set(files)
        assert "pubsub_subscriptions.csv" not in files  # ann subscribes to nothing
        assert files["account.csv"] == [["jid"], ["ann@localhost"]]
        assert files["roster.csv"][1][:5] == ["ben@localhost", "Ben", "none", "none", "work"]
        assert files["vcard.csv"][1][0] == "ann@localhost"
        assert "<FN>Ann</FN>" in files["vcard.csv"][1][1]
        assert [r[0] for r in files["private.csv"][1:]] == ["storage:rosternotes"]
        assert len(files["mam_pm.csv"]) == 4 and "m0" in files["mam_pm.csv"][1][2]
        assert files["inbox.csv"][1][0] == "ben@localhost"
        cid_zip = tmp_path / "cid.zip"
        await admin(server, f'{{ gdpr {{ retrievePersonalData(username: "cid@localhost", '
                            f'resultFilepath: "{cid_zip}") }} }}')
        assert "to cid, offline" in read_zip(cid_zip)["offline.csv"][1][3]
        # Bad input: an unknown account, a folder that does not exist, a domain admin.
        status, result = await gql(server, '{ gdpr { retrievePersonalData(username: '
                                   f'"zed@localhost", resultFilepath: "{target}") }} }}')
        assert code_of(result) == "user_does_not_exist"
        # (a folder of the test's own: a fixed path such as /nonexistent may exist here)
        missing = tmp_path / "no-such-folder" / "x.zip"
        status, result = await gql(server, '{ gdpr { retrievePersonalData(username: '
                                   f'"ann@localhost", resultFilepath: "{missing}") }} }}')
        assert code_of(result) == "wrong_filename"
        await disconnect(ann, ben)
        # Removing the account removes its inbox and markers with it.
        await admin(server, 'mutation { account { removeUser(user: "ben@localhost") '
                    '{ message } } }')
        assert await server.modules["mod_inbox"].store.all_entries(  # type: ignore[attr-defined]
            "localhost", "ben") == []
        assert not await server.auth.user_exists(JID.parse("ben@localhost"))


async def test_cli_commands(tmp_path: Path) -> None:
    # The commands generated from the schema, run as processes against the running server.
    async with ops_server(tmp_path, modules=MODULES) as server:
        await admin(server, REGISTER, d="localhost", u="ann", p="pw")
        config = tmp_path / "suricate.toml"
        config.write_text(ops_toml(tmp_path, server.c2s_port,  # type: ignore[attr-defined]
                                   server.tls_port, server.http_port,  # type: ignore[attr-defined]
                                   modules=MODULES))
        target = tmp_path / "out.zip"
        for args, expected in (
                (["gdpr", "retrievePersonalData", "--username", "ann@localhost",
                  "--resultFilepath", str(target)], "Data retrieved"),
                (["inbox", "flushUserBin", "--user", "ann@localhost"], "0"),
                (["stanza", "getLastMessages", "--caller", "ann@localhost"], "limit")):
            proc = await asyncio.create_subprocess_exec(
                *SURICATE, *args, "--config", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, (args, out, err)
            assert expected in out.decode(), (args, out)
        assert zipfile.is_zipfile(target)
