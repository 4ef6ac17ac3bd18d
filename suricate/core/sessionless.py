"""A message a local account sends without a session of its own: the REST client API's
``POST /messages``, the admin API's ``POST /messages``, GraphQL ``stanza.sendMessage`` and
``sendStanza``.

MongooseIM 6.4 (``mongoose_stanza_api:send``) runs the sender's send hooks for such a message
with a context made for the occasion (``mongoose_c2s:create_data`` with the sender's JID and
no connection), then routes it: the sender's archive keeps it, its carbon-enabled sessions get
a ``<sent/>`` copy, its inbox is updated, as when one of its clients sends it. Here the same:
``USER_SEND_PACKET`` folds over the message with a ``SessionlessSender`` in the place of the
c2s session, then the router takes it.

A ``SessionlessSender`` has what the hooks read from a session: the sender's JID (bare for the
client API, as in 6.4, or the full JID an administrator gave) and an empty ``module_state``: no
privacy or blocking list is active for it, no XEP-0198 counters, carbons not enabled. What a
handler would tell the sender's stream (a privacy refusal) has no stream to go to: logged.
Only messages run the fold: a presence or an IQ from an API is routed as it is (mod_presence
acts on the session a presence comes from, and there is none).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from suricate.core import hooks as H

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.xml.element import Element

log = logging.getLogger("suricate.sessionless")


class SessionlessSender:
    """The c2s session's stand-in for the send hooks (6.4's ``create_data``)."""

    __slots__ = ("server", "jid", "domain", "module_state")

    presence = None  # never available: not a session of the table
    priority = 0
    anonymous = False
    user_agent = None

    def __init__(self, server: Server, jid: JID) -> None:
        self.server = server
        self.jid = jid
        self.domain = jid.domain
        self.module_state: dict[str, Any] = {}

    def send(self, element: Element) -> None:
        """An answer to the sender's own stream: there is none."""
        log.info("sessionless_reply_dropped jid=%s name=%s type=%s", self.jid, element.name,
                 element.attrs.get("type"))

    def __repr__(self) -> str:
        return f"<SessionlessSender {self.jid}>"


def route_as_user(server: Server, frm: JID, to: JID, stanza: Element) -> None:
    """Route ``stanza`` (its from and to set) as sent by the local account ``frm``: a message
    first goes through the account's ``USER_SEND_PACKET`` hooks (archive, carbons, inbox,
    markers, AMP, event pushers); a handler may consume it (None: not routed)."""
    if stanza.name == "message" and frm.local is not None \
            and server.is_local_domain(frm.domain):
        filtered = server.hooks.fold(H.USER_SEND_PACKET, stanza, SessionlessSender(server, frm))
        if filtered is None:
            return
        stanza = filtered
    server.router.route(frm, to, stanza)
