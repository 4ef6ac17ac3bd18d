"""Start-up time is mostly imports: what ``suricate serve`` loads before it accepts connections.

A server whose configuration does not use a feature must not import it (docs/performance.md,
"start-up to accepting connections"). The configuration here is the side-by-side benchmark's
(bench/run.py): c2s with STARTTLS on SQLite, mod_presence, mod_roster, mod_disco, mod_ping,
mod_offline and mod_muc. aiohttp has its own guard (tests/web/test_http.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, server_toml

ROOT = Path(__file__).resolve().parents[2]

MODULES = "\n".join(f"[modules.{name}]" for name in (
    "mod_presence", "mod_roster", "mod_disco", "mod_ping", "mod_offline", "mod_muc"))

#: Loaded by no part of that server's start. Each was once, and cost milliseconds.
NOT_AT_START = (
    # modules it does not run: mod_presence asks privacy_check_packet instead
    "suricate.modules.mod_blocking", "suricate.modules.mod_privacy",
    # subsystems it does not configure
    "aiohttp", "graphql", "asyncpg", "ldap3", "redis", "suricate.admin.schema",
    "suricate.core.s2s", "suricate.net.http", "suricate.net.proxy_protocol",
    "suricate.core.hook_events", "suricate.instrument.setup",
    # mod_muc's parts for several nodes and for an http_auth_pool
    "suricate.modules.mod_muc.placement", "suricate.modules.mod_muc.conferences",
    "suricate.modules.mod_muc.http_auth",
    # what only some paths need: certificate generation, ids drawn later, argparse's
    # terminal width (shutil), a password prompt, migrations read through readers
    "cryptography.hazmat.primitives.serialization", "uuid", "shutil", "getpass",
    "importlib.resources", "zipfile",
)

# The server stops as soon as it has started; the modules loaded then are printed.
CHILD = """
import sys
from suricate.core import server

start = server.Server.start

async def start_then_stop(self):
    await start(self)
    print("LOADED", " ".join(sorted(sys.modules)), flush=True)
    self.stop_requested.set()

server.Server.start = start_then_stop
from suricate.cli.main import main
sys.exit(main(["serve", "--config", sys.argv[1]]))
"""


def serve_in_child(tmp_path: Path, child: str) -> str:
    """Run ``child`` (a program that serves the benchmark's configuration, given as its
    argument, and stops once started) in a fresh interpreter; its standard output."""
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, free_port(), free_port(), modules=MODULES))
    out = subprocess.run([sys.executable, "-c", child, str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_serve_loads_nothing_its_configuration_does_not_use(tmp_path: Path) -> None:
    stdout = serve_in_child(tmp_path, CHILD)
    line = next(line for line in stdout.splitlines() if line.startswith("LOADED "))
    loaded = set(line.split()[1:])
    assert "suricate.modules.mod_muc" in loaded  # the check sees what the server loaded
    found = sorted(name for name in NOT_AT_START
                   if any(m == name or m.startswith(name + ".") for m in loaded))
    assert not found, f"imported at start-up: {found}"


# Through the real entry point: the collector is off while the program starts, on once the
# server listens, with what start-up made frozen (suricate/__main__.py).
GC_CHILD = """
import gc
import sys
from suricate.core import server

start, stop = server.Server.start, server.Server.stop

async def start_then_stop(self):
    print("STARTING", gc.isenabled(), flush=True)
    await start(self)
    self.stop_requested.set()

async def report_then_stop(self):
    print("SERVING", gc.isenabled(), gc.get_freeze_count() > 0, flush=True)
    await stop(self)

server.Server.start, server.Server.stop = start_then_stop, report_then_stop
from suricate.__main__ import run
sys.argv[1:] = ["serve", "--config", sys.argv[1]]
sys.exit(run())
"""


def test_the_collector_is_off_while_starting_and_on_once_serving(tmp_path: Path) -> None:
    stdout = serve_in_child(tmp_path, GC_CHILD)
    lines = [line for line in stdout.splitlines() if line.startswith(("STARTING", "SERVING"))]
    assert lines == ["STARTING False", "SERVING True True"], stdout[-2000:]


def test_serve_builds_only_its_own_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` parses its arguments without building the other commands' parsers (~1.5 ms
    of start-up); its usage and errors stay those of ``suricate serve``."""
    from suricate.cli import main as cli

    built: list[argparse.ArgumentParser] = []
    real = cli.build_parser

    def build_parser(**kwargs: bool) -> argparse.ArgumentParser:
        built.append(real(**kwargs))
        return built[-1]

    served: list[argparse.Namespace] = []
    monkeypatch.setattr(cli, "build_parser", build_parser)
    monkeypatch.setattr(cli, "cmd_serve", lambda args: served.append(args) or 0)
    assert cli.main(["serve", "--config", "x.toml", "--workers", "2"]) == 0
    assert (served[0].config, served[0].workers) == ("x.toml", 2)
    sub = next(a for a in built[0]._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"serve"}
    with pytest.raises(SystemExit):
        cli.main(["serve", "--bogus"])


def test_an_admin_endpoint_imports_graphql_at_its_first_request(tmp_path: Path) -> None:
    """The embedded default's admin endpoint (for the CLI) costs no start-up: graphql-core and
    the schema (~80 ms) load at the endpoint's first request, on a single node."""
    admin = (f"[[listen.http]]\nport = {free_port()}\nip_address = \"127.0.0.1\"\n"
             "[[listen.http.handlers.mongoose_graphql_handler]]\nhost = \"_\"\n"
             "path = \"/api/graphql\"\nschema_endpoint = \"admin\"\n"
             "username = \"admin\"\npassword = \"secret\"\n")
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, free_port(), free_port(), modules=MODULES) + admin)
    out = subprocess.run([sys.executable, "-c", CHILD, str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("LOADED "))
    loaded = set(line.split()[1:])
    assert "suricate.admin" in loaded  # the endpoint's handler is there
    assert not any(m == "graphql" or m.startswith("graphql.") for m in loaded)
