"""mod_last: XEP-0012 Last Activity: the server's uptime, and for an account the time since
its last session ended, with the status text it left with.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from suricate.config.modules_spec import backend, iqdisc
from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_last.store import LastStore
from suricate.modules.mod_roster import roster_module
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.jid import JID

# RFC 6121 §2.1.2.5: the contact may see the user's presence when the user's roster item for
# the contact has a subscription of "from" or "both".
_SEES_PRESENCE = frozenset({"from", "both"})


class ModLast(Module):
    name = "mod_last"
    graphql = GraphQLCategory("suricate.modules.mod_last.graphql")
    options = Section(
        {"iqdisc": iqdisc("one_queue"), "backend": backend()},
        doc="XEP-0012 Last Activity.",
    )
    xeps = ("0012",)
    hooks = (
        # Before mod_presence (80) forgets that the session was available.
        (H.USER_SEND_PACKET, "watch_unavailable", 70),
        (H.UNSET_PRESENCE, "record_logout", 50),
    )
    iq_handlers = (
        ("local", ns.LAST, "server_uptime"),
        ("sm", ns.LAST, "account_last"),
    )
    features = (ns.LAST,)
    store_class = LastStore
    store: LastStore

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """What the account keeps here, for GDPR retrieval (``Module.personal_data``)."""
        server, user = jid.domain, jid.local or ""
        return [
            PersonalData("last", ("seconds", "status"), await self.store.user_rows(
                "last_activity", ("seconds", "status"), server, user, None)),
        ]

    def server_uptime(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            raise StanzaError("not-allowed")
        # XEP-0012 §5: to a server, seconds is its uptime and the query carries no text.
        seconds = max(0, int(time.time() - self.server.started_at))
        return Element("query", ns.LAST, {"seconds": str(seconds)})

    async def account_last(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            raise StanzaError("not-allowed")
        user = iq.to.bare
        if not await self.server.user_exists(user):
            raise StanzaError("service-unavailable")  # RFC 6121 §8.5.1
        if not await self.may_see_presence(iq.frm.bare, user):
            # XEP-0012 §3 and §8: only those allowed to see the user's presence learn it.
            raise StanzaError("forbidden")
        if any(s.available for s in self.server.sessions.resources(user)) or (
                self.server.cluster.spans_nodes and await self.server.cluster.available([user])):
            # §3: at least one available resource (on any node) -> seconds='0', empty query.
            return Element("query", ns.LAST, {"seconds": "0"})
        assert user.local is not None
        record = await self.store.get_last(user.domain, user.local)
        if record is None:
            raise StanzaError("item-not-found", "no recorded activity")
        timestamp, status = record
        seconds = max(0, int(time.time()) - timestamp)
        query = Element("query", ns.LAST, {"seconds": str(seconds)})
        if status:
            query.text = status
        return query

    async def may_see_presence(self, requester: JID, user: JID) -> bool:
        if requester == user:
            return True
        roster = roster_module(self.server)  # without mod_roster nobody is subscribed
        item = None if roster is None else await roster.get_roster_item(user, requester)
        return item is not None and item.subscription in _SEES_PRESENCE

    def watch_unavailable(self, stanza: Element | None, c2s: C2S) -> Element | None:
        """A client's broadcast unavailable presence: its <status/> is what XEP-0012 §3 hands
        out afterwards ("the status message of the last unavailable presence")."""
        if (stanza is not None and stanza.name == "presence"
                and stanza.attrs.get("type") == "unavailable" and "to" not in stanza.attrs
                and c2s.presence is not None):
            status = stanza.find_text("status", ns.CLIENT) or ""
            self.server.spawn(self._record(c2s, status))
        return stanza

    async def record_logout(self, acc: Any, c2s: C2S, status: str) -> Any:
        """A session became unavailable: remember when, and what it said."""
        if c2s.jid is not None and self.server.sessions.lookup(c2s.jid) is not c2s:
            # The session is gone and nobody said goodbye: what comes as "status" is the
            # reason the stream closed, which is not the user's words to show contacts.
            status = ""
        await self._record(c2s, status)
        return acc

    async def _record(self, c2s: C2S, status: str) -> None:
        user = c2s.jid.bare if c2s.jid is not None else None
        # Anonymous accounts vanish at logout: there is nothing to remember them by.
        if user is None or user.local is None or c2s.anonymous:
            return
        # A session ended because its account was removed (XEP-0077 §3.2, removeUser) ends
        # after the account's rows went: writing now would leave a row of a removed account,
        # which a new account of the same name would inherit. One lookup per logout, not
        # per stanza.
        if not await self.server.user_exists(user):
            return
        await self.store.set_last(user.domain, user.local, int(time.time()), status)
