"""mod_muc_log: its options (refused with their TOML path), HTML escaping, safe paths."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from suricate.config.loader import parse_config
from suricate.config.spec import ConfigError
from suricate.jid import JID
from suricate.modules.mod_muc_log import ModMucLog

BASE = """
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[modules.mod_muc]
[modules.mod_muc_log]
"""


def problems(options: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + options, Path("/tmp"))
    return [str(p) for p in info.value.problems]


def test_defaults() -> None:
    cfg = parse_config(BASE, Path("/tmp"))
    opts = cfg["modules"]["mod_muc_log"]
    assert opts["outdir"] == "www/muc" and opts["access_log"] == "muc_admin"
    assert opts["dirtype"] == "subdirs" and opts["dirname"] == "room_jid"
    assert opts["file_format"] == "html" and opts["timezone"] == "local"
    assert opts["top_link"] == {"target": "/", "text": "Home"}
    assert opts["spam_prevention"] is True and "css_file" not in opts


@pytest.mark.parametrize(("options", "expected"), [
    ('dirtype = "flat"', "modules.mod_muc_log.dirtype: expected one of subdirs, plain"),
    ('dirname = "title"', "modules.mod_muc_log.dirname: expected one of room_jid, room_name"),
    ('file_format = "pdf"', "modules.mod_muc_log.file_format: expected one of html, plaintext"),
    ('timezone = "Europe/Paris"', "modules.mod_muc_log.timezone: expected one of local, "
                                  "universal"),
    ('outdir = ""', "modules.mod_muc_log.outdir:"),
    ("spam_prevention = 1", "modules.mod_muc_log.spam_prevention:"),
    ("top_link = {target = \"/\", colour = \"red\"}",
     "modules.mod_muc_log.top_link.colour: unknown option"),
    ('access_log = "loggers"',
     "modules.mod_muc_log.access_log: access rule 'loggers' is not defined in [access]"),
    ('file_permissions = "0644"', "modules.mod_muc_log.file_permissions: unknown option"),
])
def test_bad_values_are_refused(options: str, expected: str) -> None:
    found = problems(options)
    assert any(p.startswith(expected) for p in found), found


class _Server:
    def __init__(self, base: Path) -> None:
        self.base_dir = base


def _module(tmp_path: Path, **opts: Any) -> ModMucLog:
    cfg = parse_config(BASE, Path("/tmp"))["modules"]["mod_muc_log"]
    return ModMucLog(_Server(tmp_path), {**cfg, **opts})  # type: ignore[arg-type]


def test_html_escapes_every_client_text(tmp_path: Path) -> None:
    module = _module(tmp_path, dirname="room_name", dirtype="plain")
    room = JID.parse("r@conference.localhost")
    module.event(room, "../../etc", "message", "<i>x</i>", "<script>&</script>")
    module.event(room, "../../etc", "nick", "<i>x</i>", extra="\"><b>")
    files = list(tmp_path.rglob("*.html"))
    assert len(files) == 1 and files[0].is_relative_to(tmp_path / "www" / "muc")
    content = files[0].read_text()
    assert "<script>" not in content and "<i>" not in content and "<b>" not in content
    assert "&lt;script&gt;&amp;&lt;/script&gt;" in content
    assert files[0].name == f"{datetime.now():%Y-%m-%d}.html"
