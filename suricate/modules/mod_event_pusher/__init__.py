"""mod_event_pusher: events of the server pushed out to other systems (MongooseIM 6.4).

Each backend is enabled by its own table, as in 6.4:
- `[modules.mod_event_pusher.push]`: XEP-0357 push notifications to a mobile app's server
  (`push.py`);
- `[modules.mod_event_pusher.http]`: chat messages POSTed to HTTP services (`http.py`);
- `[modules.mod_event_pusher.rabbit]`: presence and message events to RabbitMQ (`rabbit.py`);
- `[modules.mod_event_pusher.sns]`: presence and message events to Amazon SNS (`sns.py`).

Only the hooks of the enabled backends are wired, so a server without `http` or `rabbit` pays
nothing per stanza for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.loader import References
from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import (
    DEFAULTS,
    OMIT,
    REQUIRED,
    Bool,
    Int,
    ListOf,
    OneOf,
    Option,
    Section,
    Str,
)
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module, PersonalData
from suricate.jid import JID
from suricate.protocol.c2s import C2SState
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

from .http import HttpBackend
from .push import PUSH, PushBackend, notifiable
from .rabbit import POOL_TAG, RabbitBackend
from .sns import SnsBackend
from .store import PushStore
from .unacked import UnackedWatch

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

DEFAULT_PLUGIN = "mod_event_pusher_push_plugin_defaults"
# 6.4's other plugin: the default's notifications plus those of a session waiting to be
# resumed, to the registration that session enabled; Suricate does both with either name.
ENHANCED_PLUGIN = "mod_event_pusher_push_plugin_enhanced"
DEFAULT_HTTP_CALLBACK = "mod_event_pusher_http_defaults"
DEFAULT_SNS_PLUGIN = "mod_event_pusher_sns_defaults"


def _exchange(name: str, topics: bool) -> Option:
    fields: dict[str, Option] = {
        "name": Option(Str(), name, "Exchange name."),
        "type": Option(OneOf(["topic", "direct", "fanout", "headers"]), "topic",
                       "Exchange type."),
    }
    if topics:
        fields["sent_topic"] = Option(Str(), f"{name}_sent", "Topic of sent messages.")
        fields["recv_topic"] = Option(Str(), f"{name}_recv", "Topic of received messages.")
    return Option(Section(fields), DEFAULTS, f"The `{name}` exchange.")


_PUSH = Section(
    {
        "iqdisc": iqdisc("one_queue"),
        "backend": backend(),
        "wpool": Option(
            Section({"workers": Option(Int(min=1), 100, "Concurrent publications."),
                     "strategy": Option(Str(), "available_worker", "Worker choice."),
                     "call_timeout": Option(Int(min=1, unit="milliseconds"), 5000,
                                            "Timeout of a call.")}),
            DEFAULTS, "Worker pool of the publications (asyncio needs none).", inert=True),
        "plugin_module": Option(
            OneOf([DEFAULT_PLUGIN, ENHANCED_PLUGIN]),
            DEFAULT_PLUGIN, "Which messages are notified and how. Either of 6.4's plugins, "
            "which behave the same here: messages stored for later, and (the enhanced "
            "plugin's addition, always on) those queued for a session waiting to be resumed, "
            "to the device whose session enabled push."),
        "virtual_pubsub_hosts": Option(
            ListOf(Str(), unique=True), [],
            '"Simulated" app server domains (`@HOST@` is each served domain): a notification '
            "for one of them is not sent over XMPP but handed to the modules handling the "
            "`push_notifications` hook (as 6.4 hands it to mod_push_service_mongoosepush)."),
        "include_body": Option(
            Bool(), True,
            "Suricate: put `last-message-body` in notifications (6.4 always does). Turn off so "
            "that message text never reaches the app server and its push provider."),
        "wake_unacked_after": Option(
            Int(min=0, unit="seconds"), 5,
            "Suricate (6.4 has none): a session with stream management that enabled push and "
            "has not acknowledged a message this long after it was written (an iOS app "
            "frozen with its socket open) is notified as if it waited to be resumed; 0: "
            "never. The server asks for the acknowledgement (XEP-0198 `<r/>`) when it writes "
            "the first message of a burst."),
    },
    doc="XEP-0357 push notifications for accounts that enabled them.",
)

_HTTP = Section(
    {
        "handlers": Option(
            ListOf(Section({
                "pool_name": Option(Str(), "http_pool",
                                    "A pool of `[outgoing_pools.http]`."),
                "path": Option(Str(nonempty=False), "", "Appended to the pool's path_prefix."),
                "callback_module": Option(
                    OneOf([DEFAULT_HTTP_CALLBACK]),
                    DEFAULT_HTTP_CALLBACK, "What is sent: chat messages with a body."),
            })),
            [], "Where each event is POSTed; every handler gets every event."),
    },
    doc="POST each chat message sent by a local user to HTTP services.",
)

_RABBIT = Section(
    {
        "presence_exchange": _exchange("presence", topics=False),
        "chat_msg_exchange": _exchange("chat_msg", topics=True),
        "groupchat_msg_exchange": _exchange("groupchat_msg", topics=True),
    },
    doc="Publish presence and message events to RabbitMQ through "
    "`[outgoing_pools.rabbit.event_pusher]`.",
)


_SNS = Section(
    {
        "presence_updates_topic": Option(
            Str(), OMIT, "SNS topic of presence changes; none published without it.",
            example='"user_presence_updated"'),
        "pm_messages_topic": Option(
            Str(), OMIT, "SNS topic of the chat messages users send; none without it.",
            example='"user_message_sent"'),
        "muc_messages_topic": Option(
            Str(), OMIT, "SNS topic of the groupchat messages users send; none without it.",
            example='"user_messagegroup_sent"'),
        "plugin_module": Option(
            OneOf([DEFAULT_SNS_PLUGIN]), DEFAULT_SNS_PLUGIN,
            "User ids (bare JIDs) and message attributes (none): 6.4's default plugin."),
        "muc_host": Option(Str(), "conference.@HOST@", "MUC service of the groupchat events.",
                           inert=True),
        "sns_host": Option(
            Str(), REQUIRED, "SNS endpoint: a host name (reached over HTTPS) or a URL, whose "
            'scheme, port and path are used (such as "http://localhost:4566" for an '
            "SNS-compatible service).",
            example='"sns.eu-west-1.amazonaws.com"'),
        "region": Option(Str(), REQUIRED, "AWS region of the topics.", example='"eu-west-1"'),
        "access_key_id": Option(Str(), REQUIRED, "AWS access key id.",
                                example='"AKIAIOSFODNN7EXAMPLE"'),
        "secret_access_key": Option(Str(), REQUIRED, "AWS secret access key.",
                                    example='"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"'),
        "account_id": Option(Str(), REQUIRED, "AWS account owning the topics.",
                             example='"123456789012"'),
        "pool_size": Option(Int(min=1), 100, "Concurrent Publish requests at most."),
        "publish_retry_count": Option(Int(min=0), 2,
                                      "Retries of a failed publication before it is dropped."),
        "publish_retry_time_ms": Option(Int(min=0, unit="milliseconds"), 50,
                                        "Base of the exponential back-off between retries."),
    },
    doc="Publish presence changes and the messages users send to Amazon SNS topics.",
)


class ModEventPusher(Module):
    name = "mod_event_pusher"
    xeps = ("0357",)
    options = Section(
        {
            "push": Option(_PUSH, OMIT, _PUSH.doc),
            "http": Option(_HTTP, OMIT, _HTTP.doc),
            "rabbit": Option(_RABBIT, OMIT, _RABBIT.doc),
            "sns": Option(_SNS, OMIT, _SNS.doc),
        },
        doc="Pushes events to other systems: XEP-0357 push, HTTP, RabbitMQ, Amazon SNS.",
    )
    store_class = PushStore
    store: PushStore

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        for i, handler in enumerate(opts.get("http", {}).get("handlers", [])):
            refs.pool_defined(f"{path}.http.handlers[{i}].pool_name", "http",
                              handler.get("pool_name"))
        if "rabbit" in opts:
            refs.pool_defined(f"{path}.rabbit", "rabbit", POOL_TAG)

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.push: PushBackend | None = None
        self.unacked: UnackedWatch | None = None
        self.http: HttpBackend | None = None
        self.rabbit: RabbitBackend | None = None
        self.sns: SnsBackend | None = None
        self._wired: list[tuple[H.Hook, Any, int]] = []

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's XEP-0357 push registrations (app server, node, publish-options),
        for GDPR retrieval."""
        columns = ("service", "node", "form", "device", "created_at")
        return [PersonalData("push", columns, await self.store.user_rows(
            "push_registrations", columns, jid.domain, jid.local or "", "service, node"))]

    async def start(self) -> None:
        pools = self.server.cfg.get("outgoing_pools", {})
        if "push" in self.opts:
            self.push = PushBackend(self.server, self.store, self.opts["push"])
            self.server.iq.register("sm", PUSH, self.push_iq)
            self._hook(H.DISCO_SM_FEATURES, self._sm_features, 50)
            self._hook(H.OFFLINE_MESSAGE, self.offline_message, 60)
            self._hook(H.USER_AVAILABLE, self.user_available, 50)
            self._hook(H.SESSION_RESUMED, self.session_resumed, 50)
            delay = self.opts["push"].get("wake_unacked_after", 5)
            if delay:
                self.unacked = UnackedWatch(self.server, self.push, delay)
                self._hook(H.SESSION_CLOSED, self.session_closed, 50)
        if "http" in self.opts and self.opts["http"]["handlers"]:
            self.http = HttpBackend(self.server, self.opts["http"]["handlers"],
                                    pools.get("http", {}))
            await self.http.start()
        if "rabbit" in self.opts:
            self.rabbit = RabbitBackend(self.server, self.opts["rabbit"],
                                        pools["rabbit"][POOL_TAG])
            await self.rabbit.start()
            # A client's own available and unavailable presence is seen by user_send_packet
            # (below), a connection lost while available by unset_presence.
            self._hook(H.UNSET_PRESENCE, self.unset_presence, 50)
            # "Received" is when the router hands a message to a local account (6.4's
            # filter_local_packet, priority 90): once per message whatever the account's
            # sessions, where user_receive_packet would see each resource's copy and never a
            # message stored for an offline account (offline_message covers that one).
            self._hook(H.FILTER_LOCAL_PACKET, self.message_routed, 90)
            self._hook(H.OFFLINE_MESSAGE, self.offline_message, 60)
        if "sns" in self.opts:
            self.sns = SnsBackend(self.server, self.opts["sns"])
            await self.sns.start()
            self._hook(H.UNSET_PRESENCE, self.unset_presence, 50)
        if self.http is not None or self.rabbit is not None or self.sns is not None:
            # 70: after the filters that may drop what a client sends (blocking 40, privacy
            # 41, AMP 45), before mod_presence (80), which consumes broadcast presence and
            # sets the session's presence: here the session still shows the state before.
            self._hook(H.USER_SEND_PACKET, self.user_send_packet, 70)
        if self.push is not None:
            self._hook(H.USER_RECEIVE_PACKET, self.user_receive_packet, 95)

    def _hook(self, hook: H.Hook, handler: Any, priority: int) -> None:
        if any(h is hook and f == handler for h, f, _ in self._wired):
            return
        self.server.hooks.add(hook, handler, priority)
        self._wired.append((hook, handler, priority))

    async def stop(self) -> None:
        for hook, handler, _ in self._wired:
            self.server.hooks.remove(hook, handler)
        self._wired.clear()
        if self.push is not None:
            self.server.iq.unregister("sm", PUSH)
        if self.unacked is not None:
            self.unacked.stop()
            self.unacked = None
        for backend_ in (self.http, self.rabbit, self.sns):
            if backend_ is not None:
                await backend_.stop()

    # -- XEP-0357 enable/disable -------------------------------------------------------------
    async def push_iq(self, iq: IqRequest) -> Element | None:
        assert self.push is not None
        # §5: a client enables push for its own account only.
        if iq.frm.bare != iq.to.bare:
            raise StanzaError("forbidden", "push is enabled by the account itself")
        if iq.type != "set":
            raise StanzaError("bad-request", "enable and disable are IQs of type set")
        if iq.payload.name == "enable":
            await self.push.enable(iq.frm, iq.payload)
            if self.unacked is not None:
                # Its device now wakes by push: tell when it stops reading (unacked.py).
                session = self.server.sessions.local(iq.frm)
                if session is not None:
                    self.unacked.watch(session)
        elif iq.payload.name == "disable":
            await self.push.disable(iq.to.bare, iq.payload)
        else:
            raise StanzaError("bad-request", "expected enable or disable")
        return None

    def _sm_features(self, acc: set[str], jid: Any) -> set[str]:
        return acc | {PUSH}

    # -- events ---------------------------------------------------------------------------------
    async def offline_message(self, stored: bool, frm: JID, to: JID, stanza: Element) -> bool:
        # Only a message the account will find later is worth waking the phone for (or
        # reporting as received): stored offline, or archived (mod_mam). A bounced one is the
        # sender's news, not theirs.
        kept = stored or "mod_mam" in self.server.modules
        if self.push is not None and (kept or self._from_muc_light(frm)) \
                and notifiable(stanza):
            self.push.message_missed(to.bare, frm, stanza)
        if self.rabbit is not None and kept:
            self._rabbit_received(frm, to, stanza)
        return stored

    def _from_muc_light(self, frm: JID) -> bool:
        # A MUC Light room sends each message to its members' bare JIDs; one with no session
        # finds it in the room (its archive), so it is news worth a wake-up, as in 6.4 (which
        # notifies "groupchat" messages a room routes to an offline member).
        light = self.server.modules.get("mod_muc_light")
        return light is not None and frm.domain in getattr(light, "services", ())

    def message_routed(self, stanza: Element | None, frm: JID, to: JID,
                       sessions: list[Any]) -> Element | None:
        if stanza is not None and self.rabbit is not None:
            self._rabbit_received(frm, to, stanza)
        return stanza

    def _rabbit_received(self, frm: JID, to: JID, stanza: Element) -> None:
        # 6.4's chat_msg_recv / groupchat_msg_recv: to_user_id is the address the message was
        # sent to (the bare JID for a message to the account, the occupant's full JID for a
        # room's message), the routing key the receiving account's bare JID.
        assert self.rabbit is not None
        mtype = stanza.get("type")
        if mtype not in ("chat", "groupchat"):
            return
        body = stanza.find_text("body")
        if body:
            self.rabbit.chat(str(frm), str(frm.bare), str(to), str(to.bare), body,
                             mtype == "groupchat", "recv")

    async def user_available(self, acc: Any, c2s: C2S) -> Any:
        if self.push is not None:
            self.push.device_back(c2s.jid)
        return acc

    def session_resumed(self, acc: None, c2s: C2S, old: C2S) -> None:
        # XEP-0198 §5: a resumed stream gets every queued message, yet sends no new initial
        # presence (no user_available): the phone is back, so what the next notification
        # counts (XEP-0357 §7 message-count, unread or undelivered) starts again.
        if self.push is not None:
            self.push.device_back(c2s.jid)
        return acc

    async def session_closed(self, acc: Any, c2s: C2S, reason: str) -> Any:
        if self.unacked is not None:
            self.unacked.session_closed(c2s)
        return acc

    async def unset_presence(self, acc: Any, c2s: C2S, status: str) -> Any:
        self._presence(c2s.jid, False)
        return acc

    def _presence(self, jid: JID, present: bool) -> None:
        if self.rabbit is not None:
            self.rabbit.presence(str(jid), str(jid.bare), present)
        if self.sns is not None:
            self.sns.presence(jid, present)

    def user_send_packet(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None:
            return None
        if stanza.name == "presence":
            # 6.4's user_present / user_not_present: the session becomes available (initial
            # presence, RFC 6121 §4.2) or unavailable (§4.5) by its own broadcast presence;
            # an update of an available session is no event. Published here, in the order
            # the client sent them (unset_presence covers a connection lost while available).
            if stanza.get("to") is None:
                ptype = stanza.get("type")
                if (ptype is None and c2s.presence is None) \
                        or (ptype == "unavailable" and c2s.presence is not None):
                    self._presence(c2s.jid, ptype is None)
            return stanza
        if stanza.name != "message":
            return stanza
        body = stanza.find_text("body")
        to = stanza.get("to")
        # 6.4's default callback: only a message with a non-empty body is an event (a chat
        # state or a receipt is no message anyone wants counted or e-mailed).
        if not body or to is None:
            return stanza
        mtype = stanza.get("type", "normal")
        try:
            receiver = JID.parse(to)
        except ValueError:
            return stanza  # the router answers jid-malformed
        if self.http is not None and mtype == "chat":
            self.http.message_sent(c2s.jid, receiver, body)
        if mtype in ("chat", "groupchat"):
            if self.rabbit is not None:
                self.rabbit.chat(str(c2s.jid), str(c2s.jid.bare), str(receiver),
                                 str(receiver.bare), body, mtype == "groupchat", "sent")
            if self.sns is not None:
                self.sns.message(c2s.jid, receiver, body, mtype == "groupchat")
        return stanza

    def user_receive_packet(self, stanza: Element | None, c2s: C2S) -> Element | None:
        if stanza is None or stanza.name != "message":
            return stanza
        if self.push is not None and c2s.state == C2SState.RESUME_SESSION \
                and notifiable(stanza):
            # XEP-0198 §5: the connection is gone and the session waits to be resumed; the
            # message is queued for it, but the phone will not see it until woken up.
            sender = stanza.get("from")
            if sender:
                self.push.message_missed(c2s.jid.bare, JID.parse(sender), stanza,
                                         resource=c2s.jid.resource)
        return stanza
