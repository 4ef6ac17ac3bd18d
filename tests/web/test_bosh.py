"""XMPP over BOSH (XEP-0124/XEP-0206) end to end, with a client that writes the bodies itself:
session creation, SASL, restart, bind, a long poll answered by a message from a slixmpp user
on c2s, replay of a lost response, terminate, and the terminal conditions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import sys
from pathlib import Path

import aiohttp

from tests.e2e.harness import connect, disconnect
from tests.mobile.conftest import add_user
from tests.web.conftest import web_server

HTTPBIND = "http://jabber.org/protocol/httpbind"
BOSH = '[[listen.http.handlers.mod_bosh]]\nhost = "_"\npath = "/http-bind"\n'


class Bosh:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.rid, self.sid = http, url, 1000, ""

    async def post(self, body: str, rid: int | None = None) -> str:
        async with self.http.post(self.url, data=body.encode(),
                                  # every request on a new connection: churn as on mobiles
                                  headers={"Content-Type": "text/xml; charset=utf-8",
                                           "Connection": "close"}) as resp:
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
            return await resp.text()

    async def send(self, payload: str = "", **attrs: str) -> str:
        self.rid += 1
        extra = "".join(f" {k.replace('_', ':')}='{v}'" for k, v in attrs.items())
        return await self.post(f"<body xmlns='{HTTPBIND}' rid='{self.rid}' sid='{self.sid}'"
                               f"{extra}>{payload}</body>")


async def test_bosh_login_long_poll_replay_and_terminate(tmp_path: Path) -> None:
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n"
                          "max_pause = 10\n") as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        c = Bosh(http, base + "/http-bind")
        bob = await connect(server, "bob@localhost/c2s", "secret")

        created = await c.post(
            f"<body xmlns='{HTTPBIND}' content='text/xml; charset=utf-8' hold='1' rid='1000'"
            " to='localhost' ver='1.6' wait='5' xml:lang='en' xmpp:version='1.0'"
            " xmlns:xmpp='urn:xmpp:xbosh'/>")
        c.sid = re.search(r"sid='([^']+)'", created).group(1)  # type: ignore[union-attr]
        assert re.search(r"authid='\w+'", created) and "requests='2'" in created
        assert "wait='5'" in created and "xmpp:restartlogic='true'" in created
        assert "<mechanism>PLAIN</mechanism>" in created  # the stream features come with it
        # SASL, restart (XEP-0206 §5), bind: the same c2s engine as TCP
        creds = base64.b64encode(b"\0alice\0secret").decode()
        assert "<success" in await c.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>")
        assert "urn:ietf:params:xml:ns:xmpp-bind" in await c.send(
            xmpp_restart="true", xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
        bound = await c.send("<iq xmlns='jabber:client' type='set' id='b1'>"
                             "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        jid = re.search(r"<jid>([^<]+)</jid>", bound).group(1)  # type: ignore[union-attr]
        assert jid.startswith("alice@localhost/")
        # one session, whatever the HTTP connections under it
        assert [str(s.jid) for s in server.sessions if s.jid.local == "alice"] == [jid]
        # a message out, in the body of a request
        assert await c.send("<message xmlns='jabber:client' to='bob@localhost/c2s' type='chat'>"
                            "<body>over bosh</body></message>") == f"<body xmlns='{HTTPBIND}'/>"
        assert (await bob.next_message())["body"] == "over bosh"
        # a long poll: held until the message for alice arrives
        poll = asyncio.ensure_future(c.send())
        await asyncio.sleep(0.3)
        assert not poll.done()
        bob.send_message(mto=jid, mbody="over tcp", mtype="chat")
        answered = await asyncio.wait_for(poll, 4)
        assert '<message xmlns="jabber:client"' in answered and "<body>over tcp</body>" in answered
        # XEP-0124 §14.3: the client lost that response and asks again with the same rid
        assert await c.post(f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'/>") == answered
        # XEP-0206 §4: a stanza in <body/> declares jabber:client, whatever its sender put in
        # its attribute values (" xmlns=" in an id is no declaration)
        poll = asyncio.ensure_future(c.send())
        await asyncio.sleep(0.1)
        bob.send_raw(f"<message to='{jid}' type='chat' id='a xmlns=b'><body>hi</body></message>")
        assert '<message xmlns="jabber:client" to=' in await asyncio.wait_for(poll, 4)
        # a pause longer than max_pause ends the session (XEP-0124 §10)
        assert "condition='policy-violation'" in await c.send(pause="3600")
        assert "condition='item-not-found'" in await c.send()  # the session is gone
        await disconnect(bob)


async def test_terminate_bad_request_and_cors(tmp_path: Path) -> None:
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        c = Bosh(http, base + "/http-bind")
        created = await c.post(f"<body xmlns='{HTTPBIND}' rid='1000' to='localhost' wait='1'"
                               " hold='1' ver='1.6'/>")
        c.sid = re.search(r"sid='([^']+)'", created).group(1)  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await c.send() == f"<body xmlns='{HTTPBIND}'/>"  # nothing to say: after wait
        assert 0.8 < loop.time() - start < 3
        # a rid outside the window (hold + 1 requests) ends the session: item-not-found
        c.rid += 5
        assert "condition='item-not-found'" in await c.send()
        created = await c.post(f"<body xmlns='{HTTPBIND}' rid='2000' to='localhost' wait='1'"
                               " hold='1' ver='1.6'/>")
        c.sid = re.search(r"sid='([^']+)'", created).group(1)  # type: ignore[union-attr]
        c.rid = 2000
        # the client ends the session; the server answers terminate, then knows it no more
        assert await c.send(type="terminate") == f"<body xmlns='{HTTPBIND}' type='terminate'/>"
        assert "condition='item-not-found'" in await c.send()
        # not XML, not a <body/>: bad-request
        assert "condition='bad-request'" in await c.post("hello")
        assert "condition='bad-request'" in await c.post("<body xmlns='jabber:client' rid='1'/>")
        # CORS preflight of a page on another origin; GET is refused
        async with http.options(c.url, headers={"Origin": "http://app.example",
                                                "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 200 and "POST" in r.headers["Access-Control-Allow-Methods"]
        async with http.get(c.url) as r:
            assert r.status == 405
        # discovery lists both endpoints (XEP-0156)
        async with http.get(base + "/.well-known/host-meta.json",
                            headers={"Host": "localhost"}) as r:
            links = json.loads(await r.text())["links"]
        assert {"rel": "urn:xmpp:alt-connections:xbosh",
                "href": "http://localhost/http-bind"} in links
        assert {"rel": "urn:xmpp:alt-connections:websocket",
                "href": "ws://localhost/ws-xmpp"} in links


async def test_a_request_sent_again_after_a_broken_connection_takes_the_held_ones_place(
        tmp_path: Path) -> None:
    # XEP-0124 §14.3: a client whose connection broke before the answer MAY send the same
    # request (same rid) again. The request was held, not answered yet: the copy waits in
    # its place and gets what the session has to say; the session goes on.
    async with web_server(tmp_path, handlers=BOSH) as server, aiohttp.ClientSession() as http:
        c = Bosh(http, f"http://127.0.0.1:{server.http_port}/http-bind")  # type: ignore[attr-defined]
        created = await c.post(f"<body xmlns='{HTTPBIND}' rid='1000' to='localhost' wait='5'"
                               " hold='1' ver='1.6' xmpp:version='1.0'"
                               " xmlns:xmpp='urn:xmpp:xbosh'/>")
        c.sid = re.search(r"sid='([^']+)'", created).group(1)  # type: ignore[union-attr]
        creds = base64.b64encode(b"\0alice\0secret").decode()
        await c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                     f"{creds}</auth>")
        await c.send(xmpp_restart="true", xmlns_xmpp="urn:xmpp:xbosh", to="localhost")
        await c.send("<iq xmlns='jabber:client' type='set' id='b1'><bind "
                     "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource>"
                     "</bind></iq>")
        c.rid += 1
        poll = f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'/>"
        with contextlib.suppress(asyncio.TimeoutError):  # the connection breaks
            await asyncio.wait_for(c.post(poll), 0.3)
        again = asyncio.ensure_future(c.post(poll))
        await asyncio.sleep(0.2)
        bob = await connect(server, "bob@localhost/c2s", "secret")
        bob.send_message(mto="alice@localhost/web", mbody="after the break", mtype="chat")
        assert "<body>after the break</body>" in await asyncio.wait_for(again, 4)
        # the session is alive: a ping round trip on the next rid
        assert 'type="result"' in await c.send("<iq xmlns='jabber:client' type='get' id='p'>"
                                               "<ping xmlns='urn:xmpp:ping'/></iq>")
        # The same for a request ahead of a gap in rids: the first copy is let go (empty),
        # the second waits for the gap to fill.
        ahead = f"<body xmlns='{HTTPBIND}' rid='{c.rid + 2}' sid='{c.sid}'/>"
        first = asyncio.ensure_future(c.post(ahead))
        await asyncio.sleep(0.2)
        second = asyncio.ensure_future(c.post(ahead))
        assert await asyncio.wait_for(first, 2) == f"<body xmlns='{HTTPBIND}'/>"
        # the gap fills: that request is answered at once (one is held at a time), the
        # copy is held
        assert await c.send() == f"<body xmlns='{HTTPBIND}'/>"
        bob.send_message(mto="alice@localhost/web", mbody="ahead", mtype="chat")
        assert "<body>ahead</body>" in await asyncio.wait_for(second, 4)
        await disconnect(bob)


async def test_behind_a_proxy_on_this_host_the_client_address_is_the_forwarded_one(
        tmp_path: Path) -> None:
    """As for mod_websockets: behind nginx every BOSH request comes from 127.0.0.1, and
    registration_timeout (one account per address per period) would let one visitor register
    for the whole site. The proxy's last X-Forwarded-For address names the client."""
    async def register(http: aiohttp.ClientSession, url: str, user: str, address: str) -> str:
        headers = {"Content-Type": "text/xml; charset=utf-8",
                   "X-Forwarded-For": f"203.0.113.9, {address}"}  # first: the client's say
        async with http.post(url, headers=headers, data=(
                f"<body xmlns='{HTTPBIND}' hold='1' rid='1000' to='localhost' ver='1.6' "
                "wait='5' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>").encode()) as resp:
            sid = re.search(r"sid='([^']+)'", await resp.text()).group(1)  # type: ignore
        async with http.post(url, headers=headers, data=(
                f"<body xmlns='{HTTPBIND}' rid='1001' sid='{sid}'><iq xmlns='jabber:client' "
                f"type='set' id='r'><query xmlns='jabber:iq:register'><username>{user}"
                "</username><password>a long passphrase</password></query></iq></body>"
        ).encode()) as resp:
            return await resp.text()

    async with web_server(tmp_path, handlers=BOSH, general_extra="registration_timeout = 600\n",
                          modules_extra="[modules.mod_bosh]\n") as server, \
            aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}/http-bind"  # type: ignore[attr-defined]
        assert 'type="result"' in await register(http, url, "carol", "192.0.2.1")
        assert 'type="result"' in await register(http, url, "dave", "192.0.2.2")
        assert "resource-constraint" in await register(http, url, "erin", "192.0.2.1")


async def test_no_message_is_lost_with_pairs_and_messages_in_flight(tmp_path: Path) -> None:
    # bench/bosh_check.py (docs/performance.md "BOSH under load"): sender/receiver pairs over
    # BOSH with SCRAM logins, each session keeping a request held and a second one for what
    # it sends; every message must arrive, once (the script exits 1 otherwise).
    async with web_server(tmp_path, handlers=BOSH, modules_extra="[modules.mod_bosh]\n") \
            as server:
        for i in range(10):
            await add_user(server, f"u{i}", "pw")
        root = Path(__file__).resolve().parents[2]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(root / "bench" / "bosh_check.py"), "--url",
            f"http://127.0.0.1:{server.http_port}/http-bind",  # type: ignore[attr-defined]
            "--pairs", "5", "--inflight", "4", "--seconds", "1", "--drain", "10",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out + err).decode()[-2000:]
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["sent"] >= 20 and result["lost"] == 0 and result["duplicates"] == 0
