"""The `push` backend: XEP-0357 Push Notifications.

A client (typically a phone app) enables push with its app server's JID and a node (§5); from
then on, a message that reaches the account while it cannot be delivered live — stored
offline because no session is there, or queued for a stream-management session whose
connection is gone (XEP-0198 §5, the state phones spend most of their time in) — makes the
server publish a notification to that node (§7): an XEP-0004 form `urn:xmpp:push:summary` with
the number of messages notified to that node since its device was last back, the last sender
and, unless turned off, the last body. The app server turns it into an APNs/FCM wake-up.

Each registration belongs to the device (resource) that enabled it: a message queued for one
waiting session wakes that device only, a stored one every device but those connected, and
the copies of one message wake a device once.

An error from the app server disables that registration (§7.1: it "SHOULD"; a dead
registration would otherwise be retried on every message for ever), except a temporary one
(type "wait"), which §7.1 lets the server keep; an app server that cannot be reached or does
not answer is given a few notifications in a row first (a component restarting, a federation
link down).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H
from suricate.core.keyed_locks import KeyedLocks
from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.protocol.c2s import C2SState
from suricate.protocol.errors import StanzaError
from suricate.protocol.stanza import message_type
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

#: Error conditions that say the app server could not be reached, not what it thinks of the
#: registration (RFC 6120 §8.3.3: our server or a federation peer answering for it): an app
#: server component restarting, a federation link down, a JID nobody serves.
UNREACHABLE = frozenset({"remote-server-not-found", "remote-server-timeout",
                         "service-unavailable"})
#: Notifications in a row that may find a registration's app server unreachable or silent
#: before it is disabled (XEP-0357 §7.1: a server "MAY choose to keep a service enabled if the
#: error is deemed recoverable or transient, until a sufficient number of errors have been
#: received in a row").
UNREACHABLE_IN_A_ROW = 5


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


#: A registration: the app server's JID and the node (XEP-0357 §5).
RegKey = tuple[str, str]
#: What tells copies of one message apart from other messages: sender, id, the body's hash
#: (the router gives each resource of a bare JID its own copy; a session whose resumption
#: timed out hands its copies on to offline storage). Two messages without an id, of one
#: sender and one text, look like one: the second wakes no device the first woke already.
MessageKey = tuple[str, str | None, int]

#: Messages remembered per account as notified (to which registrations), until a device is back.
_NOTIFIED_KEPT = 64


class _Account:
    """What the push backend knows of one account beyond its stored registrations."""

    __slots__ = ("counts", "devices", "failures", "notified")

    def __init__(self) -> None:
        # The device (resource) behind each registration that has a count, as stored with
        # it (`push_registrations.device`), so that a device coming back finds its counts
        # without a database read.
        self.devices: dict[RegKey, str] = {}
        # Messages notified to each registration since its device was last back
        # (`message-count`, XEP-0357 §7: "unread or undelivered messages").
        self.counts: dict[RegKey, int] = {}
        # The registrations each recent message was notified to.
        self.notified: OrderedDict[MessageKey, set[RegKey]] = OrderedDict()
        # Notifications in a row whose app server was unreachable or did not answer.
        self.failures: dict[RegKey, int] = {}


class PushBackend:
    """Registrations, the devices behind them, the message counts, and publishing."""

    def __init__(self, server: Server, store: PushStore, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.store = store
        self.include_body: bool = bool(opts.get("include_body", True))
        self.virtual = {pattern.replace("@HOST@", host).lower()
                        for pattern in opts.get("virtual_pubsub_hosts", [])
                        for host in server.domains.served}
        self._accounts: dict[JID, _Account] = {}
        # One account's notifications are decided one at a time, in the order the messages
        # came (the registrations are read from the database in between).
        self._turns: KeyedLocks[JID] = KeyedLocks()

    def _account(self, user: JID) -> _Account:
        account = self._accounts.get(user)
        if account is None:
            account = self._accounts[user] = _Account()
        return account

    # -- enable / disable (XEP-0357 §5, §6) -------------------------------------------------
    async def enable(self, device: JID, payload: Element) -> None:
        """``device``: the full JID of the session that asks; its registration is bound to
        that resource, so that it is not woken while that session is connected."""
        # Stored with the registration: which device it wakes survives a restart.
        reg = dataclasses.replace(parse_enable(payload), device=device.resource or "")
        user = device.bare
        assert user.local is not None
        await self.store.enable(user.domain, user.local, reg)
        account = self._accounts.get(user)
        if account is not None:
            # Enabling again (each login, for most clients) is the device saying it is here.
            key = (reg.service, reg.node)
            account.counts.pop(key, None)
            account.devices.pop(key, None)

    async def disable(self, user: JID, payload: Element) -> None:
        service = payload.get("jid")
        if not service:
            raise StanzaError("bad-request", "disable needs the app server's jid")
        try:
            service = str(JID.parse(service))
        except InvalidJID:
            raise StanzaError("jid-malformed", "the app server's jid is not a valid JID") from None
        await self.forget(user.bare, service, payload.get("node"))

    async def forget(self, user: JID, service: str, node: str | None) -> None:
        """Remove a registration (every one with ``service`` when ``node`` is None): the
        client's <disable/> (§6), or the app server saying it is gone (§7.1)."""
        assert user.local is not None
        await self.store.disable(user.domain, user.local, service, node)
        account = self._accounts.get(user)
        if account is not None:
            for key in [k for k in {*account.devices, *account.counts, *account.failures}
                        if k[0] == service and node in (None, k[1])]:
                account.devices.pop(key, None)
                account.counts.pop(key, None)
                account.failures.pop(key, None)

    # -- notifications (XEP-0357 §7) ---------------------------------------------------------
    def device_back(self, device: JID) -> None:
        """The session of ``device`` (full JID) is available again: logged in and present,
        or resumed (XEP-0198 §5). Its registrations count from nothing again, and so do
        those of no known device (whose device may be this one)."""
        user = device.bare
        account = self._accounts.get(user)
        if account is None:
            return
        account.counts = {key: count for key, count in account.counts.items()
                          if self._device(user, account.devices.get(key)) not in
                          (None, device.resource)}
        account.devices = {key: account.devices[key] for key in account.counts
                           if key in account.devices}
        # The messages it missed are delivered now (resumed, or from offline storage):
        # whatever copy of them comes later is not news to anyone.
        account.notified.clear()
        if not account.counts and not account.failures:
            del self._accounts[device.bare]

    def message_missed(self, user: JID, sender: JID, stanza: Element,
                       resource: str | None = None) -> None:
        """A message reached ``user`` (bare) while it could not be shown live: queued for
        the session of ``resource`` waiting to be resumed, or else stored (offline,
        archive) or sent to the account as a MUC Light member with no session."""
        self.messages_missed(user, [(sender, stanza)], resource)

    def messages_missed(self, user: JID, messages: Sequence[tuple[JID, Element]],
                        resource: str | None) -> None:
        """Messages, oldest first, that the session of ``resource`` has not shown: one
        notification per registration for all of them (their count, the last one's sender
        and body), each message counted once per registration whatever else notified it."""
        missed = []
        for sender, stanza in messages:
            text = stanza.find_text("body")
            key: MessageKey = (str(sender), stanza.get("id"), hash(text))
            missed.append((key, str(sender), text if self.include_body else None))
        if missed:
            self.server.spawn(self._notify(user, missed, resource))

    async def _notify(self, user: JID, missed: list[tuple[MessageKey, str, str | None]],
                      resource: str | None) -> None:
        assert user.local is not None
        async with self._turns.hold(user):
            regs = await self.store.registrations(user.domain, user.local)
            if not regs:
                return
            account = self._account(user)
            notified = []
            for message, _, _ in missed:
                already = account.notified.get(message)
                if already is None:
                    already = account.notified[message] = set()
                notified.append(already)
            while len(account.notified) > _NOTIFIED_KEPT:
                account.notified.popitem(last=False)
            publish = []
            for reg in regs:
                key = (reg.service, reg.node)
                owner = self._device(user, reg.device or None)
                if not self._wakes(user, owner, resource):
                    continue
                fresh = [i for i, keys in enumerate(notified) if key not in keys]
                if not fresh:
                    continue
                for i in fresh:
                    notified[i].add(key)
                count = account.counts[key] = account.counts.get(key, 0) + len(fresh)
                if reg.device:
                    account.devices[key] = reg.device
                _, sender, body = missed[fresh[-1]]
                publish.append(self._publish(user, reg, count, sender, body))
        if publish:
            await asyncio.gather(*publish)

    def _device(self, user: JID, owner: str | None) -> str | None:
        """The resource of the device behind a registration enabled by ``owner``, or None
        when unknown: enabled before devices were stored, or its session is gone (a client that enabled push once
        and logs in later under another resource, as a Bind 2 server gives, without enabling
        again: its device is any)."""
        if owner is None or self.server.sessions.local(user.with_resource(owner)) is None:
            return None
        return owner

    def _wakes(self, user: JID, owner: str | None, resource: str | None) -> bool:
        """Whether a message missed by the session of ``resource`` (None: by the account,
        stored for later) is worth a notification to a registration enabled by the session
        of ``owner``, which has a session (None: unknown device)."""
        if owner is None:
            return True
        if resource is not None:
            # Queued for one waiting session: its own device. Another device with a session
            # got its own copy (a message to the bare JID) or nothing (one to this full JID).
            return owner == resource
        # Stored for later: every device but one whose session is connected and shows
        # messages as they come (XEP-0198 §5: a waiting one does not).
        session = self.server.sessions.local(user.with_resource(owner))
        return session is None or getattr(session, "state", None) == C2SState.RESUME_SESSION

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
            # Slow is not dead, for a while.
            log.warning("push_timeout user=%s service=%s", user, reg.service)
            await self._unreachable(user, reg)
            self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels,
                                        {"failure_count": 1})
            return
        if answer.get("type") == "error":
            error = answer.find("error")
            condition = _condition(error)
            if condition in UNREACHABLE:
                log.warning("push_unreachable user=%s service=%s node=%s condition=%s", user,
                            reg.service, reg.node, condition)
                await self._unreachable(user, reg)
            elif error is not None and error.get("type") == "wait":
                # RFC 6120 §8.3.2: a temporary error (the app server is rate-limiting,
                # overloaded): XEP-0357 §7.1 lets the server keep the registration, and 6.4
                # keeps it (it disables after "cancel" only).
                log.warning("push_failed_temporarily user=%s service=%s node=%s", user,
                            reg.service, reg.node)
            else:
                log.info("push_disabled_after_error user=%s service=%s node=%s", user,
                         reg.service, reg.node)
                await self.forget(user, reg.service, reg.node)
            self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels,
                                        {"failure_count": 1})
            return
        account = self._accounts.get(user)
        if account is not None:
            account.failures.pop((reg.service, reg.node), None)
        self.server.instrument.emit(MOD_EVENT_PUSHER_PUSH_SENT, labels, {"count": 1})

    async def _unreachable(self, user: JID, reg: PushRegistration) -> None:
        key = (reg.service, reg.node)
        failures = self._account(user).failures
        failures[key] = failures.get(key, 0) + 1
        if failures[key] >= UNREACHABLE_IN_A_ROW:
            log.info("push_disabled_unreachable user=%s service=%s node=%s in_a_row=%d", user,
                     reg.service, reg.node, failures[key])
            await self.forget(user, reg.service, reg.node)

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


def _condition(error: Element | None) -> str | None:
    """The defined condition of an <error/> (RFC 6120 §8.3.3), None when it has none."""
    if error is None:
        return None
    return next((c.name for c in error.elements() if c.xmlns == ns.STANZAS_ERRORS), None)


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


# Bodiless messages a person waits on, worth waking a phone for: a call ringing (XEP-0353
# <propose/>; the rest of that exchange is for a client already awake), an end-to-end
# encrypted message whose client sends no fallback body (OMEMO, XEP-0384, old and new).
_JINGLE_MESSAGE_PREFIX = "urn:xmpp:jingle-message:"
_ENCRYPTED = frozenset({"eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"})


def notifiable(stanza: Element) -> bool:
    """Whether a message is worth waking a phone for."""
    # XEP-0357 §7 leaves the choice to the server; 6.4 notifies messages with a body (chat
    # states and receipts alone would wake a phone for nothing). We also wake it for an
    # incoming call and an OMEMO message without a body: on iOS (Monal, Siskin) nothing
    # else would make such a call ring or such a message show.
    # RFC 6121 §5.2.2: a type not understood is "normal"
    if stanza.name != "message" or message_type(stanza) not in ("chat", "normal", "groupchat"):
        return False
    if stanza.find_text("body"):
        # An empty <body/> says nothing to show: 6.4 skips it (push content: an empty body
        # is no notification). A MUC Light room's notifications (affiliation and
        # configuration changes, MUC Light protocol §5) carry one, and would otherwise wake
        # an offline member's phone with an empty message from the room's bare JID.
        return True
    for child in stanza.elements():
        xmlns = child.xmlns or ""
        if (child.name == "propose" and xmlns.startswith(_JINGLE_MESSAGE_PREFIX)) \
                or (child.name == "encrypted" and xmlns in _ENCRYPTED
                    and child.find("payload", xmlns) is not None):
            return True
    return False
