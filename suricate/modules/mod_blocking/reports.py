"""XEP-0377 Blocking Command Reports: the ``<report/>`` a client attaches to an item of a
XEP-0191 block ("block and report" in Conversations, Gajim, Dino), kept for the operator.

§5: the block itself is done exactly as without a report (a malformed report is ignored,
never an error); what the server does with the report is its own business. Here each report
is stored (``spam_report``: who reported whom, the reason URI, the text, the stanza-ids and,
where the reporter's archive (mod_mam) holds them, the reported messages), written as one
log line (``spam_report ...``, for fail2ban or alerting), counted (``mod_blocking_report``)
and, with ``report_recipients``, told by message to the operator's JIDs.

§4 opt-ins (``<report-origin/>``, ``<third-party/>``) are stored with the report, not acted
on: the XEP makes forwarding a MAY and defines no format for it, and "Servers MUST NOT process
a report" without the opt-in only restricts, it never obliges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.storage.base import StorageError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_blocking.store import BlockingStore

log = logging.getLogger("suricate.mod_blocking")

REPORTING = "urn:xmpp:reporting:1"
SPAM = "urn:xmpp:reporting:spam"
ABUSE = "urn:xmpp:reporting:abuse"
#: §3: the reasons this document defines, advertised next to the feature (disco#info).
REASONS = (SPAM, ABUSE)
SID = "urn:xmpp:sid:0"  # XEP-0359
XML_LANG = "xml:lang"  # the key suricate.xml keeps it under

#: What one report may carry: a client names a few messages and a sentence; anything beyond
#: is cut, so a report cannot be used to fill the database.
MAX_STANZA_IDS = 20
MAX_TEXT = 4000

MOD_BLOCKING_REPORT = declare(
    "mod_blocking_report", ("host_type",), {"count": SPIRAL},
    "XEP-0377 reports attached to blocks (one per reported JID), labelled with the "
    "reporter's host type")


@dataclass(slots=True)
class Report:
    """One ``<report/>`` of one ``<item/>``: the JID blocked and reported, and what the
    reporter said about it."""
    reported: JID
    reason: str
    text: str | None = None
    stanza_ids: list[str] = field(default_factory=list)
    processing: list[str] = field(default_factory=list)


def parse_reports(block: Element) -> list[Report]:
    """The reports of a ``<block/>`` (§5: a ``<report/>`` child of an ``<item/>``). A report
    without a 'reason' (§3: MUST) or an item without a usable JID is skipped: the block goes
    on as if it had none."""
    reports: list[Report] = []
    for item in block.find_all("item", ns.BLOCKING):
        report = item.find("report", REPORTING)
        if report is None:
            continue
        reason = (report.attrs.get("reason") or "").strip()
        try:
            reported = JID.parse(item.attrs.get("jid", ""))
        except InvalidJID:
            continue
        if not reason:
            log.info("spam_report_ignored reported=%s why=no-reason", reported)
            continue
        texts = report.find_all("text", REPORTING)
        # §7: several <text/> in different languages: all kept, each with its language.
        text = "\n".join(
            (f"[{t.attrs[XML_LANG]}] " if len(texts) > 1 and XML_LANG in t.attrs else "")
            + (t.text or "").strip() for t in texts).strip() or None
        ids = [s.attrs["id"] for s in report.find_all("stanza-id", SID) if s.attrs.get("id")]
        processing = [name for name in ("report-origin", "third-party")
                      if report.find(name, REPORTING) is not None]
        reports.append(Report(reported, reason[:200], text[:MAX_TEXT] if text else None,
                              list(dict.fromkeys(ids))[:MAX_STANZA_IDS], processing))
    return reports


def summary(reporter: JID, report: Report, messages: Sequence[str]) -> str:
    """The body of the message telling ``report_recipients`` (plain text for any client)."""
    kind = {SPAM: "spam", ABUSE: "abuse"}.get(report.reason, report.reason)
    lines = [f"{reporter} blocked and reported {report.reported} for {kind}."]
    if report.text:
        lines.append(f"Their words: {report.text}")
    if report.stanza_ids:
        lines.append(f"Reported messages (stanza-id): {', '.join(report.stanza_ids)}")
    for xml in messages:
        lines.append(f"Archived: {xml}")
    return "\n".join(lines)


class ReportDesk:
    """mod_blocking's handling of reports: store, log, count, tell the recipients."""

    def __init__(self, server: Any, store: BlockingStore, recipients: Sequence[JID]) -> None:
        self.server = server
        self.store = store
        self.recipients = list(recipients)

    async def receive(self, reporter: JID, reports: list[Report], ip: str | None) -> None:
        for report in reports:
            try:
                messages = await self._archived(reporter, report)
                await self.store.add_report(
                    reporter.domain, reporter.local or "", str(report.reported), report.reason,
                    report.text, report.stanza_ids, messages, report.processing, time.time())
            except StorageError:
                # The block is done and answered; only the operator's copy is missing.
                log.exception("spam_report_not_stored reporter=%s reported=%s", reporter,
                              report.reported)
                messages = []
            # One line per report, key=value as c2s_auth_failed (docs/operations.md, "Spam and
            # abuse"): a filter can count reports per reported JID or per reported address.
            log.warning("spam_report reporter=%s reported=%s reason=%s reported_ip=%s "
                        "stanza_ids=%d reporter_ip=%s", reporter, report.reported,
                        report.reason, self._address_of(report.reported) or "-",
                        len(report.stanza_ids), ip or "-")
            instrument = self.server.instrument
            if instrument.enabled:
                instrument.emit(MOD_BLOCKING_REPORT, {"host_type": reporter.domain},
                                {"count": 1})
            self._tell(reporter, report, messages)

    async def _archived(self, reporter: JID, report: Report) -> list[str]:
        """The reported messages as the reporter's archive holds them (mod_mam), those of the
        reported JID only (§5: the stanza "SHOULD be by the same JID being reported")."""
        if not report.stanza_ids:
            return []
        mam = self.server.modules.get("mod_mam")
        found = getattr(mam, "received_messages", None)
        if found is None:
            return []
        messages: list[str] = await found(reporter.bare, report.reported.bare, report.stanza_ids)
        return messages

    def _address_of(self, reported: JID) -> str | None:
        """The client address of a reported account of this server that is online (for a
        fail2ban jail on spam from our own accounts); None for a stranger."""
        if not self.server.is_local_domain(reported.domain) or reported.local is None:
            return None
        for session in self.server.sessions.resources(reported.bare):
            peer = getattr(getattr(session, "conn", None), "peer", None)
            if isinstance(peer, tuple | list) and peer:
                return str(peer[0])
        return None

    def _tell(self, reporter: JID, report: Report, messages: Sequence[str]) -> None:
        if not self.recipients:
            return
        server_jid = JID(None, reporter.domain, None)
        body = summary(reporter, report, messages)
        for recipient in self.recipients:
            msg = Element("message", ns.CLIENT, {"type": "chat", "from": str(server_jid),
                                                 "to": str(recipient)})
            msg.add("body", text=body)
            self.server.router.route(server_jid, recipient, msg)
