"""docs/configuration.md is generated from the spec and must stay in sync with it."""

from __future__ import annotations

from pathlib import Path

from suricate.config.docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_checked_in_reference_matches_the_spec() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run "
        "`python -m suricate.config.docs > docs/configuration.md`"
    )


def test_reference_documents_every_section_and_key_options() -> None:
    text = render()
    for heading in (
        "`general.loglevel`",
        "`listen.c2s[].tls.mode`",
        "`listen.component[].password`",
        "`s2s.outgoing.dns.timeout`",
        "`auth.password.scram_iterations`",
        "`outgoing_pools.rdbms.TAG.connection.driver`",
        "`shaper.NAME.max_rate`",
        "`acl.NAME[].match`",
        "`access.NAME[].value`",
        "`modules.mod_ping.ping_interval`",
    ):
        assert heading in text, heading
