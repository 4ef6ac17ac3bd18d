"""stanza: send a message, a headline, or any stanza, routed like one from a client."""

from __future__ import annotations

import secrets
from typing import Any

from suricate.admin.context import Context, fail, parse_jid, served_domain
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
    frm = parse_jid(a["from"], "from")
    served_domain(ctx, frm.domain)
    message = Element("message", ns.CLIENT, {"type": "chat"})
    message.add("body", text=a["body"])
    return _route(ctx, frm, _to(a["to"]), message)


async def send_message_headline(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    frm = parse_jid(a["from"], "from")
    served_domain(ctx, frm.domain)
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
    return route_stanza(ctx, stanza)


RESOLVERS = {
    ("StanzaAdminMutation", "sendMessage"): send_message,
    ("StanzaAdminMutation", "sendMessageHeadLine"): send_message_headline,
    ("StanzaAdminMutation", "sendStanza"): send_stanza,
}
