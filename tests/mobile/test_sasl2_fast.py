"""SASL2 (XEP-0388), Bind 2 (XEP-0386) and FAST (XEP-0484) over real TLS with our own client:
every HT-* mechanism with its channel binding, tampering, rotation, invalidation, replay."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.jid import JID
from suricate.protocol.c2s import C2SState
from suricate.sasl.ht import HT_HASHES
from suricate.xml import ns
from tests.e2e.harness import connect, disconnect, eventually, running_server
from tests.mobile.client import Sasl2Client, bind2, request_token
from tests.mobile.conftest import add_user, modules_toml


def port(server: Server) -> int:
    return server.tls_port  # type: ignore[attr-defined, no-any-return]


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def client(server: Server, tls_version: str | None = None) -> Sasl2Client:
    c = Sasl2Client(port(server), direct_tls=True, tls_version=tls_version)
    c.features()
    return c


def get_token(server: Server, mechanism: str = "HT-SHA-256-NONE", user: str = "alice",
              tls_version: str | None = None, agent: str = "agent-1") -> str:
    c = client(server, tls_version)
    try:
        out = c.plain(user, "secret", bind2() + request_token(mechanism), agent=agent)
        assert out.ok, out.xml
        assert out.token is not None, out.xml
        return out.token[0]
    finally:
        c.close()


def fast_login(server: Server, token: str, mechanism: str = "HT-SHA-256-NONE",
               tls_version: str | None = None, **kw: Any) -> Any:
    c = client(server, tls_version)
    try:
        return c.fast("alice", token, mechanism, bind2(), **kw)
    finally:
        c.close()


async def test_features_offer_sasl2_with_inline_bind2_fast_and_sm(server: Server) -> None:
    def run() -> str:
        c = Sasl2Client(port(server), direct_tls=True, tls_version="1.3")
        try:
            return c.features()
        finally:
            c.close()
    features = await in_thread(run)
    assert "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" in features  # legacy too
    auth = re.search(r"<authentication xmlns='urn:xmpp:sasl:2'>.*?</authentication>", features)
    assert auth, features
    assert "<mechanism>PLAIN</mechanism>" in auth.group(0)
    assert "HT-" not in re.sub(r"<fast .*?</fast>", "", auth.group(0))  # only inside <fast/>
    assert "<bind xmlns='urn:xmpp:bind:0'><inline>" in auth.group(0)
    for var in ("urn:xmpp:sm:3", "urn:xmpp:carbons:2", "urn:xmpp:csi:0"):
        assert f"<feature var='{var}'/>" in auth.group(0)
    fast = re.search(r"<fast xmlns='urn:xmpp:fast:0'>(.*?)</fast>", auth.group(0))
    assert fast
    for name in ("HT-SHA-256-EXPR", "HT-SHA3-512-ENDP", "HT-SHA-384-NONE"):
        assert f"<mechanism>{name}</mechanism>" in fast.group(1)
    assert "UNIQ" not in fast.group(1)  # TLS 1.3: no tls-unique (RFC 9266 §1)
    assert "<sm xmlns='urn:xmpp:sm:3'/>" in auth.group(0)


async def test_password_login_binds_inline_and_issues_a_token(server: Server) -> None:
    def run() -> Any:
        c = client(server)
        try:
            out = c.plain("alice", "secret", bind2("AwesomeXMPP") + request_token(
                "HT-SHA-256-NONE"))
            # no stream restart: the session is usable at once
            c.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            pong = c.expect(r"<iq[^>]*id='p1'[^>]*/>").group(0)
            return out, pong
        finally:
            c.close()
    out, pong = await in_thread(run)
    assert out.ok and out.round_trips == 1
    assert re.fullmatch(r"alice@localhost/AwesomeXMPP\.[0-9a-f]{12}", out.jid or ""), out.xml
    assert "<bound xmlns='urn:xmpp:bind:0'/>" in out.xml
    token, expiry = out.token
    assert len(token) >= 40
    lifetime = time.mktime(time.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(
        time.gmtime())
    assert abs(lifetime - 3 * 86400) < 120  # validity_period.access default: 3 days
    assert "type='result'" in pong


async def test_token_login_is_one_round_trip_with_bind_and_inline_features(
        server: Server) -> None:
    token = await in_thread(get_token, server)

    def run() -> Any:
        c = client(server)
        try:
            inline = bind2("phone", "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
                           "<enable xmlns='urn:xmpp:carbons:2'/>"
                           "<inactive xmlns='urn:xmpp:csi:0'/>")
            return c.fast("alice", token, "HT-SHA-256-NONE", inline, count=1)
        finally:
            c.close()
    out = await in_thread(run)
    assert out.ok and out.round_trips == 1, out.xml
    assert out.jid and out.jid.startswith("alice@localhost/phone.")
    assert re.search(r"<bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' "
                     r"id='[^']+' resume='true' max='600'/></bound>", out.xml), out.xml
    assert out.token is None  # far from expiry: no rotation


async def test_bind2_ends_the_earlier_session_of_the_same_client(server: Server) -> None:
    """XEP-0386 §3: "Upon successful binding of a resource, the server SHOULD terminate any
    earlier sessions from the same client (identified by the <user-agent> 'id')". A phone
    whose connection died and that logs in afresh (its app restarted, no resumption) does
    not leave its old session waiting 10 minutes for a resumption: contacts do not see it
    twice, and what the old session held reaches the new one at once."""
    sm = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"

    def login(tag: str, agent: str, inline: str = "") -> tuple[Sasl2Client, str]:
        c = client(server)
        out = c.plain("alice", "secret", bind2(tag, inline), agent=agent)
        assert out.ok and out.jid, out.xml
        return c, out.jid

    old, old_jid = await in_thread(login, "phone", "phone-install", sm)
    laptop, laptop_jid = await in_thread(login, "laptop", "laptop-install")
    await in_thread(old.send, "<presence/>")
    old.close()  # the network goes, no </stream:stream>: the session waits for <resume/>
    await eventually(lambda: _state(server, old_jid) is C2SState.RESUME_SESSION)
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        bob.send_message(mto=old_jid, mbody="sent while you were away", mtype="chat")
        await eventually(lambda: "while you were away" in _held(server, old_jid))
        new, new_jid = await in_thread(login, "phone", "phone-install")
        try:
            # The old session is gone, the other client's (another user-agent id) stays.
            await eventually(lambda: _state(server, old_jid) is None)
            assert _state(server, laptop_jid) is C2SState.SESSION_ESTABLISHED
            # What it held was handed back to the router (offline storage here, as no
            # resource is available) and reaches the new session with its first presence.
            await in_thread(new.send, "<presence/>")
            got = await in_thread(new.expect, r"<body>sent while you were away</body>")
            assert got
        finally:
            new.close()
    finally:
        laptop.close()
        await disconnect(bob)


async def test_the_same_client_reconnecting_does_not_count_against_max_user_sessions(
        tmp_path: Path) -> None:
    """With max_user_sessions = 1, a phone that logs in again (Bind 2, the same SASL2
    user-agent id) while its dead session waits for resumption is its own earlier session,
    ended as XEP-0386 §3 says. Another client over the limit opens too, and the oldest
    session ends (<conflict/>, as MongooseIM 6.4): the user is never locked out by a
    session waiting for a resumption that will not come."""
    extra = '[access]\nmax_user_sessions = [{acl = "all", value = 1}]'
    async with running_server(tmp_path, modules=modules_toml(), extra=extra) as server:
        await add_user(server, "alice")
        sm = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"

        def login(agent: str, inline: str = "") -> tuple[Sasl2Client, Any]:
            c = client(server)
            return c, c.plain("alice", "secret", bind2("phone", inline), agent=agent)

        phone, first = await in_thread(login, "phone-install", sm)
        assert first.ok, first.xml
        phone.close()  # no </stream:stream>: the session waits for <resume/>
        await eventually(lambda: _state(server, first.jid) is C2SState.RESUME_SESSION)
        tablet, second = await in_thread(login, "tablet-install")
        try:
            assert second.ok and second.jid, second.xml
            await eventually(lambda: _state(server, first.jid) is None)
            phone, again = await in_thread(login, "phone-install")
            try:
                assert again.ok and again.jid, again.xml
                # The tablet's session was the oldest: it ended for the phone's.
                await eventually(lambda: _state(server, second.jid) is None)
                assert _state(server, again.jid) is not None
            finally:
                phone.close()
        finally:
            tablet.close()


def _state(server: Server, jid: str) -> Any:
    for session in server.sessions:
        if str(session.jid) == jid:
            return session.state
    return None


def _held(server: Server, jid: str) -> str:
    """What the session of ``jid`` keeps unacknowledged, serialized."""
    for session in server.sessions:
        if str(session.jid) == jid:
            sm = STREAM_MANAGEMENT.get(session)
            return "".join(s.serialize(ns.CLIENT) for s in sm.buffer) if sm else ""
    return ""


@pytest.mark.parametrize("cb", ["NONE", "EXPR", "ENDP", "UNIQ"])
@pytest.mark.parametrize("hash_name", list(HT_HASHES))
async def test_every_hashed_token_mechanism(server: Server, hash_name: str, cb: str) -> None:
    mechanism = f"HT-{hash_name}-{cb}"
    # tls-unique exists on TLS 1.2 only, tls-exporter is offered on TLS 1.3 only
    version = "1.2" if cb == "UNIQ" else "1.3"
    token = await in_thread(get_token, server, mechanism, "alice", version)
    out = await in_thread(lambda: fast_login(server, token, mechanism, version))
    assert out.ok, out.xml
    if cb != "NONE":
        bad = await in_thread(lambda: fast_login(server, token, mechanism, version,
                                                 tamper=True))
        assert not bad.ok and bad.condition() == "not-authorized", bad.xml


async def test_token_is_bound_to_its_mechanism(server: Server) -> None:
    token = await in_thread(get_token, server, "HT-SHA-256-NONE")
    out = await in_thread(lambda: fast_login(server, token, "HT-SHA-512-NONE"))
    assert not out.ok and out.condition() == "not-authorized"
    out = await in_thread(lambda: fast_login(server, token, "HT-SHA-256-NONE"))
    assert out.ok


async def test_unique_channel_binding_not_offered_on_tls13(server: Server) -> None:
    def run() -> Any:
        c = client(server, "1.3")
        try:
            return c.fast("alice", "whatever", "HT-SHA-256-UNIQ", bind2())
        finally:
            c.close()
    out = await in_thread(run)
    assert not out.ok and out.condition() == "invalid-mechanism"


async def test_fast_needs_a_user_agent_id(server: Server) -> None:
    token = await in_thread(get_token, server)
    out = await in_thread(lambda: fast_login(server, token, agent=None))
    assert not out.ok and out.condition() == "not-authorized"
    assert "user-agent" in out.xml


async def test_replayed_count_refused(server: Server) -> None:
    token = await in_thread(get_token, server)
    assert (await in_thread(lambda: fast_login(server, token, count=5))).ok
    replay = await in_thread(lambda: fast_login(server, token, count=5))
    assert not replay.ok and replay.condition() == "not-authorized"
    assert not (await in_thread(lambda: fast_login(server, token, count=4))).ok
    assert (await in_thread(lambda: fast_login(server, token, count=6))).ok


async def test_invalidate_without_and_with_a_new_token(server: Server) -> None:
    token = await in_thread(get_token, server)
    out = await in_thread(lambda: fast_login(server, token, invalidate=True))
    assert out.ok and out.token is None
    assert not (await in_thread(lambda: fast_login(server, token))).ok

    token = await in_thread(get_token, server)

    def invalidate_and_request() -> Any:
        c = client(server)
        try:
            return c.fast("alice", token, "HT-SHA-256-NONE",
                          bind2() + request_token("HT-SHA-256-NONE"), invalidate=True)
        finally:
            c.close()
    out = await in_thread(invalidate_and_request)
    assert out.ok and out.token is not None
    assert not (await in_thread(lambda: fast_login(server, token))).ok
    assert (await in_thread(lambda: fast_login(server, out.token[0]))).ok


async def test_changed_password_and_removed_account_stop_tokens(server: Server) -> None:
    token = await in_thread(get_token, server)
    await server.auth.set_password(JID("alice", "localhost", None), "new-secret")
    assert not (await in_thread(lambda: fast_login(server, token))).ok
    await server.auth.set_password(JID("alice", "localhost", None), "secret")
    token = await in_thread(get_token, server)
    await server.auth.remove(JID("alice", "localhost", None))
    assert not (await in_thread(lambda: fast_login(server, token))).ok


async def test_database_copy_holds_no_usable_token(server: Server, tmp_path: Path) -> None:
    token = await in_thread(get_token, server)
    db = sqlite3.connect(tmp_path / "suricate.db")
    rows = db.execute("SELECT * FROM fast_auth_token").fetchall()
    db.close()
    assert rows and all(token not in str(v) for row in rows for v in row)
    raw = (tmp_path / "suricate.db").read_bytes()
    wal = tmp_path / "suricate.db-wal"
    if wal.exists():
        raw += wal.read_bytes()
    assert token.encode() not in raw


async def test_rotation_near_expiry_keeps_the_old_token_until_the_new_one_is_used(
        tmp_path: Path) -> None:
    # Tokens live 1 hour, rotation starts 2 hours before expiry: every login rotates.
    extra = ("validity_period.access = {value = 1, unit = \"hours\"}\n"
             "validity_period.rotate_before_expire = {value = 2, unit = \"hours\"}\n")
    modules = modules_toml().replace("[modules.mod_fast_auth_token]",
                                     "[modules.mod_fast_auth_token]\n" + extra)
    async with running_server(tmp_path, modules=modules) as server:
        await add_user(server, "alice")
        first = await in_thread(get_token, server)
        out = await in_thread(lambda: fast_login(server, first))
        assert out.ok and out.token is not None, out.xml  # rotated
        second = out.token[0]
        assert second != first
        # the new token was lost on the wire: the old one still works (XEP-0484 §3.5)
        out = await in_thread(lambda: fast_login(server, first))
        assert out.ok and out.token is not None
        third = out.token[0]
        assert (await in_thread(lambda: fast_login(server, third))).ok
        # once the newer token has been used, the older ones are gone
        assert not (await in_thread(lambda: fast_login(server, first))).ok
        assert not (await in_thread(lambda: fast_login(server, second))).ok


async def test_no_rotation_when_disabled(tmp_path: Path) -> None:
    extra = ("validity_period.access = {value = 1, unit = \"hours\"}\n"
             "validity_period.rotate_before_expire = {value = 0, unit = \"hours\"}\n")
    modules = modules_toml().replace("[modules.mod_fast_auth_token]",
                                     "[modules.mod_fast_auth_token]\n" + extra)
    async with running_server(tmp_path, modules=modules) as server:
        await add_user(server, "alice")
        token = await in_thread(get_token, server)
        out = await in_thread(lambda: fast_login(server, token))
        assert out.ok and out.token is None


async def test_sasl2_failure_has_condition_and_text_and_scram_challenges(
        server: Server) -> None:
    import base64

    from suricate.sasl.scram_client import ScramClient

    def run() -> Any:
        c = client(server)
        try:
            bad = c.plain("alice", "wrong")
            scram = ScramClient("SHA-256", "alice", "secret")
            c.send(f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>"
                   f"<initial-response>{base64.b64encode(scram.first()).decode()}"
                   "</initial-response><user-agent id='a2'/>" + bind2() + "</authenticate>")
            challenge = c.expect(r"<challenge xmlns='urn:xmpp:sasl:2'>(.*?)</challenge>")
            final = scram.final(base64.b64decode(challenge.group(1)))
            c.send("<response xmlns='urn:xmpp:sasl:2'>"
                   f"{base64.b64encode(final).decode()}</response>")
            success = c.expect(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>").group(0)
            data = re.search(r"<additional-data>(.*?)</additional-data>", success)
            assert data and scram.verify(base64.b64decode(data.group(1)))
            return bad, success
        finally:
            c.close()
    bad, success = await in_thread(run)
    assert not bad.ok
    assert bad.xml.startswith("<failure xmlns='urn:xmpp:sasl:2'><not-authorized "
                              "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    assert "<bound xmlns='urn:xmpp:bind:0'/>" in success


async def test_sasl2_without_bind2_sends_post_auth_features_without_restart(
        server: Server) -> None:
    def run() -> Any:
        c = client(server)
        try:
            out = c.plain("alice", "secret")
            features = c.expect(r"<stream:features>.*?</stream:features>").group(0)
            c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   "<resource>r1</resource></bind></iq>")
            return out, features, c.expect(r"<jid>(.*?)</jid>").group(1)
        finally:
            c.close()
    out, features, jid = await in_thread(run)
    assert out.ok and out.jid == "alice@localhost"
    assert "urn:ietf:params:xml:ns:xmpp-bind" in features and "urn:xmpp:sm:3" in features
    assert jid == "alice@localhost/r1"


async def test_token_login_with_inline_resume_honours_invalidate(server: Server) -> None:
    # Conversations and Monal log in with the token and resume in the same <authenticate/>
    # (XEP-0484 + XEP-0198 inline, XEP-0388). The resumed session's state replaces the new
    # stream's; what FAST noted about the token in use must survive it: <fast invalidate/>
    # (XEP-0484 §3.4) still removes the token.
    token = await in_thread(get_token, server)

    def enable_then_drop() -> str:
        c = client(server)
        out = c.fast("alice", token, "HT-SHA-256-NONE",
                     bind2("phone", "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"))
        c.close()
        m = re.search(r"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", out.xml)
        assert m, out.xml
        return m.group(1)
    sm_id = await in_thread(enable_then_drop)
    await eventually(lambda: any(s.state == C2SState.RESUME_SESSION for s in server.sessions))

    def resume_and_invalidate() -> Any:
        c = client(server)
        try:
            return c.fast("alice", token, "HT-SHA-256-NONE",
                          f"<resume xmlns='urn:xmpp:sm:3' h='0' previd='{sm_id}'/>" + bind2(),
                          invalidate=True)
        finally:
            c.close()
    out = await in_thread(resume_and_invalidate)
    assert out.ok and "<resumed " in out.xml, out.xml
    assert not (await in_thread(lambda: fast_login(server, token))).ok
