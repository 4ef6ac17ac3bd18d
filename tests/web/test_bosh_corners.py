"""BOSH (XEP-0124/XEP-0206) corner cases real clients hit, with a plain HTTP client that writes
the bodies itself against a real server: polling sessions (§12), the 'content' attribute
(§7.1), rid order (§14.2), terminate with payloads (§13), inactivity (§10), 'ack' (§9.1) and
stream management resumption across two BOSH sessions."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slixmpp import JID

from suricate.core import hibernation
from tests.e2e.harness import connect, disconnect, eventually
from tests.web.conftest import web_server
from tests.web.test_bosh import BOSH, HTTPBIND, Bosh

EMPTY = f"<body xmlns='{HTTPBIND}'/>"


async def create(c: Bosh, rid: int = 1000, **attrs: str) -> str:
    """The session creation request (§7.1); ``c.sid`` and ``c.rid`` follow its answer."""
    extra = "".join(f" {k.replace('_', ':')}='{v}'" for k, v in attrs.items())
    created = await c.post(f"<body xmlns='{HTTPBIND}' rid='{rid}' to='localhost' ver='1.6'"
                           f" xml:lang='en' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'"
                           f"{extra}/>")
    c.sid = re.search(r"sid='([^']+)'", created).group(1)  # type: ignore[union-attr]
    c.rid = rid
    return created


async def login(c: Bosh, resource: str = "web", until: str = "</iq>") -> str:
    """SASL PLAIN, restart (XEP-0206 §5), bind; for a polling session the answers come in
    later polls, so poll (one second apart, the 'polling' interval) until each is there."""
    creds = base64.b64encode(b"\0alice\0secret").decode()
    got = await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                       f"{creds}</auth>")
    got = await _poll_until(c, got, "<success")
    got = await c.send(xmpp_restart="true", xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
    got = await _poll_until(c, got, "urn:ietf:params:xml:ns:xmpp-bind")
    got = await c.send(f"<iq xmlns='jabber:client' type='set' id='b1'><bind "
                       f"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}"
                       f"</resource></bind></iq>")
    return await _poll_until(c, got, until)


async def available_session(http: aiohttp.ClientSession, server: Any) -> tuple[Bosh, str]:
    """A session held as Converse.js holds it (hold=1, wait=30), logged in as alice with its
    initial presence sent; and its full JID."""
    c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")
    await create(c, hold="1", wait="30")
    bound = await login(c)
    jid = re.search(r"<jid>([^<]+)</jid>", bound).group(1)  # type: ignore[union-attr]
    await c.send("<presence xmlns='jabber:client'/>")
    return c, jid


async def _poll_until(c: Bosh, got: str, what: str) -> str:
    for _ in range(10):
        if what in got:
            return got
        await asyncio.sleep(1.05)
        got = await c.send()
    raise AssertionError(f"{what!r} never came; last {got!r}")


async def test_polling_session_answers_at_once_and_refuses_polls_too_often(
        tmp_path: Path) -> None:
    # XEP-0124 §12: a client that cannot keep a request waiting asks for hold='0'; the
    # connection manager answers each request at once (requests='1'), says how often the
    # client may poll ('polling'), and ends the session with policy-violation when two empty
    # polls in a row come sooner than that and the first got nothing.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        start = loop.time()
        created = await create(c, hold="0", wait="30")
        assert loop.time() - start < 2
        assert "hold='0'" in created and "requests='1'" in created
        polling = int(re.search(r"polling='(\d+)'", created).group(1))  # type: ignore[union-attr]
        inactivity = int(re.search(r"inactivity='(\d+)'", created).group(1))  # type: ignore[union-attr]
        assert inactivity > polling  # §12: room for the polls
        await login(c)
        bob = await connect(server, "bob@localhost/c2s", "secret")
        await asyncio.sleep(polling + 0.05)
        start = loop.time()
        assert await c.send() == EMPTY  # nothing to say: answered at once, not after 'wait'
        assert loop.time() - start < 2
        bob.send_message(mto=JID("alice@localhost/web"), mbody="for the poller", mtype="chat")
        await asyncio.sleep(polling + 0.05)
        assert "<body>for the poller</body>" in await c.send()
        # a poll right after one that brought something is fine; the next one, right after
        # an empty answer, is too soon
        assert await c.send() == EMPTY
        assert "condition='policy-violation'" in await c.send()
        assert "condition='item-not-found'" in await c.send()  # the session is gone
        await disconnect(bob)


async def test_wait_zero_is_a_polling_session_too(tmp_path: Path) -> None:
    # XEP-0124 §7.1: 'wait' or 'hold' set to 0 prevents the connection manager from waiting;
    # §7.2: the 'wait' of the answer MUST NOT be more than the client's.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        created = await create(c, hold="1", wait="0")
        assert "wait='0'" in created and "requests='1'" in created
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.05)
        start = loop.time()
        assert await c.send() == EMPTY
        assert loop.time() - start < 0.5


async def test_content_attribute_sets_the_content_type_of_every_response(
        tmp_path: Path) -> None:
    # XEP-0124 §7.1: a client constrained to some Content-Type asks for it with 'content';
    # every response of the session MUST carry it. Without it: text/xml; charset=utf-8.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}/http-bind"  # type: ignore[attr-defined]
        body = (f"<body xmlns='{HTTPBIND}' rid='7' to='localhost' ver='1.6' wait='1' hold='1'"
                " content='text/plain; charset=utf-8'/>")
        async with http.post(url, data=body) as resp:
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            sid = re.search(r"sid='([^']+)'", await resp.text()).group(1)  # type: ignore[union-attr]
        async with http.post(url, data=f"<body xmlns='{HTTPBIND}' rid='8' sid='{sid}'/>") as resp:
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        body = f"<body xmlns='{HTTPBIND}' rid='70' to='localhost' ver='1.6' wait='1' hold='1'/>"
        async with http.post(url, data=body) as resp:
            assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"


async def test_ver_is_the_lower_of_ours_and_the_clients(tmp_path: Path) -> None:
    # XEP-0124 §7.2: 'ver' is the highest BOSH version we support or the client's, whichever
    # is lower; the minor number is an integer of its own (1.6 < 1.11 < 1.20).
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        for asked, answered in (("1.6", "1.6"), ("1.20", "1.11"), ("2.0", "1.11"),
                                ("1.x", "1.11")):
            created = await c.post(f"<body xmlns='{HTTPBIND}' rid='7' to='localhost'"
                                   f" ver='{asked}' wait='1' hold='1'/>")
            assert f" ver='{answered}'" in created, (asked, created)


async def test_rids_out_of_order_are_processed_in_order_and_terminate_payloads_first(
        tmp_path: Path) -> None:
    # XEP-0124 §14.2: requests that arrive out of order are forwarded in rid order. §13: the
    # payloads of the terminate request are forwarded before the session ends.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        await create(c, hold="1", wait="5")
        await login(c)
        bob = await connect(server, "bob@localhost/c2s", "secret")

        def msg(text: str) -> str:
            return (f"<message xmlns='jabber:client' to='bob@localhost/c2s' type='chat'>"
                    f"<body>{text}</body></message>")

        second = asyncio.ensure_future(c.post(
            f"<body xmlns='{HTTPBIND}' rid='{c.rid + 2}' sid='{c.sid}'>{msg('two')}</body>"))
        await asyncio.sleep(0.2)
        assert not second.done()
        first = asyncio.ensure_future(c.post(
            f"<body xmlns='{HTTPBIND}' rid='{c.rid + 1}' sid='{c.sid}'>{msg('one')}</body>"))
        c.rid += 2
        assert [(await bob.next_message())["body"] for _ in range(2)] == ["one", "two"]
        assert await asyncio.wait_for(first, 2) == EMPTY  # released by the next one (hold 1)
        # the directed presence bob got goes away with the session (RFC 6121 §4.6.3), after
        # the last message in the terminate body
        await c.send("<presence xmlns='jabber:client' to='bob@localhost/c2s'/>")
        assert (await bob.next_presence())["type"] == "available"
        await asyncio.wait_for(second, 6)
        ended = await c.send(msg("bye") + "<presence xmlns='jabber:client' type='unavailable'/>",
                             type="terminate")
        assert ended.startswith(f"<body xmlns='{HTTPBIND}' type='terminate'")
        assert (await bob.next_message())["body"] == "bye"
        assert (await bob.next_presence())["type"] == "unavailable"
        await eventually(lambda: not [s for s in server.sessions if s.jid.local == "alice"])
        await disconnect(bob)


async def test_a_restart_when_none_is_due_ends_the_session_with_bad_request(
        tmp_path: Path) -> None:
    # XEP-0206 §5: the client asks for a stream restart after SASL success. Another one, in
    # an established session, used to become a stream header inside the stream: every stanza
    # after it was swallowed, unanswered, the session silently dead. It is a request we
    # cannot accept: bad-request (XEP-0124 §17.2), and the session ends.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        await create(c, hold="1", wait="1")
        await login(c)
        assert "condition='bad-request'" in await c.send(
            xmpp_restart="true", xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
        assert "condition='item-not-found'" in await c.send(
            "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        await eventually(lambda: not [s for s in server.sessions if s.jid.local == "alice"])


async def test_a_stream_error_is_the_content_of_the_terminate_body(tmp_path: Path) -> None:
    # XEP-0206, "remote-stream-error": the content of the terminate <body/> is a copy of the
    # content of the <stream:error/> (its condition and text as children of <body/>), not
    # the <stream:error/> element itself. Here: host-unknown at creation, conflict when the
    # same full JID logs in again (Strophe.js turns that one into its own 'conflict').
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        ended = await c.post(f"<body xmlns='{HTTPBIND}' rid='9' to='nowhere.example'"
                             " ver='1.6' wait='1' hold='1'/>")
        assert re.fullmatch(
            f"<body xmlns='{HTTPBIND}' type='terminate' condition='remote-stream-error'"
            "[^>]*><host-unknown xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></body>",
            ended), ended
        await create(c, hold="1", wait="5")
        await login(c)
        held = asyncio.ensure_future(c.send())
        await asyncio.sleep(0.2)
        d = Bosh(http, c.url)
        await create(d, rid=3000, hold="1", wait="5")
        await login(d)  # the same resource: the first session ends with conflict
        ended = await asyncio.wait_for(held, 4)
        assert "condition='remote-stream-error'" in ended
        assert '><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>' in ended
        assert "<stream:error" not in ended


async def test_inactivity_ends_the_session_and_its_presence_even_after_a_replay(
        tmp_path: Path) -> None:
    # XEP-0124 §10: with no request held for 'inactivity' seconds the session ends (its
    # presence with it, RFC 6121 §4.6.3). A client that asked for a response again (§14.3)
    # and went away is no exception.
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "inactivity = 1\n") as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        bob = await connect(server, "bob@localhost/c2s", "secret")
        await create(c, hold="1", wait="1")
        await login(c)
        await c.send("<presence xmlns='jabber:client' to='bob@localhost/c2s'/>")
        assert (await bob.next_presence())["type"] == "available"
        last = await c.send()  # after 'wait'; nothing is held from here on
        assert await c.post(f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'/>") == last
        assert (await bob.next_presence(timeout=4))["type"] == "unavailable"
        assert "condition='item-not-found'" in await c.send()
        await disconnect(bob)


async def test_pause_answers_every_held_request_and_stretches_inactivity_once(
        tmp_path: Path) -> None:
    # XEP-0124 §10: a 'pause' within 'maxpause' is answered at once, with every held request
    # (no payloads), and the session waits that long instead of 'inactivity'; the next
    # request sets inactivity back to normal.
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "inactivity = 1\nmax_pause = 10\n") as server, \
            aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        created = await create(c, hold="1", wait="5")
        assert "maxpause='10'" in created and "inactivity='1'" in created
        await login(c)
        held = asyncio.ensure_future(c.send())
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await c.send(pause="3") == EMPTY
        assert await asyncio.wait_for(held, 1) == EMPTY
        assert loop.time() - start < 1
        await asyncio.sleep(2)  # longer than 'inactivity', shorter than the pause
        assert 'type="result"' in await c.send(
            "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        await asyncio.sleep(1.6)  # back to 'inactivity'
        assert "condition='item-not-found'" in await c.send()


async def test_a_request_ahead_of_a_gap_that_never_fills_does_not_keep_the_session(
        tmp_path: Path) -> None:
    # XEP-0124 §14.2: a request ahead of a gap waits for the missing rid, but it is not a
    # held request: if the gap never fills, the session ends after 'inactivity' (§10) and the
    # waiting request learns it.
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "inactivity = 1\n") as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        await create(c, hold="1", wait="1")
        await c.send()  # answered after 'wait': nothing held
        ahead = await asyncio.wait_for(
            c.post(f"<body xmlns='{HTTPBIND}' rid='{c.rid + 2}' sid='{c.sid}'/>"), 4)
        assert "condition='item-not-found'" in ahead


async def test_acks_on_every_response_including_those_after_wait(tmp_path: Path) -> None:
    # XEP-0124 §9.1: once the creation response carries 'ack', every response carries the
    # highest rid received with all lower ones, except when that is the rid it answers.
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "server_acks = true\n") as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        created = await create(c, hold="2", wait="1", ack="1")
        assert "ack='1000'" in created and "requests='3'" in created
        one = asyncio.ensure_future(c.post(f"<body xmlns='{HTTPBIND}' rid='1001' sid='{c.sid}'/>"))
        await asyncio.sleep(0.1)
        two = asyncio.ensure_future(c.post(f"<body xmlns='{HTTPBIND}' rid='1002' sid='{c.sid}'/>"))
        # both held; each answered empty after 'wait'
        assert await asyncio.wait_for(one, 3) == f"<body xmlns='{HTTPBIND}' ack='1002'/>"
        assert await asyncio.wait_for(two, 3) == EMPTY


async def test_stream_management_resumes_a_bosh_session_in_another(tmp_path: Path) -> None:
    # XEP-0198 §5 over BOSH: the first BOSH session goes away (inactivity), its stream is
    # resumable; a second BOSH session resumes it and gets what came meanwhile.
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "inactivity = 1\n") as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        await create(c, hold="1", wait="1")
        await login(c)
        enabled = await c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        enabled = await _poll_until(c, enabled, "<enabled")
        previd = re.search(r"id=['\"]([^'\"]+)['\"]", enabled).group(1)  # type: ignore[union-attr]
        await c.send()
        bob = await connect(server, "bob@localhost/c2s", "secret")
        await asyncio.sleep(2.5)  # inactivity: the first BOSH session is gone, resumable
        bob.send_message(mto=JID("alice@localhost/web"), mbody="while away", mtype="chat")
        await asyncio.sleep(0.3)
        d = Bosh(http, c.url)
        await create(d, rid=5000, hold="1", wait="2")
        creds = base64.b64encode(b"\0alice\0secret").decode()
        assert "<success" in await d.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")
        assert "urn:xmpp:sm:3" in await d.send(xmpp_restart="true",
                                               xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
        resumed = await d.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
        resumed = await _poll_until(d, resumed, "while away")
        assert "<resumed" in resumed
        await disconnect(bob)


async def test_an_idle_bosh_session_hibernates_and_wakes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DESIGN §3: the C2S parser is most of an idle session's memory (about 20 of a BOSH
    # session's 43 KiB, bench/bosh_mem.py); an idle BOSH session drops it at the listener's
    # hibernation sweep, as c2s and WebSocket sessions do, with its request still held, and
    # makes a new one inside the same stream when a request brings stanzas.
    monkeypatch.setattr(hibernation, "MIN_SWEEP_SECONDS", 0.1)
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        await create(c, wait="30")
        await login(c)
        await c.send("<presence xmlns='jabber:client'/>")
        (endpoint,) = [r.handler for h in server.http_listeners for r in h.routes
                       if r.kind == "mod_bosh"]
        session = endpoint.sessions[c.sid]
        poll = asyncio.ensure_future(c.send())  # held
        await eventually(lambda: session.handler.parser is None)
        assert not poll.done()
        bob = await connect(server, "bob@localhost/c2s", "secret")
        bob.send_message(mto=JID("alice@localhost/web"), mbody="wake up", mtype="chat")
        assert "<body>wake up</body>" in await asyncio.wait_for(poll, 5)
        held = asyncio.ensure_future(c.send(
            "<message xmlns='jabber:client' to='bob@localhost/c2s' type='chat'>"
            "<body>I am up</body></message>"))
        assert (await bob.next_message())["body"] == "I am up"
        held.cancel()
        await disconnect(bob)
