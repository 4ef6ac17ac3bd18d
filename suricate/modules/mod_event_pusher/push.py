"""The `push` backend: XEP-0357 Push Notifications.

A client (typically a phone app) enables push with its app server's JID and a node (§5); from
then on, a message that reaches the account while it cannot be delivered live — stored
offline because no session is there, or queued for a stream-management session whose
connection is gone (XEP-0198 §5, the state phones spend most of their time in) — makes the
server publish a notification to that node (§7): an XEP-0004 form `urn:xmpp:push:summary` with
the number of messages since the account was last online, the last sender and, unless turned
off, the last body. The app server turns it into an APNs/FCM wake-up. An error from the app
server disables that registration (§7.1: it "SHOULD"; a dead registration would otherwise be
retried on every message for ever), except a temporary one (type "wait"), which §7.1 lets the
server keep.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H
from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

from .store import PushRegistration, PushStore

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_event_pusher")

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
SUMMARY = "urn:xmpp:push:summary"

MOD_EVENT_PUSHER_PUSH_SENT = declare(
    "mod_event_pusher_push_sent", ("host_type",), {"count": SPIRAL, "failure_count": SPIRAL},
    "XEP-0357 notifications published to app servers; failures are errors or time-outs")

#: How long an app server may take to acknowledge a notification before it counts as failed.
PUBLISH_TIMEOUT = 10.0


def parse_enable(payload: Element) -> PushRegistration:
    """The registration an `<enable/>` asks for (XEP-0357 §5), or bad-request."""
    service, node = payload.get("jid"), payload.get("node")
    if not service or not node:
        raise StanzaError("bad-request", "enable needs the app server's jid and a node")
    try:
        service_jid = JID.parse(service)
    except InvalidJID:
        raise StanzaError("jid-malformed", "the app server's jid is not a valid JID") from None
    form = payload.find("x", ns.DATA_FORMS)
    serialized = ""
    if form is not None:
        # §5: the optional form holds publish-options; any other FORM_TYPE is an error.
        if _form_type(form) != PUBLISH_OPTIONS:
            raise StanzaError("bad-request", f"the enable form must be of type {PUBLISH_OPTIONS}")
        serialized = form.serialize()
    return PushRegistration(str(service_jid), node, serialized)


def _form_type(form: Element) -> str | None:
    for field in form.find_all("field", ns.DATA_FORMS):
        if field.get("var") == "FORM_TYPE":
            return field.find_text("value", ns.DATA_FORMS)
    return None


def notification(reg: PushRegistration, count: int, sender: str, body: str | None) -> Element:
    """The `<pubsub><publish>` payload of XEP-0357 §7 for one registration."""
    pubsub = Element("pubsub", PUBSUB)
    publish = pubsub.add("publish", attrs={"node": reg.node})
    item = publish.add("item")
    note = item.add("notification", PUSH)
    form = note.add("x", ns.DATA_FORMS, {"type": "submit"})
    fields = [("FORM_TYPE", SUMMARY), ("message-count", str(count)),
              ("last-message-sender", sender)]
    if body is not None:
        fields.append(("last-message-body", body))
    for var, value in fields:
        form.add("field", attrs={"var": var}).add("value", text=value)
    if reg.form:
        try:
            (options,) = parse_fragment(reg.form)
        except (XMLStreamError, ValueError):
            log.warning("push_form_unreadable service=%s node=%s", reg.service, reg.node)
        else:
            pubsub.add("publish-options").append(options)
    return pubsub


class PushBackend:
    """Registrations, the per-account message count, and publishing."""

    def __init__(self, server: Server, store: PushStore, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.store = store
        self.include_body: bool = bool(opts.get("include_body", True))
        self.virtual = {pattern.replace("@HOST@", host).lower()
                        for pattern in opts.get("virtual_pubsub_hosts", [])
                        for host in server.domains.served}
        # Messages notified since the account was last available (`message-count`).
        self._pending: dict[JID, int] = {}
        # The stanza last notified per account: a message to the bare JID reaches every
        # suspended resource, but is one message for the person.
        self._last: dict[JID, Element] = {}
        # Messages notified while queued for a session waiting to be resumed (XEP-0198 §5).
        # When nobody resumes it, the session hands them to offline storage as copies: they
        # were notified already and must not wake the phone (and raise the count) again.
        self._queued: dict[JID, Counter[tuple[str, str | None, str | None]]] = {}

    # -- enable / disable (XEP-0357 §5, §6) -------------------------------------------------
    async def enable(self, user: JID, payload: Element) -> None:
        reg = parse_enable(payload)
        assert user.local is not None
        await self.store.enable(user.domain, user.local, reg)

    async def disable(self, user: JID, payload: Element) -> None:
        service = payload.get("jid")
        if not service:
            raise StanzaError("bad-request", "disable needs the app server's jid")
        try:
            service = str(JID.parse(service))
        except InvalidJID:
            raise StanzaError("jid-malformed", "the app server's jid is not a valid JID") from None
        assert user.local is not None
        await self.store.disable(user.domain, user.local, service, payload.get("node"))

    # -- notifications (XEP-0357 §7) ---------------------------------------------------------
    def user_online(self, user: JID) -> None:
        self._pending.pop(user, None)
        self._last.pop(user, None)
        self._queued.pop(user, None)

    def message_missed(self, user: JID, sender: JID, stanza: Element,
                       queued: bool = False) -> None:
        """A message reached ``user`` (bare) while no session could show it: ``queued`` for
        a session waiting to be resumed, or else stored (offline, archive)."""
        if self._last.get(user) is stanza:
            return
        key = (str(sender), stanza.get("id"), stanza.find_text("body"))
        if queued:
            self._queued.setdefault(user, Counter())[key] += 1
        else:
            seen = self._queued.get(user)
            if seen is not None and seen[key] > 0:
                # The same message, handed on by a session whose resumption timed out.
                seen[key] -= 1
                if not +seen:
                    del self._queued[user]
                return
        self._last[user] = stanza
        count = self._pending[user] = self._pending.get(user, 0) + 1
        body = stanza.find_text("body") if self.include_body else None
        self.server.spawn(self._notify(user, str(sender), count, body))

    async def _notify(self, user: JID, sender: str, count: int, body: str | None) -> None:
        assert user.local is not None
        regs = await self.store.registrations(user.domain, user.local)
        if regs:
            await asyncio.gather(*(self._publish(user, reg, count, sender, body) for reg in regs))

    async def _publish(self, user: JID, reg: PushRegistration, count: int, sender: str,
                       body: str | None) -> None:
        labels = {"host_type": user.domain}
        if JID.parse(reg.service).domain in self.virtual:
            await self._hand_over(user, reg, count, sender, body, labels)
            return
        payload = notification(reg, count, sender, body)
        try:
            answer = await self.server.iq.request(user, JID.parse(reg.service), "set", payload,
                                                  PUBLISH_TIMEOUT)
        except TimeoutError:
            # Slow is not dead: keep the registration, count the failure.
            log.warning("push_timeout user=%s service=%s", user, reg.service)
            self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels,
                                        {"failure_count": 1})
            return
        if answer.get("type") == "error":
            error = answer.find("error")
            if error is not None and error.get("type") == "wait":
                # RFC 6120 §8.3.2: a temporary error (the app server is rate-limiting,
                # overloaded): XEP-0357 §7.1 lets the server keep the registration, and 6.4
                # keeps it (it disables after "cancel" only).
                log.warning("push_failed_temporarily user=%s service=%s node=%s", user,
                            reg.service, reg.node)
            else:
                log.info("push_disabled_after_error user=%s service=%s node=%s", user,
                         reg.service, reg.node)
                assert user.local is not None
                await self.store.disable(user.domain, user.local, reg.service, reg.node)
            self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels,
                                        {"failure_count": 1})
            return
        self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels, {"count": 1})

    async def _hand_over(self, user: JID, reg: PushRegistration, count: int, sender: str,
                         body: str | None, labels: dict[str, str]) -> None:
        """A virtual PubSub host (6.4's `virtual_pubsub_hosts`): the summary goes to the modules
        on the `push_notifications` hook instead of an XMPP publish."""
        summary = {"message-count": str(count), "last-message-sender": sender}
        if body is not None:
            summary["last-message-body"] = body
        accepted = await self.server.hooks.fold_async(
            H.PUSH_NOTIFICATIONS, False, user, reg.service, reg.node, summary,
            form_values(reg.form))
        if not accepted:
            log.warning("push_not_handled user=%s service=%s: no module handles "
                        "push_notifications for this virtual PubSub host, or sending it on "
                        "failed", user, reg.service)
        self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels,
                                    {"count": 1} if accepted else {"failure_count": 1})


def form_values(serialized: str) -> dict[str, str]:
    """The fields of a stored publish-options form, FORM_TYPE left out."""
    if not serialized:
        return {}
    try:
        (form,) = parse_fragment(serialized)
    except (XMLStreamError, ValueError):
        return {}
    return {f.get("var") or "": f.find_text("value", ns.DATA_FORMS) or ""
            for f in form.find_all("field", ns.DATA_FORMS) if f.get("var") != "FORM_TYPE"}
