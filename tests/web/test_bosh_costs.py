"""What a BOSH request costs the server (docs/performance.md, "BOSH"): no timer armed per
request, the common bodies not parsed into elements and serialized again before the C2S
parses them, several stanzas of a request fed to the C2S at once, no timeout armed to read a
body that came with the headers. The figures are counts, not times."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from suricate.net.http import bosh
from suricate.net.http import web as http_web
from suricate.xml import ns
from suricate.xml.parser import StreamParser
from tests.web.conftest import web_server
from tests.web.test_bosh import BOSH, HTTPBIND
from tests.web.test_bosh_corners import available_session

HEADER = (f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}' to='localhost' "
          "version='1.0'>").encode()


async def test_a_busy_session_arms_no_timer_and_builds_no_element_per_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with web_server(tmp_path, handlers=BOSH) as server, \
            aiohttp.ClientSession() as http:
        c, jid = await available_session(http, server)

        loop = asyncio.get_running_loop()
        armed: list[Any] = []
        for name in ("call_at", "call_later"):
            real = getattr(loop, name)

            def counting(when: float, callback: Any, *args: Any, _real: Any = real,
                         **kw: Any) -> Any:
                if isinstance(getattr(callback, "__self__", None), bosh.BoshSession):
                    armed.append(callback)
                return _real(when, callback, *args, **kw)

            monkeypatch.setattr(loop, name, counting)
        built: list[int] = []

        class CountingParser(StreamParser):
            def __init__(self, *args: Any, **kw: Any) -> None:
                built.append(1)
                super().__init__(*args, **kw)

        monkeypatch.setattr(bosh, "StreamParser", CountingParser)
        slow_reads: list[int] = []
        real_read_body = http_web.read_body

        async def counting_read_body(request: Any) -> bytes | None:
            slow_reads.append(1)
            return await real_read_body(request)

        monkeypatch.setattr(http_web, "read_body", counting_read_body)
        feeds: list[bytes] = []
        real_feed = bosh.BoshSession._feed

        def counting_feed(self: bosh.BoshSession, data: bytes) -> None:
            feeds.append(data)
            real_feed(self, data)

        monkeypatch.setattr(bosh.BoshSession, "_feed", counting_feed)

        rounds = 20
        received = 0
        for i in range(rounds):
            # one request held, a second one with two messages to ourselves (Converse.js's
            # way): the held one is answered with them
            poll = asyncio.ensure_future(c.send())
            await asyncio.sleep(0.01)
            c.rid += 1
            sent = asyncio.ensure_future(c.post(
                f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'>" + "".join(
                    f"<message xmlns='jabber:client' to='{jid}' type='chat' id='m{i}-{k}'>"
                    f"<body>round {i}</body></message>" for k in range(2)) + "</body>"))
            got = (await asyncio.wait_for(poll, 5)) + (await asyncio.wait_for(sent, 5))
            while got.count("</message>") < 2:
                got += await asyncio.wait_for(c.send(), 5)
            received += got.count("</message>")
        assert received == 2 * rounds
        # Before: a 'wait' timer per request and an inactivity timer per response (120 here).
        assert len(armed) <= 3, armed
        # Before: a StreamParser per request to split each body into elements (40 here).
        assert built == []
        # Before: a feed per stanza (40 here); now one per request with payloads.
        assert len([f for f in feeds if b"<message" in f]) == rounds
        # Before: asyncio.wait_for (a task and a timer) to read each body (40 here).
        assert slow_reads == []


BODIES = [
    # what Strophe / Converse.js send
    f"<body rid='5' sid='s1' xmlns='{HTTPBIND}'/>",
    f"<body rid='5' sid='s1' xmlns='{HTTPBIND}'><message xmlns='jabber:client' to='a@b' "
    "type='chat' id='x'><body>Hi &amp; &lt;there&gt; \u00e9</body><active "
    "xmlns='http://jabber.org/protocol/chatstates'/></message>\n<presence "
    "xmlns='jabber:client'><show>away</show></presence></body>",
    f"<body rid='5' sid='s1' xmlns='{HTTPBIND}'><iq xmlns='jabber:client' type='get' id='1'>"
    "<query xmlns='jabber:iq:roster' xmlns:x='urn:x' x:y='1'><x:item/></query></iq></body>",
    f"<body sid=\"s1\" rid=\"6\" xmlns=\"{HTTPBIND}\" type='terminate'>"
    "<presence xmlns='jabber:client' type='unavailable'/></body>",
    f"<body rid='5' sid='a\"b>c' pause='10' xmlns='{HTTPBIND}' />\n",
    # others: the full parser's way (or its error) unless plain gives the same
    f"<body rid='5' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'/>",
    f"<body rid='5' xml:lang='en' xmlns='{HTTPBIND}'/>",
    f"<body rid='5' xmlns='{HTTPBIND}'><message to='x'/></body>",
    f"<body rid='5' xmlns='{HTTPBIND}'><message xmlns='jabber:client'><y:z/></message></body>",
    f"<body rid='5' xmlns='{HTTPBIND}' xmlns:c='jabber:client'><c:message/></body>",
    f"<body rid='5' xmlns='{HTTPBIND}'>text<message xmlns='jabber:client'/></body>",
    f"<body rid='5' rid='6' xmlns='{HTTPBIND}'/>",
    f"<body rid='5' sid='a&amp;b\tc' xmlns='{HTTPBIND}'/>",
    f"<?xml version='1.0'?><body rid='5' xmlns='{HTTPBIND}'/>",
    f"<body rid='5' xmlns='{HTTPBIND}'><!-- c --></body>",
    "<body rid='5' xmlns='urn:other'/>",
    f"<body rid='5' xmlns='{HTTPBIND}'><message xmlns='jabber:client'></body>",
]


def _full(raw: bytes) -> tuple[dict[str, str], list[bytes]] | str:
    plain, bosh._parse_plain = bosh._parse_plain, lambda raw: None  # type: ignore[assignment]
    try:
        return bosh._parse_body(raw)
    except bosh.XMLStreamError as err:
        return f"error {err.condition}"
    finally:
        bosh._parse_plain = plain  # type: ignore[assignment]


def _as_c2s(children: list[bytes]) -> list[bytes]:
    """The elements the C2S parser makes of ``children`` in its stream, serialized."""
    parser = StreamParser()
    parser.feed(HEADER)
    return [e.to_bytes(ns.CLIENT) for child in children for e in parser.feed(child)
            if hasattr(e, "to_bytes")]


@pytest.mark.parametrize("body", BODIES)
def test_a_plain_body_gives_the_c2s_what_the_full_parse_gives(body: str) -> None:
    raw = body.encode()
    plain = bosh._parse_plain(raw)
    full = _full(raw)
    if BODIES.index(body) < 5:
        assert plain is not None, body  # the bodies of Strophe: no StreamParser
    if plain is None:  # the full parse decides (and reports what is wrong)
        return
    assert not isinstance(full, str), full  # a malformed body is never taken as plain
    assert plain[0] == full[0]
    assert _as_c2s(plain[1]) == _as_c2s(full[1])
    assert len(plain[1]) == len(full[1])


def test_splitting_a_plain_body_leaves_no_cycle_for_the_collector() -> None:
    # The parser's handlers close over the parser: without breaking that, every request left
    # a cycle (16 objects) for the cyclic garbage collector.
    gc.collect()
    gc.disable()
    try:
        for body in BODIES[:5]:
            assert bosh._parse_plain(body.encode()) is not None
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_a_held_request_keeps_nothing_of_its_body(tmp_path: Path) -> None:
    # An idle session is a request held for up to 'wait' (docs/performance.md, "BOSH"): one
    # coroutine frame of mod_bosh waits for its answer (handle_web's, not also serve's and
    # request's: about 300 bytes each), keeping neither the body's bytes nor its parsed
    # attributes and children (processed, they are of no more use); the held requests are a
    # list, not a deque (600 bytes more, empty).
    async with web_server(tmp_path, handlers=BOSH) as server, \
            aiohttp.ClientSession() as http:
        c, _ = await available_session(http, server)
        c.rid += 1
        poll = asyncio.ensure_future(c.post(  # an empty poll as Strophe.js sends it
            f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'></body>"))
        (session,) = [s for h in server.http_listeners for r in h.routes
                      if r.kind == "mod_bosh" for s in r.handler.sessions.values()]
        for _ in range(100):
            if session.held:
                break
            await asyncio.sleep(0.01)
        assert isinstance(session.held, list) and len(session.held) == 1
        kept: dict[str, Any] = {}
        waiting: list[str] = []
        for task in asyncio.all_tasks():
            coro: Any = task.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None)
                if frame is not None and frame.f_code.co_filename == bosh.__file__:
                    waiting.append(frame.f_code.co_name)
                    kept |= {f"{frame.f_code.co_name}.{k}": v for k, v in frame.f_locals.items()
                             if isinstance(v, (bytes, dict, list)) and k != "self"}
                coro = getattr(coro, "cr_await", None)
        assert waiting == ["handle_web"] and kept == {}
        poll.cancel()
