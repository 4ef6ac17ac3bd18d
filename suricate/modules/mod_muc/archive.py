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


class RoomArchive(Protocol):
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
