"""stanza: send a message, a headline, or any stanza, routed like one from a client; stream
the messages an account receives (``subscribeForMessages``, GET ``{path}/sse``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from suricate.admin.context import Context, fail, known_user, parse_jid
from suricate.core.sessionless import route_as_user
from suricate.jid import JID, InvalidJID
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment


def _route(ctx: Context, frm: JID, to: JID, stanza: Element) -> dict[str, Any]:
    stanza.attrs.setdefault("id", secrets.token_hex(8))
    stanza.attrs["from"] = str(frm)
    stanza.attrs["to"] = str(to)
    # As 6.4's mongoose_stanza_api: a message runs the sender's send hooks (its archive, its
    # carbons) before it is routed (suricate.core.sessionless).
    route_as_user(ctx.server, frm, to, stanza)
    return {"id": stanza.attrs["id"]}


def _to(value: Any) -> JID:
    try:
        return JID.parse(str(value))
    except (InvalidJID, ValueError) as exc:
        raise fail(f"to: invalid JID {value!r} ({exc})", "bad_jid") from None


async def send_message(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    frm = await known_user(ctx, parse_jid(a["from"], "from"))
    message = Element("message", ns.CLIENT, {"type": "chat"})
    message.add("body", text=a["body"])
    return _route(ctx, frm, _to(a["to"]), message)


async def send_message_headline(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    frm = await known_user(ctx, parse_jid(a["from"], "from"))
    message = Element("message", ns.CLIENT, {"type": "headline"})
    if a.get("subject"):
        message.add("subject", text=a["subject"])
    if a.get("body"):
        message.add("body", text=a["body"])
    return _route(ctx, frm, _to(a["to"]), message)


def parse_stanza(text: Any) -> Element:
    """The one message, presence or iq of a sendStanza argument."""
    try:
        # A stanza written without xmlns is in jabber:client, like one a client sends.
        elements = parse_fragment(str(text or ""), ns.CLIENT)
    except XMLStreamError as err:
        raise fail(f"stanza: not well-formed XML ({err})", "bad_stanza") from None
    if len(elements) != 1 or elements[0].name not in ("message", "presence", "iq"):
        raise fail("stanza: give exactly one message, presence or iq element", "bad_stanza")
    return elements[0]


def route_stanza(ctx: Context, stanza: Element) -> dict[str, Any]:
    """Route a stanza with its from and to, as one from a client of `from`."""
    return _route(ctx, _to(stanza.attrs["from"]), _to(stanza.attrs["to"]), stanza)


async def send_stanza(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    stanza = parse_stanza(a["stanza"])
    if not stanza.attrs.get("from") or not stanza.attrs.get("to"):
        raise fail("stanza: both 'from' and 'to' are required", "bad_stanza")
    await known_user(ctx, parse_jid(stanza.attrs["from"], "from"))
    return route_stanza(ctx, stanza)


def iso(micros: int) -> str:
    """XEP-0082 DateTime of a Unix time in microseconds, UTC, microseconds kept."""
    when = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
        microsecond=micros % 1_000_000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stanza_map(stanza: Element, delivered: int) -> dict[str, Any] | None:
    """What a subscribeForMessages stream makes of a stanza delivered to its session (6.4's
    ``mongoose_graphql_stanza_helper:handle_event``): every message, of any type, with its
    sender, the delivery time, and its id attribute as ``stanza_id`` ("" without one);
    anything else (presence, IQs) gives no event."""
    if stanza.name != "message":
        return None
    return {"sender": stanza.attrs.get("from"), "timestamp": iso(delivered),
            "stanza_id": stanza.attrs.get("id", ""), "stanza": stanza.serialize(ns.CLIENT)}


async def subscribe(ctx: Context, account: Any, check_user: bool) -> dict[str, Any] | None:
    """Open ``account``'s stream (the operation's first run) or answer the event this run is
    for (see ``Subscription``); 6.4's ``mongoose_stanza_api:open_session(Jid, CheckUser)``."""
    sub = ctx.subscription
    if sub is None:  # the endpoint refuses a subscription anywhere but /sse, before running it
        raise fail("subscriptions are served over Server-Sent Events at the endpoint's /sse "
                   "path", "bad_request")
    if sub.event is not None:
        return dict(sub.event)  # the account was checked when the stream was opened
    jid = parse_jid(account, "caller")
    if check_user:
        # The admin's caller must exist; a full JID's resource is replaced by the stream's
        # own (sse-<uuid>).
        await known_user(ctx, jid)
    sub.open(jid.bare, stanza_map)
    return None  # 6.4: null, then the events


async def subscribe_for_messages(ctx: Context, a: dict[str, Any]) -> dict[str, Any] | None:
    return await subscribe(ctx, a["caller"], check_user=True)


RESOLVERS = {
    ("StanzaAdminMutation", "sendMessage"): send_message,
    ("StanzaAdminMutation", "sendMessageHeadLine"): send_message_headline,
    ("StanzaAdminMutation", "sendStanza"): send_stanza,
    ("StanzaAdminSubscription", "subscribeForMessages"): subscribe_for_messages,
}
