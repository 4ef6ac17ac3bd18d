"""Room vCards and avatars: XEP-0486 (MUC Avatars) over XEP-0054 (vcard-temp).

An owner sets the room's vCard with a vcard-temp IQ to the room's bare JID; anyone who may
ask the room its disco#info reads it back the same way. The room advertises ``vcard-temp``
and the SHA-1 of each PHOTO (XEP-0153 §4.1 hashing) in the ``muc#roominfo_avatarhash``
field of its disco#info form, so clients learn about an avatar without joining.

Pure code: no server, no I/O (the room and the store call it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

#: XEP-0486 §3.3 / §8: the muc#roominfo field carrying the avatar's hashes.
AVATARHASH = "muc#roominfo_avatarhash"
#: The most a room's vCard may take, serialized: the limit of an account's vCard (mod_vcard's
#: MAX_VCARD_BYTES). A room's vCard is kept in memory with the room and written with it.
MAX_ROOM_VCARD_BYTES = 64 * 1024


def accepted_vcard(payload: Element) -> Element | None:
    """The vCard an owner's set stores, None when it removes the room's vCard (XEP-0486 §3.2:
    "setting an empty vCard unpublishes the avatar"). XEP-0054 §3.2: a set replaces the
    whole vCard. Raises the StanzaError answering a vCard that cannot be taken."""
    vcard = Element("vCard", ns.VCARD, dict(payload.attrs), payload.children)
    if vcard.first_element() is None:
        return None
    if len(vcard.serialize().encode()) > MAX_ROOM_VCARD_BYTES:
        # As mod_vcard for accounts (XEP-0054 names no condition for a vCard too large).
        raise StanzaError("not-acceptable",
                          f"a room's vCard is limited to {MAX_ROOM_VCARD_BYTES} bytes")
    for photo in vcard.find_all("PHOTO", ns.VCARD):
        text = photo.find_text("BINVAL", ns.VCARD)
        if text and _decoded(text) is None:
            # A photo no client could show, whose hash could not be advertised.
            raise StanzaError("bad-request", "PHOTO/BINVAL is not base64")
    return vcard


def avatar_hashes(vcard: Element | None) -> list[str]:
    """XEP-0486 §3.3 and §5.1: the hex SHA-1 (XEP-0153 §4.1) of each PHOTO's decoded BINVAL,
    in document order, each once; empty without a photo (§4: then no avatarhash field)."""
    if vcard is None:
        return []
    hashes: list[str] = []
    for photo in vcard.find_all("PHOTO", ns.VCARD):
        text = photo.find_text("BINVAL", ns.VCARD)
        data = _decoded(text) if text else None
        if data:
            digest = hashlib.sha1(data).hexdigest()
            if digest not in hashes:
                hashes.append(digest)
    return hashes


def parse_stored(xml: str) -> Element | None:
    """A stored room vCard read back (None: unreadable, as if the room had none)."""
    try:
        elements = parse_fragment(xml)
    except XMLStreamError:
        return None
    if len(elements) != 1 or elements[0].name != "vCard" or elements[0].xmlns != ns.VCARD:
        return None
    return elements[0]


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
