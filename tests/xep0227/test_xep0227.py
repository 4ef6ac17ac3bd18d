"""suricate import/export (XEP-0227): hostile input refused, idempotence, export→import."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from suricate.cli.main import main
from suricate.config import load_config_with_warnings
from suricate.sasl.passwords import keys_from_plain, verify_password

SALT = b"0123456789abcdef"
KEYS = keys_from_plain("wonderland", "sha", SALT, 4096)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


# As Prosody's prosody-migrator (xep0227 store) writes it: one document per account.
ALICE = f"""<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'><user name='alice'>
<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>
<server-key>{_b64(KEYS.server_key)}</server-key><stored-key>{_b64(KEYS.stored_key)}</stored-key>
<iter-count>4096</iter-count><salt>{_b64(SALT)}</salt></scram-credentials>
<query xmlns='jabber:iq:roster'><item jid='bob@example.test' name='Bobby' subscription='both'>
<group>Friends</group></item><item jid='carol@remote.test' subscription='none' ask='subscribe'/>
</query>
<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>
<query xmlns='jabber:iq:private'><storage xmlns='storage:rosternotes'><note jid='bob@example.test'>tall</note></storage></query>
<offline-messages><message xmlns='jabber:client' from='bob@example.test/home' to='alice@example.test' type='chat'><body>hello offline</body><delay xmlns='urn:xmpp:delay' stamp='2023-11-14T22:13:20Z'/></message></offline-messages>
<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>
<frobnicate xmlns='urn:example'/>
</user>
<user name='bob' password='builder'/></host></server-data>
"""


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "suricate.toml"
    path.write_text(f"""
[general]
hosts = ["example.test"]
default_server_domain = "example.test"
[auth]
methods = ["rdbms"]
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp_path / 'db.sqlite'}"
[modules.mod_roster]
[modules.mod_vcard]
[modules.mod_private]
[modules.mod_offline]
""")
    return path


def dump(cfg_file: Path) -> dict[str, Any]:
    """Everything stored, read back through the stores."""
    from suricate.core.server import Server
    from suricate.modules import MODULES

    cfg, _ = load_config_with_warnings(cfg_file)

    async def run() -> dict[str, Any]:
        server = Server(cfg, cfg_file.parent, MODULES)
        await server.storage.open()
        try:
            await server.open_module_stores()
            st = server.module_stores
            out: dict[str, Any] = {}
            for user in await server.storage.list_users("example.test"):
                rec = await server.storage.get_user("example.test", user)
                offline = await st["mod_offline"].fetch(
                    "SELECT stamp, from_jid, packet FROM offline_messages WHERE username = ?",
                    user)
                private = await st["mod_private"].fetch(
                    "SELECT namespace, data FROM private_storage WHERE username = ?", user)
                out[user] = {
                    "cred": (rec.password, rec.pass_details),
                    "roster": await st["mod_roster"].get_roster("example.test", user),
                    "vcard": await st["mod_vcard"].get_vcard("example.test", user),
                    "private": sorted(tuple(r) for r in private),
                    "offline": sorted(tuple(r) for r in offline),
                }
            return out
        finally:
            await server.storage.close()

    return asyncio.run(run())


def run_cli(*args: str) -> int:
    return main(list(args))


def test_import_prosody_document(cfg_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "alice@example.test.xml"
    f.write_text(ALICE)
    assert run_cli("import", "--config", str(cfg_file), str(f)) == 0
    out = capsys.readouterr().out
    assert "imported 2 accounts" in out
    assert "PubSub lands later" in out
    assert "unknown element <frobnicate" in out
    # Alice came with SHA-1 keys only (Prosody's), bob with a password (hashed for every
    # configured hash): the operator is told that clients picking SCRAM-SHA-256 will fail.
    assert ("note: 1 accounts have SCRAM keys only for SCRAM-SHA-1, not for SCRAM-SHA-224, "
            "SCRAM-SHA-256, SCRAM-SHA-384, SCRAM-SHA-512") in out
    assert 'set [auth.password] hash = ["sha"]' in out
    data = dump(cfg_file)
    alice = data["alice"]
    # The SCRAM keys are kept: the original password verifies, another does not.
    assert verify_password(*alice["cred"], "wonderland")
    assert not verify_password(*alice["cred"], "looking-glass")
    assert verify_password(*data["bob"]["cred"], "builder")
    roster = {i.jid: i for i in alice["roster"]}
    assert roster["bob@example.test"].subscription == "both"
    assert roster["bob@example.test"].name == "Bobby"
    assert roster["bob@example.test"].groups == ("Friends",)
    assert roster["carol@remote.test"].ask == "out"
    assert "Alice Liddell" in alice["vcard"]
    assert alice["private"][0][0] == "storage:rosternotes"
    assert "tall" in alice["private"][0][1]
    (stamp, sender, packet), = alice["offline"]
    assert sender == "bob@example.test/home" and "hello offline" in packet
    assert stamp == 1700000000.0

    # Idempotent: a second run changes nothing.
    assert run_cli("import", "--config", str(cfg_file), str(tmp_path)) == 0
    assert "accounts already present (unchanged)" in capsys.readouterr().out
    assert dump(cfg_file) == data


def test_a_re_import_keeps_keys_added_since(cfg_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Keys added after the first import (XEP-0480 upgrade tasks give Prosody's SHA-1-only
    account SHA-256 keys at a login) survive a second run of the same import."""
    f = tmp_path / "alice@example.test.xml"
    f.write_text(ALICE)
    assert run_cli("import", "--config", str(cfg_file), str(f)) == 0
    from suricate.core.server import Server
    from suricate.modules import MODULES
    from suricate.sasl.passwords import format_scram_record

    upgraded = format_scram_record({
        "sha": KEYS, "sha256": keys_from_plain("wonderland", "sha256", SALT, 4096)})
    cfg, _ = load_config_with_warnings(cfg_file)

    async def upgrade() -> None:
        server = Server(cfg, cfg_file.parent, MODULES)
        await server.storage.open()
        try:
            await server.storage.set_password("example.test", "alice", None, upgraded)
        finally:
            await server.storage.close()

    asyncio.run(upgrade())
    capsys.readouterr()
    assert run_cli("import", "--config", str(cfg_file), str(f)) == 0
    assert "accounts already present (unchanged)" in capsys.readouterr().out
    assert dump(cfg_file)["alice"]["cred"] == (None, upgraded)


def test_export_then_import_gives_the_same_data(cfg_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.xml").write_text(ALICE)
    assert run_cli("import", "--config", str(cfg_file), str(src)) == 0
    before = dump(cfg_file)
    out_dir = tmp_path / "out"
    capsys.readouterr()
    assert run_cli("export", "--config", str(cfg_file), str(out_dir)) == 0
    out = capsys.readouterr().out
    assert "exported 2 accounts" in out and "imported" not in out and "note:" not in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["alice@example.test.xml",
                                                         "bob@example.test.xml"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cfg2 = fresh / "suricate.toml"
    cfg2.write_text(cfg_file.read_text().replace(str(tmp_path / "db.sqlite"),
                                                 str(fresh / "db.sqlite")))
    assert run_cli("import", "--config", str(cfg2), str(out_dir)) == 0
    after = dump(cfg2)
    # Same credentials (the same SCRAM keys, not re-hashed), roster, vCard, private, offline.
    assert after == before


@pytest.mark.parametrize("body, why", [
    ("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]>\n<server-data "
     "xmlns='urn:xmpp:pie:0'>&a;</server-data>", "restricted-xml"),
    ("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='example.test'>\n<user name='x'>&ext;"
     "</user></host></server-data>", ":3: restricted-xml"),
    ("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='example.test'>\n<user name='x'>\n</host>",
     ":4: not-well-formed"),
    ("<other/>", "root is not <server-data"),
])
def test_hostile_or_malformed_file_refused_with_file_and_line(
        cfg_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        body: str, why: str) -> None:
    f = tmp_path / "bad.xml"
    f.write_text(body)
    assert run_cli("import", "--config", str(cfg_file), str(f)) == 1
    err = capsys.readouterr().out
    assert f"error: {f}" in err and why in err
    assert dump(cfg_file) == {}


def test_huge_file_refused(cfg_file: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "big.xml"
    f.write_text(ALICE)
    assert run_cli("import", "--config", str(cfg_file), "--max-size", "100", str(f)) == 1
    assert "over the 100-byte limit" in capsys.readouterr().out
    assert dump(cfg_file) == {}


def test_progress_bar_on_request(cfg_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(3):
        (tmp_path / f"u{n}.xml").write_text(
            f"<server-data xmlns='urn:xmpp:pie:0'><host jid='example.test'>"
            f"<user name='u{n}' password='p{n}'/></host></server-data>")
    assert run_cli("import", "--config", str(cfg_file), "--progress", str(tmp_path)) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "imported 3 accounts" in captured.out
    assert sorted(dump(cfg_file)) == ["u0", "u1", "u2"]


# As ejabberd 23.01's `ejabberdctl export_piefxis DIR` writes them (walked 2026-12-05): an
# index of XIncludes and one file per host whose root is the <host>.
EJABBERD_INDEX = ("<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='urn:xmpp:pie:0' "
                  "xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include "
                  "href='20261205-131331_example_test.xml'/></server-data>")
EJABBERD_HOST = ("<?xml version='1.0' encoding='UTF-8'?><host xmlns='urn:xmpp:pie:0' "
                 "xmlns:xi='http://www.w3.org/2001/XInclude' jid='example.test'><user "
                 "name='anna' password='annapw'><query xmlns='jabber:iq:roster'><item "
                 "subscription='both' name='Ben' jid='ben@example.test'><group>Friends</group>"
                 "</item></query></user><user name='ben' password='benpw'/></host>")


@pytest.mark.parametrize("what", ["dir", "index"])
def test_ejabberd_export_piefxis_layout(cfg_file: Path, tmp_path: Path, what: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "20261205-131331.xml").write_text(EJABBERD_INDEX)
    (exp / "20261205-131331_example_test.xml").write_text(EJABBERD_HOST)
    # The folder (both files: the host file read once), or the index alone (it is followed).
    arg = exp if what == "dir" else exp / "20261205-131331.xml"
    assert run_cli("import", "--config", str(cfg_file), str(arg)) == 0
    out = capsys.readouterr().out
    assert "imported 2 accounts" in out and "imported 1 roster items" in out, out
    assert "skipped" not in out and "error" not in out, out
    data = dump(cfg_file)
    assert verify_password(*data["anna"]["cred"], "annapw")
    assert [(i.jid, i.groups) for i in data["anna"]["roster"]] == [("ben@example.test",
                                                                    ("Friends",))]


def test_an_include_out_of_the_folder_is_not_followed(cfg_file: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "outside.xml").write_text(EJABBERD_HOST)
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "index.xml").write_text(EJABBERD_INDEX.replace("20261205-131331_example_test.xml",
                                                          "../outside.xml"))
    assert run_cli("import", "--config", str(cfg_file), str(exp / "index.xml")) == 0
    out = capsys.readouterr().out
    assert "skipped 1: XInclude not a file of the same folder" in out and "imported" not in out
