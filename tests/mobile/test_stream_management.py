"""XEP-0198 with a real client (slixmpp's xep_0198) and with our own client for the exact
counters: kill the socket mid-conversation, resume, get every unacknowledged message exactly
once; let the resumption time out and find the messages offline."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

from suricate.core import hooks as H
from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import Client, connect, disconnect, eventually, running_server
from tests.mobile.client import Sasl2Client, authenticate_xml, bind2
from tests.mobile.conftest import add_user, modules_toml


def _sm_enabled(server: Server, jid: str) -> bool:
    session = _session(server, jid)
    return session is not None and STREAM_MANAGEMENT.get(session) is not None


def _session(server: Server, jid: str) -> Any:
    for session in server.sessions:
        if str(session.jid) == jid:
            return session
    return None


def _state(server: Server, jid: str) -> Any:
    session = _session(server, jid)
    return None if session is None else session.state


async def _collect(client: Client, count: int, timeout: float = 5.0) -> list[str]:
    bodies = []
    for _ in range(count):
        msg = await client.next_message(timeout)
        bodies.append(msg["body"])
    return bodies


async def _no_more(client: Client, wait: float = 0.5) -> None:
    with contextlib.suppress(TimeoutError):
        extra = await client.next_message(wait)
        raise AssertionError(f"unexpected message {extra['body']!r}")


async def _kill(client: Client) -> None:
    # The socket dies without </stream:stream>: as when a phone loses its network.
    client.abort()
    await asyncio.sleep(0)


async def _phone_with_sm_and_desk(server: Server) -> tuple[Client, Client]:
    """alice@localhost/phone (slixmpp xep_0198, stream management enabled, available) and
    bob@localhost/desk, both logged in."""
    await add_user(server, "alice")
    await add_user(server, "bob")
    alice = await connect(server, "alice@localhost/phone", "secret", plugins=("xep_0198",))
    bob = await connect(server, "bob@localhost/desk", "secret")
    alice.send_presence()
    await eventually(lambda: _sm_enabled(server, "alice@localhost/phone"))
    return alice, bob


async def test_slixmpp_kill_socket_resume_gets_every_message_once(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules_toml()) as server:
        alice, bob = await _phone_with_sm_and_desk(server)
        try:
            for i in range(1, 4):
                bob.send_message(mto="alice@localhost/phone", mbody=f"m{i}", mtype="chat")
            assert await _collect(alice, 3) == ["m1", "m2", "m3"]
            resumed = asyncio.get_running_loop().create_future()
            alice.add_event_handler("session_resumed",
                                    lambda _: resumed.done() or resumed.set_result(True))
            await _kill(alice)
            for i in range(4, 7):
                bob.send_message(mto="alice@localhost/phone", mbody=f"m{i}", mtype="chat")
            await eventually(lambda: _state(server, "alice@localhost/phone")
                             == C2SState.RESUME_SESSION)
            alice.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
            await asyncio.wait_for(resumed, 10)
            assert await _collect(alice, 3) == ["m4", "m5", "m6"]
            await _no_more(alice)
            # the conversation goes on over the resumed stream
            bob.send_message(mto="alice@localhost/phone", mbody="m7", mtype="chat")
            assert await _collect(alice, 1) == ["m7"]
            assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0
        finally:
            await disconnect(alice, bob)


async def test_slixmpp_resumption_timeout_stores_messages_offline(tmp_path: Path) -> None:
    modules = modules_toml().replace("[modules.mod_stream_management]",
                                     "[modules.mod_stream_management]\nresume_timeout = 1")
    async with running_server(tmp_path, modules=modules) as server:
        alice, bob = await _phone_with_sm_and_desk(server)
        try:
            await _kill(alice)
            sent_at = time.time()
            for i in range(1, 4):
                bob.send_message(mto="alice@localhost/phone", mbody=f"late{i}", mtype="chat")
            await eventually(lambda: _session(server, "alice@localhost/phone") is None,
                             timeout=5)

            async def stored() -> bool:
                return await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 3
            await eventually(stored)
            # The phone comes back: each message is stamped with when the server got it
            # (XEP-0203 §2 "stamp": when originally sent; XEP-0160 §2 step 5), not with when
            # the resumption timed out, up to resume_timeout (10 minutes by default) later.
            phone = await connect(server, "alice@localhost/phone", "secret",
                                  plugins=("xep_0203",))
            phone.send_presence()
            for msg in [await phone.next_message() for _ in range(3)]:
                stamp = msg["delay"]["stamp"].timestamp()
                assert sent_at - 0.1 <= stamp <= sent_at + 0.5, (msg["delay"], sent_at)
            await disconnect(phone)
        finally:
            await disconnect(bob)
            with contextlib.suppress(Exception):
                alice.abort()


# -- exact counters with our own client ---------------------------------------------------------


def _sm_login(server: Server, inline: str) -> tuple[Sasl2Client, str]:
    c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
    c.features()
    out = c.plain("alice", "secret", bind2("raw", inline))
    assert out.ok, out.xml
    sm_id = re.search(r"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'", out.xml)
    assert sm_id, out.xml
    return c, sm_id.group(1)


async def test_inline_resume_retransmits_exactly_what_was_not_acknowledged(
        server: Server) -> None:
    c, sm_id = await asyncio.to_thread(
        _sm_login, server, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        for i in range(1, 4):
            bob.send_message(mto=jid, mbody=f"x{i}", mtype="chat")
        # the client reads all three and the server's <r/> requests, acks none, then dies
        await asyncio.to_thread(c.expect, r"<body>x3</body>.*<r xmlns='urn:xmpp:sm:3'/>")
        c.close()
        await eventually(lambda: _state(server, jid) == C2SState.RESUME_SESSION)
        bob.send_message(mto=jid, mbody="x4", mtype="chat")

        def resume() -> tuple[Any, str]:
            n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            n.features()
            # it had handled x1 only
            out = n.plain("alice", "secret", f"<resume xmlns='urn:xmpp:sm:3' h='1' "
                          f"previd='{sm_id}'/>" + bind2("raw"))
            rest = n.expect(r".*?<body>x4</body>.*?</message>").group(0)
            n.send("<r xmlns='urn:xmpp:sm:3'/>")
            ack = n.expect(r"<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>").group(0)
            n.close()
            return out, rest + ack
        out, rest = await asyncio.to_thread(resume)
        assert out.ok and out.jid == jid, out.xml  # same session, same full JID
        assert re.search(r"<resumed xmlns='urn:xmpp:sm:3' h='0' previd='[^']+'/>", out.xml)
        assert "<bound" not in out.xml  # resumed, so not bound again
        bodies = re.findall(r"<body>(x\d)</body>", rest)
        assert bodies == ["x2", "x3", "x4"], rest
        # Each comes again with the time the server first sent it (XEP-0203), x4 included,
        # which arrived while nobody was connected: the client shows when they arrived.
        assert len(re.findall(r"</body>.*?<delay xmlns='urn:xmpp:delay' from='localhost' "
                              r"stamp='[-0-9T:.]+Z'/>", rest)) == 3, rest
    finally:
        await disconnect(bob)


async def test_resume_unknown_id_fails_and_binds(server: Server) -> None:
    def run() -> Any:
        c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
        c.features()
        out = c.plain("alice", "secret", "<resume xmlns='urn:xmpp:sm:3' h='0' previd='nope'/>"
                      + bind2("raw"))
        c.close()
        return out
    out = await asyncio.to_thread(run)
    assert out.ok
    assert "<failed xmlns='urn:xmpp:sm:3'><item-not-found" in out.xml
    assert "<bound xmlns='urn:xmpp:bind:0'/>" in out.xml


async def test_a_resumed_stream_is_active_and_keeps_presence_in_order(tmp_path: Path) -> None:
    # XEP-0352 §4.2: "A stream always begins in 'active' state", and since 0.2.1 the CSI
    # state is not restored when a stream is resumed (XEP-0198 §5). What CSI held back when
    # the connection died goes to the resumption buffer ahead of what arrives later: a
    # contact's older presence never overtakes their newer one.
    async with running_server(tmp_path, modules=modules_toml()) as server:
        alice, bob = await _phone_with_sm_and_desk(server)
        phone = "alice@localhost/phone"
        shows: list[str] = []
        alice.add_event_handler("presence", lambda p: p["from"] == "bob@localhost/desk"
                                and shows.append(p["show"] or "available"))
        chat_states: list[str] = []
        alice.add_event_handler("chatstate", lambda m: chat_states.append(m["chat_state"]))
        alice.register_plugin("xep_0085")
        resumed = asyncio.get_running_loop().create_future()
        alice.add_event_handler("session_resumed",
                                lambda _: resumed.done() or resumed.set_result(True))
        try:
            alice.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
            await eventually(lambda: server.modules["mod_csi"]._state(
                _session(server, phone)).inactive)
            bob.send_presence(pto=phone, pshow="away")
            await eventually(lambda: len(_session(server, phone)
                                         .module_state["mod_csi"].queue) == 1)
            await _kill(alice)
            await eventually(lambda: _state(server, phone) == C2SState.RESUME_SESSION)
            bob.send_presence(pto=phone, pshow="chat")
            alice.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
            await asyncio.wait_for(resumed, 10)
            await eventually(lambda: shows == ["away", "chat"])
            # active again: a chat state is not held for a later flush
            bob.send_raw(f"<message to='{phone}' type='chat'><composing "
                         "xmlns='http://jabber.org/protocol/chatstates'/></message>")
            await eventually(lambda: chat_states == ["composing"], timeout=2)
            alice.send_raw("<active xmlns='urn:xmpp:csi:0'/>")
            await asyncio.sleep(0.3)
            assert shows == ["away", "chat"]
        finally:
            await disconnect(alice, bob)


async def test_resuming_before_the_old_connection_is_noticed_dead_is_active_too(
        server: Server) -> None:
    # A phone moving from Wi-Fi to mobile data resumes (XEP-0198 §5) while its old TCP
    # connection still looks open: the old stream never suspended. The resumed stream is
    # active all the same (XEP-0352: the CSI state is not restored) and gets what was held.
    c, sm_id = await asyncio.to_thread(
        _sm_login, server, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
                           "<inactive xmlns='urn:xmpp:csi:0'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        bob.send_raw(f"<message to='{jid}' type='chat'><composing "
                     "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await eventually(lambda: len(_session(server, jid).module_state["mod_csi"].queue) == 1)

        def resume() -> str:
            n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            n.features()
            out = n.plain("alice", "secret", f"<resume xmlns='urn:xmpp:sm:3' h='0' "
                          f"previd='{sm_id}'/>" + bind2("raw"))
            assert "<resumed " in out.xml, out.xml
            held = n.expect(r"<composing ", 2.0).group(0)
            n.send("<message to='bob@localhost/desk' type='chat'><body>ok</body></message>")
            return held
        assert await asyncio.to_thread(resume)
        await bob.next_message()
        bob.send_raw(f"<message to='{jid}' type='chat'><paused "
                     "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await eventually(lambda: _session(server, jid).module_state["mod_csi"].queue == [])
        assert not _session(server, jid).module_state["mod_csi"].inactive
    finally:
        c.close()
        await disconnect(bob)


# -- misbehaving counters, a second stream, enabling too early (raw XML) -----------------------


async def test_acks_with_nonsense_or_too_high_h_end_the_stream(server: Server) -> None:
    # XEP-0198 §6: an 'h' above what was sent ends the stream with undefined-condition and
    # <handled-count-too-high/>; an 'h' that is no xs:unsignedInt (§9) is MongooseIM's
    # policy-violation. Python's int() would have read '1_0' as 10.
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        c, _ = await asyncio.to_thread(_sm_login, server, "<enable xmlns='urn:xmpp:sm:3'/>")
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        bob.send_message(mto=jid, mbody="one", mtype="chat")

        def too_high() -> str:
            c.expect(r"<body>one</body>")
            c.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
            return c.read_until_closed()
        error = await asyncio.to_thread(too_high)
        assert re.search(r"<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:"
                         r"xmpp-streams'/>.*<handled-count-too-high xmlns='urn:xmpp:sm:3' "
                         r"h='2' send-count='1'/></stream:error>", error), error

        def nonsense() -> str:
            n, _ = _sm_login(server, "<enable xmlns='urn:xmpp:sm:3'/>")
            n.send("<a xmlns='urn:xmpp:sm:3' h='1_0'/>")
            return n.read_until_closed()
        error = await asyncio.to_thread(nonsense)
        assert "<stream:error><policy-violation " in error, error
    finally:
        await disconnect(bob)


async def test_resume_with_h_too_high_ends_that_stream_and_the_session_still_waits(
        server: Server) -> None:
    c, sm_id = await asyncio.to_thread(
        _sm_login, server, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        bob.send_message(mto=jid, mbody="kept", mtype="chat")
        await asyncio.to_thread(c.expect, r"<body>kept</body>")
        c.close()
        await eventually(lambda: _state(server, jid) == C2SState.RESUME_SESSION)

        def resume(h: int) -> str:
            n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            n.features()
            n.send(authenticate_xml("PLAIN", b"\0alice\0secret", inline=(
                f"<resume xmlns='urn:xmpp:sm:3' h='{h}' previd='{sm_id}'/>" + bind2("raw"))))
            if h > 1:
                return n.read_until_closed()
            out = n.expect(r"<success .*?</success>.*?<body>kept</body>").group(0)
            n.close()
            return out
        # XEP-0198 §6: one stanza was sent, the client claims 3: that stream ends...
        error = await asyncio.to_thread(resume, 3)
        assert "<success" not in error, error
        assert "<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='1'/>" \
            in error, error
        # ... and the session is untouched: a resumption with the right count gets it all.
        assert _state(server, jid) == C2SState.RESUME_SESSION
        assert "<resumed " in await asyncio.to_thread(resume, 0)
    finally:
        await disconnect(bob)


async def test_resuming_while_the_old_stream_is_open_tells_it_conflict(server: Server) -> None:
    # XEP-0198 §5: "If the former stream is resumed and the server still has the stream for
    # the previously-identified session open at this time, the server SHOULD send a
    # 'conflict' stream error and close that stream." A phone's second app instance, or
    # the Wi-Fi connection still open when mobile data resumed, learns it was replaced.
    old, sm_id = await asyncio.to_thread(
        _sm_login, server, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")

    def resume() -> tuple[str, str]:
        n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
        n.features()
        out = n.plain("alice", "secret", f"<resume xmlns='urn:xmpp:sm:3' h='0' "
                      f"previd='{sm_id}'/>" + bind2("raw"))
        n.close()
        return out.xml, old.read_until_closed()
    new, closed = await asyncio.to_thread(resume)
    assert "<resumed " in new, new
    assert "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in closed, \
        closed


async def test_enable_before_binding_and_resume_after_fail_and_the_stream_goes_on(
        server: Server) -> None:
    # XEP-0198 §3: the server "SHALL enforce this order and return a <failed/> element"
    # (Example 5, unexpected-request), not end the stream; after binding, <enable/> works.
    def run() -> tuple[str, str]:
        c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
        c.features()
        assert c.plain("alice", "secret").ok  # SASL2 without Bind 2: features follow
        c.expect(r"</stream:features>")
        c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        failed = c.expect(r"<failed xmlns='urn:xmpp:sm:3'>.*?</failed>").group(0)
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>later</resource></bind></iq>")
        c.expect(r"<jid>")
        c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        enabled = c.expect(r"<enabled [^>]*>").group(0)
        # bound: a <resume/> comes too late (§5), also <failed/>, and the stream goes on
        c.send("<resume xmlns='urn:xmpp:sm:3' h='0' previd='x'/><r xmlns='urn:xmpp:sm:3'/>")
        late = c.expect(r"<failed xmlns='urn:xmpp:sm:3'>.*?</failed><a [^>]*>").group(0)
        c.close()
        return failed + late, enabled
    failed, enabled = await asyncio.to_thread(run)
    assert failed.count("<unexpected-request ") == 2, failed
    assert "resume='true'" in enabled, enabled


async def test_connection_lost_during_an_inline_resumption_leaves_the_session_waiting(
        server: Server) -> None:
    # A phone resumes inline (XEP-0388 + XEP-0198) and loses its network while the server
    # still works on the <authenticate/> (a token written to PostgreSQL, an account looked
    # up in LDAP). The stream reads nothing during that step, so the loss shows when the
    # <success/> is written: the session, taken over meanwhile, waits again with what it
    # holds (the unacknowledged message) for the next attempt.
    c, sm_id = await asyncio.to_thread(
        _sm_login, server, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    bob = await connect(server, "bob@localhost/desk", "secret")
    slow = asyncio.Event()
    reached = asyncio.Event()

    async def slow_storage(acc: list[Any], c2s: Any, request: Any) -> list[Any]:
        reached.set()
        await slow.wait()
        return acc
    server.hooks.add(H.SASL2_SUCCESS, slow_storage, 80)  # between FAST (70) and resumption
    try:
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        bob.send_message(mto=jid, mbody="held", mtype="chat")
        await asyncio.to_thread(c.expect, r"<body>held</body>")
        c.close()
        await eventually(lambda: _state(server, jid) == C2SState.RESUME_SESSION)

        def resume_and_vanish() -> None:
            n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            n.features()
            n.send(authenticate_xml("PLAIN", b"\0alice\0secret", inline=(
                f"<resume xmlns='urn:xmpp:sm:3' h='0' previd='{sm_id}'/>" + bind2("raw"))))
            n.close()
        await asyncio.to_thread(resume_and_vanish)
        await asyncio.wait_for(reached.wait(), 5)
        await asyncio.sleep(0.2)  # the server notices the connection is gone
        server.hooks.remove(H.SASL2_SUCCESS, slow_storage)
        old = _session(server, jid)
        slow.set()
        # The new stream took the session over, failed to write its <success/>: the
        # session (now the new stream's) waits again.
        await eventually(lambda: _session(server, jid) is not old
                         and _state(server, jid) == C2SState.RESUME_SESSION)

        def resume() -> str:
            n = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
            n.features()
            out = n.plain("alice", "secret", f"<resume xmlns='urn:xmpp:sm:3' h='0' "
                          f"previd='{sm_id}'/>" + bind2("raw"))
            assert "<resumed " in out.xml, out.xml
            held = n.expect(r"<body>held</body>").group(0)
            n.close()
            return held
        assert await asyncio.to_thread(resume)
    finally:
        slow.set()
        await disconnect(bob)


async def test_the_client_max_shortens_the_wait_for_resumption(server: Server) -> None:
    # XEP-0198 §5: <enable max=.../> is the client's preferred longest wait. The server
    # (resume_timeout 600 here) waits no longer than asked: the message then goes offline.
    def login() -> tuple[Sasl2Client, str]:
        c = Sasl2Client(server.tls_port, direct_tls=True)  # type: ignore[attr-defined]
        c.features()
        out = c.plain("alice", "secret", bind2(
            "raw", "<enable xmlns='urn:xmpp:sm:3' resume='true' max='1'/>"))
        return c, out.xml
    c, xml = await asyncio.to_thread(login)
    assert re.search(r"<enabled [^>]*max='1'", xml), xml
    bob = await connect(server, "bob@localhost/desk", "secret")
    try:
        jid = next(str(s.jid) for s in server.sessions if s.jid.local == "alice")
        c.close()
        await eventually(lambda: _state(server, jid) == C2SState.RESUME_SESSION)
        bob.send_message(mto=jid, mbody="later", mtype="chat")
        await eventually(lambda: _session(server, jid) is None, timeout=3)

        async def stored() -> bool:
            offline = server.modules["mod_offline"].store
            return await offline.count_offline("localhost", "alice") == 1  # type: ignore[no-any-return]
        await eventually(stored)
    finally:
        await disconnect(bob)


async def test_an_unresumed_session_gives_a_bare_jid_message_only_to_who_missed_it(
        tmp_path: Path) -> None:
    # RFC 6121 §8.5.2.1.1: a message to the bare JID reaches every available resource, the
    # phone waiting for resumption included (it holds it). When nobody resumes, the desk
    # that was there has it already (before: a second copy); a laptop that came online
    # since gets it (XEP-0198 §5: as if sent to an unavailable resource now).
    modules = modules_toml().replace("[modules.mod_stream_management]",
                                     "[modules.mod_stream_management]\nresume_timeout = 1")
    async with running_server(tmp_path, modules=modules) as server:
        alice, bob = await _phone_with_sm_and_desk(server)
        desk = await connect(server, "alice@localhost/desk", "secret")
        laptop = None
        try:
            desk.send_presence()
            # The desk is available once the server has processed its presence (with a
            # database that answers later than at once, after what bob sends next).
            await eventually(lambda: _session(server, "alice@localhost/desk").available)
            await _kill(alice)
            await eventually(lambda: _state(server, "alice@localhost/phone")
                             == C2SState.RESUME_SESSION)
            bob.send_message(mto="alice@localhost", mbody="to-bare", mtype="chat")
            assert await _collect(desk, 1) == ["to-bare"]
            laptop = await connect(server, "alice@localhost/laptop", "secret")
            laptop.send_presence()
            assert await _collect(laptop, 1) == ["to-bare"]  # the phone's, at its end
            await _no_more(desk, 1.5)
            assert _session(server, "alice@localhost/phone") is None
        finally:
            await disconnect(desk, bob, *([laptop] if laptop else []))
            with contextlib.suppress(Exception):
                alice.abort()
