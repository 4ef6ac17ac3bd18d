"""What a room asks of its archive (XEP-0313 on the room JID): the seam between mod_muc and
the module that keeps room archives (mod_mam with its ``muc`` section).

mod_muc does not import the archive: the archive module offers an object of this shape as
``muc_archive`` and the room finds it when it needs it, so either module runs without the
other.
"""

from __future__ import annotations

from typing import Protocol

from suricate.jid import JID
from suricate.xml.element import Element

SID = "urn:xmpp:sid:0"  # XEP-0359
RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424
FASTEN = "urn:xmpp:fasten:0"  # XEP-0422
#: MongooseIM's retraction by stanza-id (its mod_mam documentation, "Retraction on the
#: stanza-id"): <apply-to xmlns='urn:xmpp:fasten:0' id='STANZA-ID'><retract
#: xmlns='urn:esl:message-retract-by-stanza-id:0'/></apply-to>.
RETRACT_ESL = "urn:esl:message-retract-by-stanza-id:0"
#: XEP-0424 §"Tombstones": what an archive that keeps tombstones advertises.
RETRACT_TOMBSTONE = RETRACT + "#tombstone"


def retraction_of(message: Element) -> tuple[str, bool] | None:
    """The room stanza-id a groupchat retraction names, and whether it is MongooseIM's form
    (True) rather than XEP-0424's <retract id='...'/> (§5.1: in a room the id is the
    room's stanza-id); None for any other message."""
    for child in message.children:
        if not isinstance(child, Element):
            continue
        if child.name == "retract" and child.xmlns == RETRACT:
            return child.attrs.get("id", ""), False
        if child.name == "apply-to" and child.xmlns == FASTEN \
                and child.find("retract", RETRACT_ESL) is not None:
            return child.attrs.get("id", ""), True
    return None


def retracted_element(room: JID, target: str, esl: bool, stamp: str) -> Element:
    """The <retracted/> of a room's tombstone (XEP-0424 §5): XEP-0424's names the message
    by its id; MongooseIM's (in its namespace) by the room's <stanza-id/>."""
    if esl:
        return Element("retracted", RETRACT_ESL, {"stamp": stamp},
                       [Element("stanza-id", SID, {"id": target, "by": str(room)})])
    return Element("retracted", RETRACT, {"stamp": stamp, "id": target})


class RoomArchive(Protocol):
    #: Whether XEP-0424 retractions act on the archive (the section's message_retraction):
    #: rooms then advertise MongooseIM's retraction by stanza-id too.
    retraction: bool

    def archives(self, service: str) -> bool:
        """Whether rooms of this MUC service domain are archived."""

    def archivable(self, message: Element) -> bool:
        """Whether this groupchat message goes to the archive (XEP-0313 §5, XEP-0334)."""

    def new_id(self) -> int:
        """The id of the next archived message: also its XEP-0359 stanza-id."""

    def keep(self, room: JID, mam_id: int, nick: str, sender: JID | None,
              message: Element) -> None:
        """Keep the message the occupants got (off the message path)."""

    def retract(self, room: JID, target: int, author: JID | None,
                retracted: Element) -> None:
        """Replace the archived message ``target`` with a tombstone holding ``retracted``
        (XEP-0424 §5 / XEP-0425 §5); with ``author``, only if that bare JID sent it."""

    def query(self, room: JID, asker: JID, iq: Element, *, real_jids: bool) -> None:
        """Answer a MAM IQ to the room (the room checked who may read its archive);
        ``real_jids``: the asker may see the senders' real JIDs."""

    def remove_room(self, room: JID) -> None:
        """The room was destroyed: its archive goes with it."""

    async def recent(self, room: JID, limit: int,
                     before_micros: int | None) -> list[tuple[int, str, str]]:
        """(id, sender's real bare JID, message XML) of the newest ``limit`` messages
        (older than ``before_micros`` when given), oldest first."""


def archive_of(server: object) -> RoomArchive | None:
    """The server's room archive, if a module keeps one."""
    modules = getattr(server, "modules", {})
    mam = modules.get("mod_mam")
    archive: RoomArchive | None = getattr(mam, "muc_archive", None)
    return archive
