"""examples/mod_hello, an operator's own module in its own package (installed by `make
install`), found through the entry-point group `suricate.modules`: a real client asks it over
TLS, `suricate check-config` validates its section, and it stays small enough to read."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from suricate.config import parse_config
from suricate.config.catalog import CATALOG
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, running_server, server_toml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "mod_hello" / "src" / "mod_hello"
NS = "urn:example:hello"
HELLO_TOML = '[modules.mod_disco]\n[modules.mod_hello]\ngreeting = "bonjour"\n'


def test_installed_as_a_plugin(tmp_path: Path) -> None:
    assert "mod_hello" in CATALOG.plugin_names(), (
        "examples/mod_hello is not installed in this environment: run `make install`")
    assert "mod_hello" not in CATALOG.builtin_names()
    cls = CATALOG["mod_hello"]
    assert cls.__module__ == "mod_hello" and cls.name == "mod_hello"
    # An enabled section without options gets the declared default.
    cfg = parse_config(server_toml(tmp_path, 1, 2, modules="[modules.mod_hello]"), tmp_path)
    assert cfg["modules"]["mod_hello"] == {"greeting": "hello"}


def test_source_is_small() -> None:
    lines = [line.strip() for path in SOURCE.glob("*.py")
             for line in path.read_text(encoding="utf-8").splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    assert 0 < len(code) <= 40, len(code)


async def test_greeting_and_disco_over_tls(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=HELLO_TOML) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw", direct_tls=True,
                              plugins=("xep_0030",))
        try:
            result = await alice.make_iq_get(queryxmlns=NS, ito="localhost").send(timeout=5)
            assert result["type"] == "result"
            greeting = result.xml.find(f"{{{NS}}}query/{{{NS}}}greeting")
            assert greeting is not None and greeting.text == "bonjour"

            # Only a get is defined: a set gets an error reply, not silence.
            with pytest.raises(IqError) as err:
                await alice.make_iq_set(ET.Element(f"{{{NS}}}query"),
                                        ito="localhost").send(timeout=5)
            assert err.value.iq["error"]["condition"] == "not-allowed"

            info = await alice.plugin["xep_0030"].get_info(jid="localhost")
            assert NS in info["disco_info"]["features"]
        finally:
            await disconnect(alice)


def test_check_config_refuses_bad_sections(tmp_path: Path) -> None:
    def check(modules: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "suricate.toml"
        path.write_text(server_toml(tmp_path, 15222, 15223, modules=modules))
        return subprocess.run([sys.executable, "-m", "suricate", "check-config", str(path)],
                              capture_output=True, text=True, timeout=60)

    good = check(HELLO_TOML)
    assert good.returncode == 0, good.stderr
    wrong_type = check("[modules.mod_hello]\ngreeting = 5\n")
    assert wrong_type.returncode == 2
    assert wrong_type.stderr.startswith("modules.mod_hello.greeting: "), wrong_type.stderr
    unknown = check('[modules.mod_hello]\ngreeting = "hi"\ncolour = "red"\n')
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("modules.mod_hello.colour: "), unknown.stderr
