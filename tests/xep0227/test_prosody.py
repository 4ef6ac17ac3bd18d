"""Acceptance (issue 15, "moving in"): accounts and their data made in a real Prosody (Debian's
package, its own config and data folder), exported with ``prosody-migrator`` to its xep0227
store, imported into Suricate; then the users log in with their original passwords (slixmpp,
TLS, against a running Suricate) and find their roster, vCard and private XML.

Prosody 0.12's xep0227 store has no offline-message handler (the migrator answers
"unsupported-datastore"), so offline messages are covered by test_xep0227.py only."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp.xmlstream import ET

from suricate.cli import xep0227
from tests.e2e.harness import connect, disconnect, running_server

HOST = "localhost"
USERS = {"alice": "wonder land", "bob": "builder-2"}


def _need_prosody() -> None:
    if shutil.which("prosodyctl") and shutil.which("prosody-migrator"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("prosody is not installed (.ci/install-peers installs Debian's prosody)")
    pytest.skip("prosody is not installed (apt-get install prosody)")


@pytest.fixture
def prosody_export() -> Iterator[Path]:
    _need_prosody()
    # prosody-migrator run as root switches to the prosody user: a world-writable scratch
    # folder outside pytest's private tmp (mode 0700) lets it read and write there.
    root = Path(tempfile.mkdtemp(prefix="suricate-xep0227-"))
    root.chmod(0o777)
    try:
        data, out = root / "data", root / "out"
        data.mkdir()
        out.mkdir()
        cfg = root / "prosody.cfg.lua"
        cfg.write_text(f"""
run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{data}"
log = {{ {{ levels = {{ min = "error" }}, to = "file", filename = "{root}/prosody.log" }} }}
authentication = "internal_hashed"
storage = "internal"
modules_disabled = {{ "posix" }}
VirtualHost "{HOST}"
""")
        for user, password in USERS.items():
            # internal_hashed: Prosody keeps SCRAM-SHA-1 keys only, never the password.
            subprocess.run(["prosodyctl", "--config", str(cfg), "register", user, HOST,
                            password], check=True, capture_output=True, timeout=30)
        # Rosters, vCards and private XML in Prosody's internal storage format (what its
        # mod_roster, mod_vcard and mod_private write).
        store = data / HOST.replace(".", "%2e")
        for name, text in {
            "roster/alice.dat": """return {
  [false] = { ["version"] = 3; ["pending"] = {}; };
  ["bob@localhost"] = { ["subscription"] = "both"; ["name"] = "Bobby";
                        ["groups"] = { ["Friends"] = true; }; };
  ["carol@remote.example"] = { ["subscription"] = "none"; ["ask"] = "subscribe";
                               ["groups"] = {}; };
};""",
            "vcard/alice.dat": """return { ["name"] = "vCard"; ["attr"] = { ["xmlns"] = "vcard-temp"; };
  [1] = { ["name"] = "FN"; ["attr"] = {}; [1] = "Alice Liddell"; }; };""",
            "private/alice.dat": """return { ["storage:rosternotes"] = { ["name"] = "storage";
  ["attr"] = { ["xmlns"] = "storage:rosternotes"; };
  [1] = { ["name"] = "note"; ["attr"] = { ["jid"] = "bob@localhost"; }; [1] = "tall"; }; }; };""",
        }.items():
            (store / name).parent.mkdir(parents=True, exist_ok=True)
            (store / name).write_text(text + "\n")
        for p in [root, *root.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IWOTH
                    | (stat.S_IXOTH if p.is_dir() else 0))
        migrator_cfg = root / "migrator.cfg.lua"
        migrator_cfg.write_text(f"""
input {{ hosts = {{ ["{HOST}"] = {{ "accounts", "roster", "vcard", "private" }} }};
        type = "internal"; path = "{data}"; }}
output {{ type = "xep0227"; }}
""")
        # The xep0227 store writes into Prosody's data path, which the migrator takes from the
        # CFG_DATADIR compiled into its script: a copy pointing at our folder keeps the
        # system's /var/lib/prosody untouched.
        script = Path(shutil.which("prosody-migrator") or "").read_text()
        migrator = root / "prosody-migrator"
        migrator.write_text(script.replace("CFG_DATADIR='/var/lib/prosody'",
                                           f"CFG_DATADIR='{out}'"))
        interpreter = script.splitlines()[0].split()[-1]  # the shebang's Lua ("lua5.4")
        result = subprocess.run([interpreter, str(migrator), f"--config={migrator_cfg}",
                                 "input", "output"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(p.name for p in out.glob("*.xml")) == [f"{u}@{HOST}.xml" for u in USERS]
        yield out
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_prosody_export_imported_users_log_in_and_find_their_data(
        prosody_export: Path, tmp_path: Path) -> None:
    # Prosody keeps SCRAM-SHA-1 keys only: the server offers the mechanisms it has keys for
    # (password.hash, as MongooseIM), so clients do not pick SCRAM-SHA-256 and fail.
    async with running_server(tmp_path, auth_extra='methods = ["rdbms"]\n'
                              'password.hash = ["sha"]') as server:
        summary = xep0227.Summary()
        await xep0227.import_paths(server, [prosody_export], summary)
        assert summary.errors == []
        assert summary.imported["accounts"] == 2
        assert summary.imported["roster items"] == 2
        alice = await connect(server, f"alice@{HOST}", USERS["alice"], direct_tls=True,
                              plugins=("xep_0054",))
        bob = await connect(server, f"bob@{HOST}", USERS["bob"], direct_tls=True)
        try:
            roster = await alice.get_roster()
            items = roster["roster"]["items"]
            bob_item = items[bob.boundjid.bare]
            assert bob_item["subscription"] == "both"
            assert bob_item["name"] == "Bobby"
            assert bob_item["groups"] == ["Friends"]
            vcard = await alice.plugin["xep_0054"].get_vcard(local=False)
            assert vcard["vcard_temp"]["FN"] == "Alice Liddell"
            iq = alice.make_iq_get(queryxmlns="jabber:iq:private")
            iq.xml.find("{jabber:iq:private}query").append(
                ET.Element("{storage:rosternotes}storage"))
            result = await iq.send()  # XEP-0049 get of one namespace
            assert "<note jid=\"bob@localhost\">tall</note>" in str(result)
        finally:
            await disconnect(alice, bob)
