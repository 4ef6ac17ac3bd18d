"""Configuration of the small modules (no storage, few options): MongooseIM 6.4's options and
defaults, and each refusal naming its TOML path."""

from __future__ import annotations

from tests.unit.test_config import parse, refused

# -- mod_offline_stub: no options ------------------------------------------------------------


def test_offline_stub_has_no_options() -> None:
    assert parse("[modules.mod_offline_stub]\n")["modules"]["mod_offline_stub"] == {}
    refused("[modules.mod_offline_stub]\nx = 1\n", "modules.mod_offline_stub.x: unknown option")
