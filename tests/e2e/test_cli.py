"""The command line as an operator uses it: real processes, real signals, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, free_port, server_toml

SURICATE = [sys.executable, "-m", "suricate"]


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SURICATE, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_version_and_help_everywhere() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("suricate ")
    for cmd in (["--help"], ["serve", "--help"], ["check-config", "--help"],
                ["account", "--help"], ["account", "register", "--help"],
                ["account", "unregister", "--help"], ["account", "change-password", "--help"],
                ["account", "list", "--help"], ["account", "check", "--help"]):
        res = run(*cmd)
        assert res.returncode == 0, (cmd, res.stderr)
        assert "usage: suricate" in res.stdout


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(server_toml(tmp_path, 15222, 15223))
    res = run("check-config", str(good))
    assert res.returncode == 0, res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('tls.mode = "starttls"', 'tls.mode = "sometimes"')
                   .replace('loglevel = "info"', 'loglevel = "info"\nhostz = ["x"]'))
    res = run("check-config", str(bad))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert any(line.startswith("listen.c2s[0].tls.mode: ") for line in lines), lines
    assert any(line.startswith("general.hostz: ") for line in lines), lines
    missing = run("check-config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such configuration file" in missing.stderr


def test_account_commands_without_a_server(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert run("account", "register", "carol@localhost", "--password", "s3cret",
               *data).returncode == 0
    dup = run("account", "register", "carol@localhost", "--password", "x", *data)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert run("account", "register", "dave@localhost", *data, stdin="pw2\n").returncode == 0
    listed = run("account", "list", *data)
    assert listed.stdout.split() == ["carol@localhost", "dave@localhost"]
    assert run("account", "check", "carol@localhost", "--password", "s3cret",
               *data).returncode == 0
    wrong = run("account", "check", "carol@localhost", "--password", "nope", *data)
    assert wrong.returncode == 1
    assert run("account", "change-password", "carol@localhost", "--password", "new",
               *data).returncode == 0
    assert run("account", "check", "carol@localhost", "--password", "new",
               *data).returncode == 0
    assert run("account", "unregister", "carol@localhost", *data).returncode == 0
    gone = run("account", "check", "carol@localhost", *data)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    bad = run("account", "register", "not a jid@@", "--password", "x", *data)
    assert bad.returncode == 2 and "invalid JID" in bad.stderr
    other = run("account", "register", "x@elsewhere.example", "--password", "x", *data)
    assert other.returncode == 2 and "not a domain of this server" in other.stderr
    # the data folder holds the generated certificate and the SQLite database
    assert (tmp_path / "data" / "certs" / "server.crt").is_file()
    assert (tmp_path / "data" / "suricate.db").is_file()


def _wait_port(port: int, timeout: float = 60.0,
               proc: subprocess.Popen[str] | None = None) -> None:
    """Until something listens on ``port``. ``proc``, the server: its exit ends the wait
    with what it said (after a 15 s wait, "nothing listens" alone left a start-up that
    failed, say on a port taken, and one slower than 15 s on a loaded machine alike)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"the server exited ({proc.returncode}) before listening on "
                                 f"{port}: {stderr}")
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


async def test_serve_register_while_running_chat_and_sigterm(tmp_path: Path) -> None:
    c2s, tls = free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, c2s, tls))
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(_wait_port, c2s, proc=proc)
        # the CLI works while the server runs (same SQLite file, WAL)
        for user in ("erin", "frank"):
            res = await asyncio.to_thread(run, "account", "register", f"{user}@localhost",
                                          "--password", "pw", "--config", str(config))
            assert res.returncode == 0, res.stderr

        class Addr:
            c2s_port = c2s
            tls_port = tls

        erin = await connect(Addr, "erin@localhost/a", "pw")  # type: ignore[arg-type]
        frank = await connect(Addr, "frank@localhost/b", "pw")  # type: ignore[arg-type]
        erin.send_message(mto="frank@localhost/b", mbody="over the CLI", mtype="chat")
        assert (await frank.next_message())["body"] == "over the CLI"
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0
        out = proc.stdout.read() if proc.stdout else ""
        assert "serving localhost" in out and "shutting down" in out
        await disconnect(erin, frank)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# The interop peers listen on 127.0.0.2-3:5222: same xdist worker, never at the same time.
@pytest.mark.xdist_group("fixed-ports")
def test_default_serve_starts_on_5222_5223_5280_and_5443(tmp_path: Path) -> None:
    for port in (5222, 5223, 5280, 5443, 5551, 7777):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                pytest.skip(f"port {port} is taken by another program on this machine")
    env = dict(os.environ, SURICATE_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([*SURICATE, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        _wait_port(5222, proc=proc)
        _wait_port(5223, proc=proc)
        _wait_port(5280, proc=proc)
        _wait_port(5443, proc=proc)
        # the SOCKS5 bytestreams proxy (XEP-0065) on 7777: no authentication needed
        _wait_port(7777, proc=proc)
        with socket.create_connection(("127.0.0.1", 7777), timeout=10) as socks:
            socks.sendall(b"\x05\x01\x00")
            assert socks.recv(2) == b"\x05\x00"
        # XMPP over WebSocket on loopback, announced by XEP-0156 discovery
        import urllib.error
        import urllib.request
        with urllib.request.urlopen("http://localhost:5280/.well-known/host-meta.json",
                                    timeout=10) as resp:
            links = json.loads(resp.read())["links"]
        assert {"rel": "urn:xmpp:alt-connections:websocket",
                "href": "ws://localhost:5280/ws-xmpp"} in links
        assert {"rel": "urn:xmpp:alt-connections:xbosh",
                "href": "http://localhost:5280/http-bind"} in links
        # the web client: served once `make webclient` fetched it, else a page saying how
        installed = (Path(__file__).parents[2] / "webclient" / "node_modules" / "converse.js"
                     / "dist" / "converse.min.js").is_file()
        try:
            with urllib.request.urlopen("http://localhost:5280/chat", timeout=10) as resp:
                status, page = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, page = err.code, err.read().decode()
        assert (status, "converse.initialize" in page) == ((200, True) if installed
                                                           else (503, False))
        # file upload's own store over HTTPS: a path that is no slot is a 404 from its handler
        import ssl
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        try:
            urllib.request.urlopen("https://localhost:5443/upload/00/none.txt", timeout=10,
                                   context=insecure)
        except urllib.error.HTTPError as err:
            assert err.code == 404 and "Content-Type" in err.headers
        else:
            raise AssertionError("an unknown upload answered 200")
        # One certificate, whether a client names localhost (SNI) or not: trusting
        # data/certs/server.crt (as the README says) is enough for direct TLS and HTTPS.
        trusting = ssl.create_default_context(
            cafile=str(tmp_path / "data" / "certs" / "server.crt"))
        for port in (5223, 5443):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    trusting.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() is not None
        # The admin endpoint on loopback (5551, as MongooseIM's default): `status` and `stop`
        # run beside the server find it and its generated password in the data folder.
        assert (tmp_path / "data" / "admin_api.key").stat().st_mode & 0o077 == 0
        status = subprocess.run([*SURICATE, "status"], capture_output=True, text=True,
                                env=env, timeout=30)
        assert status.returncode == 0 and "running" in status.stdout, status
        # Another data folder's CLI reaches this server on the same port, with its own
        # folder's password: refused, so it knows its own server is not running and works
        # on its own database.
        other = dict(os.environ, SURICATE_DATA_DIR=str(tmp_path / "other"))
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "admin_api.key").write_text("ab" * 32)
        elsewhere = subprocess.run([*SURICATE, "status"], capture_output=True, text=True,
                                   env=other, timeout=30)
        assert elsewhere.returncode == 3 and "another data folder" in elsewhere.stderr
        made = subprocess.run([*SURICATE, "account", "register", "x@localhost", "--password",
                               "pw"], capture_output=True, text=True, env=other, timeout=30)
        assert made.returncode == 0 and "changed in the database" in made.stderr, made
        stop = subprocess.run([*SURICATE, "stop"], capture_output=True, text=True, env=env,
                              timeout=30)
        assert stop.returncode == 0, stop
        assert proc.wait(20) == 0
        # It said where its data is (an installed package runs anywhere, docs/operations.md)
        lines = (proc.stdout.read() if proc.stdout else "").splitlines()
        first = lines[0]
        # ... and every port it listens on, the proxy's (a module's own) included
        assert any("serving localhost on " in line and "proxy65:7777" in line
                   for line in lines), lines
        assert first == ("suricate: no --config: the embedded default, its data in "
                         f"{tmp_path / 'data'}"), first
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(
            (tmp_path / "data" / "certs" / "server.crt").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) >= {
            "localhost", "conference.localhost", "pubsub.localhost", "upload.localhost"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_check_config_warns_about_options_without_effect(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(server_toml(tmp_path, 15222, 15223))
    res = run("check-config", str(plain))
    assert res.returncode == 0 and "warning:" not in res.stderr, res.stderr
    path = tmp_path / "inert.toml"
    path.write_text(server_toml(tmp_path, 15222, 15223).replace(
        'loglevel = "info"', 'loglevel = "info"\nlanguage = "fr"'))
    res = run("check-config", str(path))
    assert res.returncode == 0, res.stderr
    assert "configuration is valid" in res.stdout
    assert ("warning: general.language: accepted for compatibility, has no effect in this "
            "version") in res.stderr.splitlines()


async def test_account_unregister_removes_the_data_of_every_configured_module(
        tmp_path: Path) -> None:
    from suricate.config import parse_config
    from suricate.core.server import Server
    from suricate.modules import MODULES
    from tests.storage.test_module_stores import EMPTY, MODULE_STORES, _data, _fill, stores_of

    config = tmp_path / "suricate.toml"
    # Every module with a store (mod_fast_auth_token brings mod_sasl2 along).
    modules = "\n".join(f"[modules.{name}]" for name in MODULE_STORES)
    config.write_text(server_toml(tmp_path, free_port(), free_port(), modules=modules))

    async def with_stores(work: Any) -> Any:
        server = Server(parse_config(config.read_text(), tmp_path), tmp_path, MODULES)
        await server.storage.open()
        try:
            await server.open_module_stores()
            return await work(server, stores_of(server.module_stores))
        finally:
            await server.storage.close()

    async def fill(server: Server, stores: Any) -> tuple[object, ...]:
        for user in ("dave", "erin"):
            assert await server.auth.register(JID.parse(f"{user}@localhost"), "pw")
            await _fill(stores, user, "localhost")
        dave = await _data(stores, "dave", "localhost")
        assert dave != EMPTY
        return dave

    erin_before = await with_stores(fill)
    res = await asyncio.to_thread(run, "account", "unregister", "dave@localhost",
                                  "--config", str(config))
    assert res.returncode == 0, res.stderr

    async def check(server: Server, stores: Any) -> None:
        assert not await server.storage.user_exists("localhost", "dave")
        assert await _data(stores, "dave", "localhost") == EMPTY
        assert await _data(stores, "erin", "localhost") == erin_before

    await with_stores(check)


def test_check_config_names_the_file_of_a_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[general\nhosts = 1\n")
    res = run("check-config", str(path))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"{path}: invalid TOML: Expected ']' at the end of a table "
                                  "declaration (at line 1, column 9)")
    served = run("serve", "--config", str(path))
    assert served.returncode == 2
    assert served.stderr.strip().startswith(f"suricate: {path}: invalid TOML: ")


def mongooseim_64_default_shape(tmp_path: Path, ports: dict[str, int]) -> str:
    """A configuration with the sections and options of the mongooseim.toml that MongooseIM
    6.4 ships (rendered with its release's values), written for this test on free ports."""
    from suricate.net.certs import ensure_self_signed

    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    access = "\n".join(
        f'  {rule} = [{{acl = "all", value = "{value}"}}]'
        for rule, value in (("mam_set_prefs", "default"), ("mam_get_prefs", "default"),
                            ("mam_lookup_messages", "default"),
                            ("mam_set_prefs_shaper", "mam_shaper"),
                            ("mam_lookup_messages_global_shaper", "mam_global_shaper")))
    return f"""
[general]
  loglevel = "warning"
  hosts = ["localhost"]
  host_types = []
  default_server_domain = "localhost"
  registration_timeout = "infinity"
  language = "en"
  sm_backend = "mnesia"

[[listen.http]]
  port = {ports["http"]}
  transport.num_acceptors = 10
  transport.max_connections = 1024

  [[listen.http.handlers.mod_bosh]]
    host = "_"
    path = "/http-bind"

  [[listen.http.handlers.mod_websockets]]
    host = "_"
    path = "/ws-xmpp"

[[listen.http]]
  ip_address = "127.0.0.1"
  port = {ports["admin"]}
  transport.num_acceptors = 10
  transport.max_connections = 1024

  [[listen.http.handlers.mongoose_graphql_handler]]
    host = "localhost"
    path = "/api/graphql"
    schema_endpoint = "admin"
    username = "admin"
    password = "secret"

[[listen.http]]
  port = {ports["prometheus"]}
  transport.num_acceptors = 10

  [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"

[[listen.c2s]]
  port = {ports["c2s"]}
  access = "c2s"
  shaper = "normal"
  max_stanza_size = 65536
  tls.verify_mode = "none"
  tls.certfile = "{cert.certfile}"
  tls.keyfile = "{cert.keyfile}"

[[listen.s2s]]
  port = {ports["s2s"]}
  shaper = "fast"
  max_stanza_size = 131072

[[listen.component]]
  port = {ports["component"]}
  access = "all"
  shaper = "fast"
  ip_address = "127.0.0.1"
  password = "secret"

[auth]
  [auth.internal]

[internal_databases.mnesia]

[outgoing_pools.rdbms.default]
  scope = "global"
  workers = 5
  [outgoing_pools.rdbms.default.connection]
    driver = "sqlite"
    database = "{tmp_path / "suricate.db"}"

[services.service_mongoose_system_metrics]

[modules.mod_adhoc]

[modules.mod_disco]
  users_can_see_hidden_services = false

[modules.mod_stream_management]

[modules.mod_offline]

[modules.mod_register]
  ip_access = [
    {{address = "127.0.0.0/8", policy = "allow"}},
    {{address = "0.0.0.0/0", policy = "deny"}}
  ]
  access = "register"

[modules.mod_presence]

[modules.mod_roster]

[modules.mod_carboncopy]

[instrumentation.prometheus]

[instrumentation.log]

[shaper.normal]
  max_rate = 1000

[shaper.fast]
  max_rate = 50_000

[shaper.mam_shaper]
  max_rate = 1

[shaper.mam_global_shaper]
  max_rate = 1000

[acl]
  local = [{{}}]

[access]
  max_user_sessions = [{{acl = "all", value = 10}}]
  max_user_offline_messages = [{{acl = "admin", value = 5000}}, {{acl = "all", value = 100}}]
  local = [{{acl = "local", value = "allow"}}]
  c2s = [{{acl = "blocked", value = "deny"}}, {{acl = "all", value = "allow"}}]
  muc_admin = [{{acl = "admin", value = "allow"}}]
  muc_create = [{{acl = "local", value = "allow"}}]
  register = [{{acl = "all", value = "allow"}}]
{access}

[s2s]
  default_policy = "deny"
  outgoing.port = {ports["s2s"]}
"""


async def test_a_config_shaped_like_mongooseim_64s_default_checks_and_serves(
        tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("http", "admin", "prometheus", "c2s", "s2s",
                                            "component")}
    config = tmp_path / "mongooseim.toml"
    config.write_text(mongooseim_64_default_shape(tmp_path, ports))
    res = run("check-config", str(config))
    assert res.returncode == 0, res.stderr
    warned = {line.split(": ")[1] for line in res.stderr.splitlines()}
    assert {"internal_databases.mnesia", "services.service_mongoose_system_metrics",
            "access.c2s[0].acl", "access.muc_admin[0].acl"} <= warned, res.stderr
    proc = subprocess.Popen([*SURICATE, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(_wait_port, ports["admin"], proc=proc)
        status = await asyncio.to_thread(run, "server", "status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["statusCode"] == "RUNNING"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
