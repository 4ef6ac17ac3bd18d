"""SASL upgrade tasks (XEP-0480) over real TLS with raw SASL2 stanzas (no client library has
XEP-0480): an account with SHA-1 keys only (as moved in from Prosody) logs in with
SCRAM-SHA-1-PLUS, asks for UPGR-SCRAM-SHA-256 and UPGR-SCRAM-SHA-512, answers each task with
its SaltedPassword, and can then log in with SCRAM-SHA-256 and SCRAM-SHA-512 (ours and
slixmpp's); a malformed answer fails the login and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from pathlib import Path

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_fast_auth_token import (
    credential_fingerprint,
    credential_fingerprints,
    whole_record_fingerprint,
)
from suricate.sasl.passwords import (
    ScramKeys,
    format_scram_record,
    keys_from_plain,
    parse_scram_record,
)
from suricate.sasl.scram_client import ScramClient
from suricate.storage.base import UserRecord
from tests.e2e.harness import connect, disconnect, running_server
from tests.e2e.tls_client import TestClient
from tests.mobile.client import SASL2, Sasl2Client, bind2, request_token
from tests.mobile.conftest import modules_toml

UPGRADE = "urn:xmpp:sasl:upgrade:0"
SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0"
PASSWORD = "old prosody password"


async def sha1_only_account(server: Server, user: str) -> str:
    """An account as docs/moving-in.md imports it from Prosody: SCRAM-SHA-1 keys only."""
    record = format_scram_record({"sha": keys_from_plain(PASSWORD, "sha", os.urandom(16), 4096)})
    assert await server.storage.create_user("localhost", user, None, record)
    return record


def login_with_upgrades(port: int, user: str, tasks: list[str], tamper: bool = False,
                        inline: str = "", hash_name: str = "sha") -> tuple[str, list[str]]:
    """SCRAM-SHA-1-PLUS (or ``hash_name``'s) over SASL2 asking for ``tasks``; each
    <continue/> is answered by the XEP-0480 §4 exchange. Returns the final <success/> or
    <failure/> and the tasks run."""
    c = Sasl2Client(port, direct_tls=True, tls_version="1.3")
    try:
        features = c.features()
        for task in tasks:
            assert f"<upgrade xmlns='{UPGRADE}'>{task}</upgrade>" in features, features
        scram = ScramClient(hash_name, user, PASSWORD, cb_type="tls-exporter",
                            cb_data=c.binding("tls-exporter"))
        upgrades = "".join(f"<upgrade xmlns='{UPGRADE}'>{t}</upgrade>" for t in tasks)
        c.send(f"<authenticate xmlns='{SASL2}' mechanism='{scram.mechanism}'>{upgrades}"
               f"<initial-response>{base64.b64encode(scram.first()).decode()}"
               f"</initial-response>{inline}</authenticate>")
        challenge = c.expect(r"<challenge xmlns='urn:xmpp:sasl:2'>(.*?)</challenge>")
        final = scram.final(base64.b64decode(challenge.group(1)))
        c.send(f"<response xmlns='{SASL2}'>{base64.b64encode(final).decode()}</response>")
        ran: list[str] = []
        while True:
            m = c.expect(r"<(continue|success|failure) xmlns='urn:xmpp:sasl:2'>.*?</\1>")
            if m.group(1) != "continue":
                return m.group(0), ran
            # The SCRAM server signature comes with the first <continue/> (mutual auth).
            data = re.search(r"<additional-data>(.*?)</additional-data>", m.group(0))
            if not ran:
                assert data is not None and scram.verify(base64.b64decode(data.group(1)))
            task = re.search(r"<tasks><task>(.*?)</task></tasks>", m.group(0))
            assert task is not None, m.group(0)
            ran.append(task.group(1))
            c.send(f"<next xmlns='{SASL2}' task='{task.group(1)}'/>")
            salt = c.expect(rf"<task-data xmlns='{SASL2}'><salt xmlns='{SCRAM_UPGRADE}' "
                            r"iterations='(\d+)'>(.*?)</salt></task-data>")
            algorithm = {"UPGR-SCRAM-SHA-256": "sha256",
                         "UPGR-SCRAM-SHA-512": "sha512"}[task.group(1)]
            salted = hashlib.pbkdf2_hmac(algorithm, PASSWORD.encode(),
                                         base64.b64decode(salt.group(2)), int(salt.group(1)))
            answer = "not base64!" if tamper else base64.b64encode(salted).decode()
            c.send(f"<task-data xmlns='{SASL2}'><hash xmlns='{SCRAM_UPGRADE}'>{answer}</hash>"
                   "</task-data>")
    finally:
        c.close()


def legacy_scram(port: int, user: str, hash_name: str) -> bool:
    c = TestClient(port, direct_tls=True)
    try:
        c.open_stream()
        return c.scram_login(user, PASSWORD, hash_name)[0]
    finally:
        c.close()


async def test_sha1_account_upgrades_to_sha256_and_sha512(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules_toml()) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        before = await sha1_only_account(server, "ann")
        # The keys SCRAM-SHA-256 needs do not exist yet.
        assert not await asyncio.to_thread(legacy_scram, port, "ann", "SHA-256")

        tasks = ["UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512"]
        # With a Bind 2 request inline: the <success/> after the tasks still answers it.
        outcome, ran = await asyncio.to_thread(login_with_upgrades, port, "ann", tasks, False,
                                               bind2("laptop"))
        assert ran == tasks
        assert re.search(r"<authorization-identifier>ann@localhost/[^<]+"
                         r"</authorization-identifier>", outcome), outcome
        assert "<bound xmlns='urn:xmpp:bind:0'" in outcome

        user = await server.storage.get_user("localhost", "ann")
        assert user is not None and user.pass_details is not None
        keys = parse_scram_record(user.pass_details)
        assert set(keys) == {"sha", "sha256", "sha512"}
        assert keys["sha"] == parse_scram_record(before)["sha"]  # kept (XEP-0480 §5)
        for hash_name in ("SHA-1", "SHA-256", "SHA-512"):
            assert await asyncio.to_thread(legacy_scram, port, "ann", hash_name), hash_name
        client = await connect(server, "ann@localhost/r", PASSWORD)  # slixmpp's choice
        await disconnect(client)

        # Nothing left to upgrade: the same request ends in <success/> at once.
        outcome, ran = await asyncio.to_thread(login_with_upgrades, port, "ann", tasks)
        assert ran == [] and outcome.startswith("<success")


async def test_a_malformed_answer_fails_the_login_and_changes_nothing(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules_toml()) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        before = await sha1_only_account(server, "bea")
        outcome, ran = await asyncio.to_thread(login_with_upgrades, port, "bea",
                                               ["UPGR-SCRAM-SHA-256"], True)
        assert ran == ["UPGR-SCRAM-SHA-256"]
        assert outcome.startswith("<failure") and "<malformed-request" in outcome
        user = await server.storage.get_user("localhost", "bea")
        assert user is not None and user.pass_details == before


async def test_a_fast_token_outlives_an_upgrade_not_a_password_change(tmp_path: Path) -> None:
    """A token is bound to the account's first SCRAM hash, which an upgrade keeps (§5): the
    client that upgraded its keys keeps its FAST token; a new password still ends it."""
    async with running_server(tmp_path, modules=modules_toml()) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        await sha1_only_account(server, "cy")

        def token() -> str:
            c = Sasl2Client(port, direct_tls=True)
            try:
                c.features()
                out = c.plain("cy", PASSWORD, bind2() + request_token("HT-SHA-256-NONE"))
                assert out.ok and out.token is not None, out.xml
                return out.token[0]
            finally:
                c.close()

        def fast(token: str) -> bool:
            c = Sasl2Client(port, direct_tls=True)
            try:
                c.features()
                return c.fast("cy", token, "HT-SHA-256-NONE", bind2()).ok
            finally:
                c.close()

        issued = await asyncio.to_thread(token)
        # A token issued before tokens were bound to one hash (bound to the whole record)
        # still logs in while the record is unchanged.
        fast_module = server.modules["mod_fast_auth_token"]
        slots = await fast_module.store.get_fast_tokens("localhost", "cy", "agent-1")
        record = await server.storage.get_user("localhost", "cy")
        assert slots is not None and slots.new is not None and record is not None
        older = fast_module.derive(slots.new.seed, record, whole_record_fingerprint(record))
        assert older.decode() != issued
        assert await asyncio.to_thread(fast, older.decode())
        outcome, ran = await asyncio.to_thread(login_with_upgrades, port, "cy",
                                               ["UPGR-SCRAM-SHA-256"])
        assert ran == ["UPGR-SCRAM-SHA-256"] and outcome.startswith("<success"), outcome
        assert await asyncio.to_thread(fast, issued)
        await server.auth.set_password(JID.parse("cy@localhost"), "a new one")
        assert not await asyncio.to_thread(fast, issued)


async def test_a_token_outlives_an_upgrade_adding_a_hash_before_its_own(tmp_path: Path) -> None:
    """The same over the wire: a SHA-512-only account gets a FAST token, upgrades to
    SHA-256 (a hash ordered before SHA-512), and the token still logs in."""
    async with running_server(tmp_path, modules=modules_toml()) as server:
        port = server.tls_port  # type: ignore[attr-defined]
        record = format_scram_record({"sha512": keys_from_plain(PASSWORD, "sha512",
                                                                os.urandom(16), 4096)})
        assert await server.storage.create_user("localhost", "eve", None, record)

        def token() -> str:
            c = Sasl2Client(port, direct_tls=True)
            try:
                c.features()
                out = c.plain("eve", PASSWORD, bind2() + request_token("HT-SHA-256-NONE"))
                assert out.ok and out.token is not None, out.xml
                return out.token[0]
            finally:
                c.close()

        def fast(token: str) -> bool:
            c = Sasl2Client(port, direct_tls=True)
            try:
                c.features()
                return c.fast("eve", token, "HT-SHA-256-NONE", bind2()).ok
            finally:
                c.close()

        issued = await asyncio.to_thread(token)
        outcome, ran = await asyncio.to_thread(login_with_upgrades, port, "eve",
                                               ["UPGR-SCRAM-SHA-256"], hash_name="sha512")
        assert ran == ["UPGR-SCRAM-SHA-256"] and outcome.startswith("<success"), outcome
        user = await server.storage.get_user("localhost", "eve")
        assert user is not None and "sha256" in parse_scram_record(user.pass_details or "")
        assert await asyncio.to_thread(fast, issued)


def test_a_token_outlives_an_upgrade_that_adds_a_hash_before_the_first() -> None:
    """A token is bound to the first SCRAM hash of the record when it is issued; an upgrade
    may add one before it (SHA-256 to a SHA-512-only record): the token's hash is still
    stored, so it still verifies (it is among ``credential_fingerprints``); a new password
    (new salts, every key replaced) ends it."""
    def record(keys: dict[str, ScramKeys]) -> UserRecord:
        return UserRecord("localhost", "di", None, format_scram_record(keys), 0.0)

    sha512 = keys_from_plain(PASSWORD, "sha512", os.urandom(16), 4096)
    issued = credential_fingerprint(record({"sha512": sha512}))
    upgraded = record({"sha512": sha512,
                       "sha256": keys_from_plain(PASSWORD, "sha256", os.urandom(16), 4096)})
    assert credential_fingerprint(upgraded) != issued  # the first hash is now SHA-256
    assert issued in credential_fingerprints(upgraded)
    renewed = record({"sha512": keys_from_plain("a new one", "sha512", os.urandom(16), 4096)})
    assert issued not in credential_fingerprints(renewed)
