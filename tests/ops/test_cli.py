"""``suricate <category> <operation>`` and ``suricate graphql`` against a running server
(a real ``suricate serve`` process), as an operator types them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import connect, disconnect, free_port, running_server, server_toml
from tests.e2e.test_account_life import make_contacts, stream_error_of
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
        # credentials the server does not take: said so, with where they come from
        other = tmp_path / "other.toml"
        other.write_text(config.read_text().replace('password = "s3cret"',
                                                    'password = "not-it"', 1))
        refused = await asyncio.to_thread(run, "session", "countSessions", "--config",
                                          str(other))
        assert refused.returncode == 1, refused
        assert "refused the credentials" in refused.stderr, refused.stderr
        assert "mongoose_graphql_handler" in refused.stderr
        bare = await asyncio.to_thread(run, "session", "countSessions", "--url",
                                       f"http://127.0.0.1:{http_port}/api/graphql")
        assert bare.returncode == 1 and "give --config FILE" in bare.stderr, bare.stderr
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
    # Without --config nor --url there is no endpoint to ask (the embedded default has none):
    # a usage error saying which option is missing, and nothing written to the data folder.
    for command in (("session", "countSessions"), ("status",),
                    ("graphql", "{ checkAuth { authStatus } }")):
        res = run(*command, "--data-dir", str(tmp_path / "data"))
        assert res.returncode == 2, (command, res)
        assert "no admin endpoint" in res.stderr and "--config FILE" in res.stderr, res.stderr
    assert not (tmp_path / "data").exists()
    config = tmp_path / "plain.toml"  # a configuration without an admin endpoint
    config.write_text(server_toml(tmp_path, free_port(), free_port()))
    res = run("session", "countSessions", "--config", str(config))
    assert res.returncode == 1 and "no admin endpoint in the configuration" in res.stderr


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
    # Any other command says the same, with what to do.
    for command in (("session", "countSessions"), ("graphql", "{ checkAuth { authStatus } }")):
        res = run(*command, "--config", str(config))
        assert res.returncode == 1, res
        assert "the server is not running" in res.stderr, res.stderr
        assert f"start it with: suricate serve --config {config}" in res.stderr, res.stderr


# -- account register|unregister|change-password: through the running server ---------------------
def account(config: Path, *args: str, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``suricate account ...``; a password on standard input, as a careful operator gives it
    (the command line of a process is visible to every user of the machine)."""
    return subprocess.run([*SURICATE, "account", *args, "--config", str(config)], input=stdin,
                          capture_output=True, text=True, timeout=60)


@contextlib.asynccontextmanager
async def serving(config: Path, http_port: int) -> AsyncIterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(_wait_port, http_port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _configured(tmp_path: Path) -> tuple[Path, Any, int]:
    c2s, tls, http_port = free_port(), free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(ops_toml(tmp_path, c2s, tls, http_port))

    class Addr:
        c2s_port = c2s
        tls_port = tls

    return config, Addr, http_port


async def test_account_change_password_while_running_ends_the_sessions(tmp_path: Path) -> None:
    config, addr, http_port = _configured(tmp_path)
    async with serving(config, http_port) as proc:
        made = await asyncio.to_thread(account, config, "register", "alice@localhost",
                                       stdin="old-secret\n")
        assert made.returncode == 0 and made.stdout.strip() == "alice@localhost registered", \
            made.stderr
        assert made.stderr == ""  # the server did it: nothing to say
        alice = await connect(addr, "alice@localhost/phone", "old-secret")
        reset = stream_error_of(alice)
        res = await asyncio.to_thread(account, config, "change-password", "alice@localhost",
                                      stdin="new-secret\n")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "password of alice@localhost changed"
        # Server.password_changed: the session that knew the old password ends (as GraphQL's
        # changeUserPassword ends it); a database-only change would have left it open.
        assert await asyncio.wait_for(reset, 5) == "reset"
        again = await connect(addr, "alice@localhost/phone", "new-secret")
        await disconnect(again)
        with pytest.raises(PermissionError):
            await connect(addr, "alice@localhost/phone", "old-secret")
        # The server's refusals read as the database path's, with its exit codes.
        dup = await asyncio.to_thread(account, config, "register", "alice@localhost",
                                      stdin="x\n")
        assert (dup.returncode, dup.stderr.strip()) == (
            1, "suricate: alice@localhost already exists")
        nobody = await asyncio.to_thread(account, config, "change-password", "nobody@localhost",
                                         stdin="x\n")
        assert (nobody.returncode, nobody.stderr.strip()) == (
            1, "suricate: nobody@localhost does not exist")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        log = (proc.stdout.read() if proc.stdout else "") + \
            (proc.stderr.read() if proc.stderr else "")
        assert "old-secret" not in log and "new-secret" not in log


async def test_account_unregister_while_running_ends_the_sessions_and_tells_contacts(
        tmp_path: Path) -> None:
    config, addr, http_port = _configured(tmp_path)
    async with serving(config, http_port):
        for user in ("alice", "bob"):
            made = await asyncio.to_thread(account, config, "register", f"{user}@localhost",
                                           stdin="pw\n")
            assert made.returncode == 0, made.stderr
        alice = await connect(addr, "alice@localhost/phone", "pw")
        bob = await connect(addr, "bob@localhost/laptop", "pw")
        alice.send_presence()
        bob.send_presence()
        await make_contacts(alice, bob)
        while not bob.presences.empty():
            bob.presences.get_nowait()
        gone = watch_disconnect(alice)
        res = await asyncio.to_thread(account, config, "unregister", "alice@localhost")
        assert (res.returncode, res.stdout.strip(), res.stderr) == (
            0, "alice@localhost unregistered", ""), res.stderr
        await asyncio.wait_for(gone, 5)
        # The removing_user hook: bob's roster no longer subscribes to alice either way.
        kinds = {(await bob.next_presence(type_=kind))["type"]
                 for kind in ("unsubscribe", "unsubscribed")}
        assert kinds == {"unsubscribe", "unsubscribed"}
        with pytest.raises(PermissionError):
            await connect(addr, "alice@localhost/phone", "pw")
        twice = await asyncio.to_thread(account, config, "unregister", "alice@localhost")
        assert (twice.returncode, twice.stderr.strip()) == (
            1, "suricate: alice@localhost does not exist")
        await disconnect(bob)


async def test_account_commands_work_on_the_database_when_the_server_is_stopped(
        tmp_path: Path) -> None:
    config, addr, http_port = _configured(tmp_path)
    note = "suricate: the server is not running: changed in the database"
    for user in ("alice", "bob"):
        made = account(config, "register", f"{user}@localhost", stdin="pw\n")
        assert (made.returncode, made.stderr.strip()) == (0, note), made.stderr
    changed = account(config, "change-password", "alice@localhost", stdin="new-pw\n")
    assert (changed.returncode, changed.stdout.strip(), changed.stderr.strip()) == (
        0, "password of alice@localhost changed", note)
    removed = account(config, "unregister", "bob@localhost")
    assert (removed.returncode, removed.stdout.strip(), removed.stderr.strip()) == (
        0, "bob@localhost unregistered", note)
    nobody = account(config, "unregister", "bob@localhost")
    assert nobody.returncode == 1 and "bob@localhost does not exist" in nobody.stderr
    async with serving(config, http_port):
        alice = await connect(addr, "alice@localhost/phone", "new-pw")
        await disconnect(alice)
        with pytest.raises(PermissionError):
            await connect(addr, "bob@localhost/laptop", "pw")


async def test_account_commands_when_the_server_cannot_be_asked(tmp_path: Path) -> None:
    # No admin endpoint in the configuration while the server runs: the database, and a
    # warning saying what was left undone and how to have the server do it.
    async with running_server(tmp_path) as server:
        config = tmp_path / "plain.toml"
        config.write_text(server_toml(tmp_path, server.c2s_port,  # type: ignore[attr-defined]
                                      server.tls_port))  # type: ignore[attr-defined]
        made = await asyncio.to_thread(account, config, "register", "carol@localhost",
                                       stdin="pw\n")
        assert (made.returncode, made.stderr) == (0, "")  # the server reads the database
        res = await asyncio.to_thread(account, config, "unregister", "carol@localhost")
        assert res.returncode == 0, res.stderr
        assert "no admin endpoint" in res.stderr and "sessions stay open" in res.stderr
        assert "contacts are not told" in res.stderr
        # An admin URL where something answers, but not the admin API: the change is not
        # made (it may have been, by whatever is there), and the operator is told what to do.
        odd = await asyncio.to_thread(
            account, config, "change-password", "alice@localhost", "--url",
            f"http://127.0.0.1:{server.c2s_port}/api/graphql",  # type: ignore[attr-defined]
            stdin="new\n")
        assert odd.returncode == 1 and "alice@localhost not changed" in odd.stderr, odd.stderr
