"""The built-in web client in a real browser: Debian's chromium, driven by playwright-core
(npm, no browser download), opens /chat, logs in with Converse.js over WebSocket, sends a
message that a slixmpp user on c2s receives and answers, sees the answer in the page, and saves
a screenshot in the test's folder.

Skipped with a reason when chromium or the npm packages are missing, except under CI=true
(`make webclient` fetches them; `.ci/install-peers` installs chromium)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import connect, disconnect, free_port
from tests.web.conftest import web_server

WEBCLIENT = Path(__file__).parents[2] / "webclient" / "node_modules"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).is_file():
        return "chromium is not installed (Debian package chromium)"
    for package in ("converse.js", "playwright-core"):
        if not (WEBCLIENT / package).is_dir():
            return f"{package} missing: run `make webclient`"
    return None


_MISSING = _missing()
if _MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"the web client test cannot run under CI: {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

CHAT = '[[listen.http.handlers.mod_conversejs]]\nhost = "_"\npath = "/chat"\n'
# PEP (XEP-0163), as in the embedded default: where Converse keeps its OMEMO device list.
PEP = "[modules.mod_caps]\n[modules.mod_pubsub]\n"


async def test_converse_logs_in_and_chats_with_a_slixmpp_user(tmp_path: Path) -> None:
    async with web_server(tmp_path, handlers=CHAT, modules_extra=PEP) as server:
        bob = await connect(server, "bob@localhost/c2s", "secret")
        bob.send_presence()  # available: a message to bob@localhost reaches this resource
        bob.add_event_handler("message", lambda m: m["body"] and m.reply(
            "echo: " + m["body"]).send())
        shot = tmp_path / "conversejs.png"
        port = server.http_port  # type: ignore[attr-defined]
        proc = await asyncio.create_subprocess_exec(
            "node", str(Path(__file__).with_name("conversejs.mjs")),
            str(WEBCLIENT / "playwright-core"),
            f"http://localhost:{server.http_port}/chat",  # type: ignore[attr-defined]
            "alice@localhost", "secret", "bob@localhost", str(shot),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        received = [m["body"] for m in list(bob.messages._queue) if m["body"]]  # type: ignore[attr-defined]
        await disconnect(bob)
    assert out, err.decode()[-2000:]
    r: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in r, r
    assert r["reply"] == "echo: hello from converse"
    assert received == ["hello from converse"]
    assert shot.stat().st_size > 10_000  # the page as the user saw it
    # OMEMO (XEP-0384) works in the page: its WebAssembly module is found next to Converse's
    # other files, not at the root of the origin (where nothing is served).
    assert r["wasm"] == {"url": f"http://localhost:{port}/chat/dist/curve25519_compiled.wasm",
                         "status": 200}, r["wasm"]
    assert r["omemoErrors"] == [], r["omemoErrors"]


async def test_converse_over_bosh_logs_in_and_chats(tmp_path: Path) -> None:
    # The same page with no WebSocket endpoint: Converse.js (Strophe.js underneath) speaks
    # BOSH (XEP-0124/XEP-0206) to /http-bind: session creation, SASL, restart, bind, a long
    # poll answered by bob's reply.
    port = free_port()  # a listener of its own: the page's only endpoint is BOSH
    listener = (f'[[listen.http]]\nport = {port}\nip_address = "127.0.0.1"\n' + CHAT
                + '[[listen.http.handlers.mod_bosh]]\nhost = "_"\npath = "/http-bind"\n')
    async with web_server(tmp_path, extra=listener, modules_extra=PEP) as server:
        from suricate.net.http.bosh import BoshEndpoint

        endpoint = next(r.handler for http in server.http_listeners for r in http.routes
                        if isinstance(r.handler, BoshEndpoint))
        bosh_users: set[str] = set()

        async def watch() -> None:  # who logs in through BOSH
            while True:
                for session in list(endpoint.sessions.values()):
                    jid = getattr(session.handler, "jid", None)
                    if jid is not None:
                        bosh_users.add(f"{jid.local}@{jid.domain}")
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        bob = await connect(server, "bob@localhost/c2s", "secret")
        bob.send_presence()
        bob.add_event_handler("message", lambda m: m["body"] and m.reply(
            "echo: " + m["body"]).send())
        proc = await asyncio.create_subprocess_exec(
            "node", str(Path(__file__).with_name("conversejs.mjs")),
            str(WEBCLIENT / "playwright-core"),
            f"http://localhost:{port}/chat",
            "alice@localhost", "secret", "bob@localhost", str(tmp_path / "bosh.png"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        watcher.cancel()
        received = [m["body"] for m in list(bob.messages._queue) if m["body"]]  # type: ignore[attr-defined]
        await disconnect(bob)
    assert out, err.decode()[-2000:]
    r: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in r, r
    assert r["reply"] == "echo: hello from converse"
    assert received == ["hello from converse"]
    assert bosh_users == {"alice@localhost"}
