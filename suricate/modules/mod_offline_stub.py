"""mod_offline_stub: a message to an existing account with no available resource is dropped
silently instead of being answered with service-unavailable.

RFC 6121 §8.5.2.2.1 says that a message the server neither delivers nor stores for later
delivery is answered with service-unavailable; that is what the router does when no
``offline_message`` handler took the message (no mod_offline, or its quota is full). Some
deployments keep messages another way (mod_mam's archive, which the client syncs when it comes
back, or push notifications) and do not want the sender told that the message was not
delivered: with this module (MongooseIM 6.4's ``mod_offline_stub``) the router's last step
says "taken care of" and nothing goes back.

What is left alone: a message to an account that does not exist is still answered
service-unavailable (the router checks that before the hook, RFC 6121 §8.5.1); mod_mam (40),
mod_inbox (45), mod_offline (50) and mod_event_pusher (60) run before this handler (75, as in
MongooseIM), so the message is still archived, stored offline when mod_offline is there, and
pushed.
"""

from __future__ import annotations

from suricate.config.spec import Section
from suricate.core import hooks as H
from suricate.core.hooks import Stop
from suricate.core.module import Module
from suricate.jid import JID
from suricate.xml.element import Element


class ModOfflineStub(Module):
    name = "mod_offline_stub"
    options = Section(
        {},
        doc="Drops a message to an offline account silently instead of answering "
            "service-unavailable when nothing stored it (RFC 6121 §8.5.2.2.1); MongooseIM's "
            "mod_offline_stub.",
    )
    # Last of the offline_message handlers (MongooseIM runs it at 75 too): the archive,
    # mod_offline and the push notification have had their turn.
    hooks = ((H.OFFLINE_MESSAGE, "swallow", 75),)

    async def swallow(self, stored: bool, frm: JID, to: JID, stanza: Element) -> Stop:
        # True: the router takes the message as handled and bounces nothing. A storage
        # handler that failed earlier is not told apart (MongooseIM stops the hook the same
        # way): the sender hears nothing either.
        return Stop(True)
