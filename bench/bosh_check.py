"""BOSH (XEP-0124, XEP-0206) under load: is every message delivered?

``--pairs`` sender/receiver pairs over BOSH, each with ``--inflight`` messages outstanding (a
receiver that gets one makes its sender send the next), for ``--seconds``; then the senders
stop and the receivers drain. Every message sent must have arrived, once: the script prints
one JSON object (sent, received, duplicates, messages/s) and exits 1 on a loss.

    .venv/bin/python bench/bosh_check.py --url http://127.0.0.2:5280/http-bind --pairs 100 \
        --inflight 20 --seconds 10

The accounts are the bench's (u0, u1 ...: bench/run.py provisions them), logged in with
SCRAM-SHA-256 (bench/loadgen.py's client side). Each session asks for ``hold='1'`` and keeps
one request held by the server, a second one carrying what it sends (XEP-0124 §11: at most
``requests`` = 2 at a time), as browser clients do. aiohttp's client: not a throughput figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import BODY, DOMAIN, PASSWORD, _scram_final  # noqa: E402

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
_SID = re.compile(r"""\ssid=['"]([^'"]+)""")
_ID = re.compile(r"""<message[^>]*\sid=['"]m(\d+)['"]""")


class Session:
    """One BOSH session: requests in rid order, at most two outstanding (one held)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.rid = secrets.randbelow(2**40) + 1000
        self.sid = ""
        self.outstanding = 0
        self.pending: list[str] = []
        self.on_body: Any = None  # called with each response once the pump runs
        self.failed: BaseException | None = None
        self.running = False

    async def post(self, children: str = "", attrs: str = "") -> str:
        self.rid += 1
        sid = f" sid='{self.sid}'" if self.sid else ""
        body = f"<body xmlns='{HTTPBIND}' rid='{self.rid}'{sid}{attrs}>{children}</body>"
        async with self.http.post(self.url, data=body.encode(),
                                  headers={"Content-Type": "text/xml; charset=utf-8"}) as r:
            text = await r.text()
            if r.status != 200 or "type='terminate'" in text or 'type="terminate"' in text:
                raise ConnectionError(f"BOSH {r.status}: {text[:300]}")
            return text

    async def until(self, marker: str, children: str = "", attrs: str = "") -> str:
        """Send, then poll until ``marker`` has come (logging in: one request at a time)."""
        got = await self.post(children, attrs)
        while marker not in got:
            if "<failure" in got or "type='error'" in got or 'type="error"' in got:
                raise ConnectionError(got[:300])
            got += await self.post()
        return got

    # -- the pump: always one request held, a second one for what is to be sent ------------
    def send(self, stanzas: list[str]) -> None:
        self.pending.extend(stanzas)
        self.kick()

    def kick(self) -> None:
        while self.running and self.outstanding < 2 and (self.pending or not self.outstanding):
            children, self.pending = "".join(self.pending), []
            self.outstanding += 1
            asyncio.ensure_future(self._request(children))

    async def _request(self, children: str) -> None:
        try:
            text = await self.post(children)
        except BaseException as exc:  # noqa: BLE001 -- reported by the run
            self.failed = exc
            self.running = False
            return
        finally:
            self.outstanding -= 1
        if self.on_body is not None:
            self.on_body(text)
        self.kick()


async def login(http: aiohttp.ClientSession, url: str, user: str) -> tuple[Session, str]:
    s = Session(http, url)
    created = await s.post(attrs=f" to='{DOMAIN}' wait='60' hold='1' ver='1.11' "
                                 f"xml:lang='en' xmpp:version='1.0' xmlns:xmpp='{XBOSH}'")
    m = _SID.search(created)
    if m is None:
        raise ConnectionError(f"no sid: {created[:300]}")
    s.sid = m.group(1)
    if "</stream:features>" not in created and "<mechanisms" not in created:
        await s.until("<mechanisms")
    nonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={nonce}"
    auth = base64.b64encode(b"n,," + first_bare.encode()).decode()
    got = await s.until("</challenge>", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                        f"mechanism='SCRAM-SHA-256'>{auth}</auth>")
    challenge = got[got.index(">", got.index("<challenge")) + 1:got.index("</challenge>")]
    final, server_sig = _scram_final(first_bare, base64.b64decode(challenge), PASSWORD)
    got = await s.until("</success>", "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        f"{base64.b64encode(final).decode()}</response>")
    verifier = got[got.index(">", got.index("<success")) + 1:got.index("</success>")]
    if base64.b64decode(verifier) != b"v=" + base64.b64encode(server_sig):
        raise ConnectionError("bad server signature")
    await s.until("<bind", attrs=f" to='{DOMAIN}' xml:lang='en' xmpp:restart='true' "
                                 f"xmlns:xmpp='{XBOSH}'")
    got = await s.until("</jid>", "<iq xmlns='jabber:client' type='set' id='bind'><bind "
                                  "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench"
                                  "</resource></bind></iq>")
    jid = got[got.index("<jid>") + 5:got.index("</jid>")]
    await s.post("<presence xmlns='jabber:client'/>")
    return s, jid


async def run(a: argparse.Namespace) -> dict[str, Any]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                 timeout=aiohttp.ClientTimeout(total=90))
    sem = asyncio.Semaphore(a.parallel)

    async def one(i: int) -> tuple[Session, str]:
        async with sem:
            return await login(http, a.url, f"u{a.first + i}")

    conns = list(await asyncio.gather(*(one(i) for i in range(2 * a.pairs))))
    state = {"sending": True}
    sent = [0] * a.pairs
    seen: list[set[int]] = [set() for _ in range(a.pairs)]
    duplicates = 0

    def pair(i: int) -> None:
        nonlocal duplicates
        sender, _ = conns[2 * i]
        receiver, to = conns[2 * i + 1]

        def message() -> str:
            sent[i] += 1
            return (f"<message xmlns='jabber:client' to='{to}' type='chat' id='m{sent[i]}'>"
                    + BODY.decode() + "</message>")

        def on_body(text: str) -> None:
            nonlocal duplicates
            ids = [int(x) for x in _ID.findall(text)]
            for n in ids:
                if n in seen[i]:
                    duplicates += 1
                seen[i].add(n)
            if ids and state["sending"]:
                sender.send([message() for _ in ids])

        receiver.on_body = on_body
        sender.on_body = lambda text: None
        for s in (sender, receiver):
            s.running = True
            s.kick()
        sender.send([message() for _ in range(a.inflight)])

    for i in range(a.pairs):
        pair(i)
    t0 = time.monotonic()
    await asyncio.sleep(a.seconds)
    state["sending"] = False
    elapsed = time.monotonic() - t0
    deadline = time.monotonic() + a.drain
    while time.monotonic() < deadline and sum(map(len, seen)) < sum(sent):
        await asyncio.sleep(0.1)
    failed = [repr(s.failed)[:200] for s, _ in conns if s.failed is not None]
    for s, _ in conns:
        s.running = False
    received = sum(map(len, seen))
    await http.close()
    return {"sent": sum(sent), "received": received, "lost": sum(sent) - received,
            "duplicates": duplicates, "msgs_per_s": received / elapsed,
            "failed_sessions": len(failed), "first_failures": failed[:3]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--drain", type=float, default=30.0)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--parallel", type=int, default=50)
    a = p.parse_args()
    result = asyncio.run(run(a))
    print(json.dumps(result), flush=True)
    sys.exit(1 if result["lost"] or result["duplicates"] or result["failed_sessions"] else 0)


if __name__ == "__main__":
    main()
