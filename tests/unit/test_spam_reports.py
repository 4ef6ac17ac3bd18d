"""XEP-0377 reports as mod_blocking reads them from a XEP-0191 <block/> (pure parsing), and the
configuration of their recipients."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.config import ConfigError, parse_config
from suricate.jid import JID
from suricate.modules.mod_blocking.reports import MAX_STANZA_IDS, Report, parse_reports
from suricate.xml.parser import parse_fragment


def block(items: str) -> list[Report]:
    [element] = parse_fragment(f"<block xmlns='urn:xmpp:blocking'>{items}</block>")
    return parse_reports(element)


def test_items_with_and_without_reports() -> None:
    reports = block(
        "<item jid='plain@x.org'/>"
        "<item jid='bot@x.org/res'><report xmlns='urn:xmpp:reporting:1'"
        " reason='urn:xmpp:reporting:abuse'>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='me@here' id='11'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='me@here' id='11'/>"
        "<text xml:lang='en'> rude </text><text xml:lang='de'>grob</text>"
        "<third-party/></report></item>")
    assert reports == [Report(JID.parse("bot@x.org/res"), "urn:xmpp:reporting:abuse",
                              "[en] rude\n[de] grob", ["11"], ["third-party"])]


def test_a_report_without_reason_is_ignored_and_ids_are_capped() -> None:
    # §3: the reason is a MUST; the block still happens (the caller blocks every item).
    assert block("<item jid='bot@x.org'><report xmlns='urn:xmpp:reporting:1'/></item>") == []
    ids = "".join(f"<stanza-id xmlns='urn:xmpp:sid:0' id='{n}'/>" for n in range(50))
    [report] = block("<item jid='bot@x.org'><report xmlns='urn:xmpp:reporting:1'"
                     f" reason='urn:xmpp:reporting:spam'>{ids}</report></item>")
    assert len(report.stanza_ids) == MAX_STANZA_IDS and report.text is None


def test_a_recipient_that_is_no_jid_stops_start_up() -> None:
    toml = ('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
            '[modules.mod_blocking]\nreport_recipients = ["abuse@localhost", "a@b@c"]\n')
    with pytest.raises(ConfigError, match=r"modules.mod_blocking.report_recipients\[1\]"):
        parse_config(toml, Path("."))
