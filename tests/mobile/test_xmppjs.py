"""xmpp.js (@xmpp/client 0.14 from npm) against Suricate: SASL2 + Bind 2 + FAST as a real
web/mobile client does it. The scenarios live in tests/js/scenarios.mjs; this side starts the
server, runs node, and checks what xmpp.js saw on the wire.

Skipped with a reason when node or the npm packages are missing, except under CI=true
(`make test` installs them with `npm ci --prefix tests/js`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from tests.e2e.harness import running_server
from tests.mobile.conftest import add_user, make_test_ca, modules_toml

JS_DIR = Path(__file__).parents[1] / "js"


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        return "npm packages missing: run `npm ci --prefix tests/js`"
    return None


_MISSING = _node_missing()
if _MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(f"xmpp.js tests cannot run under CI: {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


async def run_scenario(server: Server, tmp: Path, name: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["NODE_EXTRA_CA_CERTS"] = str(tmp / "certs" / "ca.crt")
    service = f"xmpps://localhost:{server.tls_port}"  # type: ignore[attr-defined]
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / "scenarios.mjs"), name, service, "alice", "secret",
        cwd=JS_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out, f"node printed nothing; stderr: {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    return result


def _sasl_ht(exchange: dict[str, Any]) -> bool:
    return re.search(r"mechanism=[\"']HT-SHA-256-NONE", exchange["authenticate"]) is not None


async def test_password_then_token_alone_in_one_round_trip(tmp_path: Path) -> None:
    make_test_ca(tmp_path / "certs")
    async with running_server(tmp_path, modules=modules_toml()) as server:
        await add_user(server, "alice")
        r = await run_scenario(server, tmp_path, "login")
    first = r["firstExchange"]
    assert "SCRAM-SHA-1" in first["authenticate"] or "PLAIN" in first["authenticate"]
    assert "request-token" in first["authenticate"]
    assert r["token"]["mechanism"] == "HT-SHA-256-NONE" and r["token"]["expiry"]
    assert re.fullmatch(r"alice@localhost/xmppjs\.[0-9a-f]{12}", r["firstJid"])
    ex = r["exchange"]
    assert _sasl_ht(ex), ex["authenticate"]
    assert "<initial-response>" in ex["authenticate"]
    assert "urn:xmpp:bind:0" in ex["authenticate"]  # Bind 2 inline
    assert re.search(r"<enable xmlns=[\"']urn:xmpp:sm:3", ex["authenticate"])  # SM in <bind/>
    # one round trip: nothing between <authenticate/> and <success/>, and the success binds
    # the resource and enables stream management
    assert ex["clientMessagesInBetween"] == 0 and ex["serverMessagesInBetween"] == 0
    assert "<bound xmlns=\"urn:xmpp:bind:0\"><enabled xmlns=\"urn:xmpp:sm:3\"" in ex["success"]
    assert r["secondJid"].startswith("alice@localhost/xmppjs.")
    assert r["pinged"] and r["failures"] == []


async def test_token_rotation_near_expiry(tmp_path: Path) -> None:
    extra = ("validity_period.access = {value = 1, unit = \"hours\"}\n"
             "validity_period.rotate_before_expire = {value = 2, unit = \"hours\"}\n")
    modules = modules_toml().replace("[modules.mod_fast_auth_token]",
                                     "[modules.mod_fast_auth_token]\n" + extra)
    make_test_ca(tmp_path / "certs")
    async with running_server(tmp_path, modules=modules) as server:
        await add_user(server, "alice")
        r = await run_scenario(server, tmp_path, "rotation")
    assert r["t1"]["token"] != r["t2"]["token"] != r["t3"]["token"]
    assert "<token xmlns=\"urn:xmpp:fast:0\"" in r["secondExchange"]["success"]
    # the oldest token was refused once a newer one had been used; xmpp.js fell back
    assert any("not-authorized" in f for f in r["fourthFailures"]), r["fourthFailures"]
    assert r["fourthExchange"]["success"] is not None


async def test_invalidation_with_and_without_new_token_and_revoked_token(
        tmp_path: Path) -> None:
    make_test_ca(tmp_path / "certs")
    async with running_server(tmp_path, modules=modules_toml()) as server:
        await add_user(server, "alice")
        r = await run_scenario(server, tmp_path, "invalidation")
    inv = r["invExchange"]
    assert re.search(r"invalidate=[\"']true", inv["authenticate"]), inv["authenticate"]
    assert inv["success"] is not None and "<token" not in inv["success"]
    # the revoked token is refused (xmpp.js then logs in with the password)
    assert any("not-authorized" in f for f in r["revokedFailures"]), r["revokedFailures"]
    assert r["revokedExchange"]["success"] is not None
    inv2 = r["inv2Exchange"]
    assert "<token" in inv2["success"] and r["t3"] and r["t3"] != r["t2"]
    assert r["t3Exchange"]["success"] is not None
    assert any("not-authorized" in f for f in r["t2Failures"]), r["t2Failures"]
