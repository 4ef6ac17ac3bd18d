"""``suricate <category> <operation>`` and ``suricate graphql`` against a running server
(a real ``suricate serve`` process), as an operator types them."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.harness import connect, disconnect, free_port
from tests.e2e.test_cli import _wait_port
from tests.ops.harness import ops_toml
from tests.ops.test_graphql import watch_disconnect

SURICATE = [sys.executable, "-m", "suricate"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SURICATE, *args], capture_output=True, text=True, timeout=60)


def test_help_is_generated_from_the_schema() -> None:
    top = run("--help")
    assert top.returncode == 0
    for category in ("domain", "session", "stanza", "roster", "vcard", "private", "last",
                     "offline", "token", "stat", "metric", "server", "graphql"):
        assert category in top.stdout
    account = run("account", "--help")
    assert "registerUser" in account.stdout and "change-password" in account.stdout
    kick = run("session", "kickUser", "--help")
    assert kick.returncode == 0
    assert "End every session of an account" in kick.stdout and "--user JID" in kick.stdout
    missing = run("session", "kickUser")
    assert missing.returncode == 2 and "--user" in missing.stderr
    choices = run("server", "setLoglevel", "--help")
    assert "DEBUG" in choices.stdout


async def test_cli_drives_the_running_server(tmp_path: Path) -> None:
    c2s, tls, http_port = free_port(), free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(ops_toml(tmp_path, c2s, tls, http_port))
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def cli(*args: str, ok: bool = True) -> Any:
        res = await asyncio.to_thread(run, *args, "--config", str(config))
        if ok:
            assert res.returncode == 0, (args, res.stderr)
            return json.loads(res.stdout) if res.stdout.strip() else None
        return res

    try:
        await asyncio.to_thread(_wait_port, http_port)
        out = await cli("account", "registerUser", "--domain", "localhost", "--username",
                        "carol", "--password", "pw")
        assert out == {"jid": "carol@localhost",
                       "message": "User carol@localhost successfully registered"}

        class Addr:
            c2s_port = c2s
            tls_port = tls

        carol = await connect(Addr, "carol@localhost/laptop", "pw")  # type: ignore[arg-type]
        assert await cli("session", "countSessions") == 1
        assert await cli("account", "listUsers", "--domain", "localhost") == ["carol@localhost"]
        gone = watch_disconnect(carol)
        kicked = await cli("session", "kickUser", "--user", "carol@localhost", "--reason", "x")
        assert kicked == [{"jid": "carol@localhost/laptop", "kicked": True, "code": None,
                           "message": "Session kicked"}]  # 6.4's KickUserResult
        await asyncio.wait_for(gone, 5)
        # dynamic domains through the CLI
        await cli("domain", "addDomain", "--domain", "cli.example", "--hostType", "dynamic")
        await cli("account", "registerUser", "--domain", "cli.example", "--username", "dan",
                  "--password", "pw")
        dan = await connect(Addr, "dan@cli.example/r", "pw")  # type: ignore[arg-type]
        await disconnect(dan)
        # raw GraphQL, with variables
        raw = await cli("graphql", "query($d: DomainName!) { account { countUsers(domain: $d) } }",
                        "--variables", '{"d": "cli.example"}')
        assert raw == {"account": {"countUsers": 1}}
        # errors: a clear message and exit 1
        bad = await cli("account", "removeUser", "--user", "nobody@localhost", ok=False)
        assert bad.returncode == 1 and "does not exist" in bad.stderr
        syntax = await cli("graphql", "{ account {", ok=False)
        assert syntax.returncode == 1 and "Syntax Error" in syntax.stderr
        # the existing offline commands still work next to the generated ones
        listed = await cli("account", "list", "localhost", ok=False)
        assert listed.returncode == 0 and listed.stdout.split() == ["carol@localhost"]
        # and the server stops on request
        assert await cli("server", "stop") == "Stopping the server"
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_cli_without_admin_endpoint_says_so(tmp_path: Path) -> None:
    res = run("session", "countSessions", "--data-dir", str(tmp_path / "data"))
    assert res.returncode == 1 and "no admin endpoint" in res.stderr


async def test_status_and_stop_like_mongooseimctl(tmp_path: Path) -> None:
    # mongooseimctl status / mongooseimctl stop: the node-control commands an operator of
    # 6.4 types first; status exits 3 when nothing runs (as an LSB init script does).
    c2s, tls, http_port = free_port(), free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(ops_toml(tmp_path, c2s, tls, http_port))
    for command in ("status", "stop"):
        helped = run(command, "--help")
        assert helped.returncode == 0 and "--config" in helped.stdout, helped.stderr
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(_wait_port, http_port)
        status = await asyncio.to_thread(run, "status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("The server is running: suricate "), status.stdout
        stop = await asyncio.to_thread(run, "stop", "--config", str(config))
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.strip() == "Stopping the server"
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    down = run("status", "--config", str(config))
    assert down.returncode == 3
    assert "the server is not running" in down.stderr
    assert f"suricate serve --config {config}" in down.stderr
    again = run("stop", "--config", str(config))
    assert again.returncode == 1 and "the server is not running" in again.stderr
