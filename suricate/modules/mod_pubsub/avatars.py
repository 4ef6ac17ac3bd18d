"""XEP-0398 User Avatar to vCard-Based Avatars Conversion: what the PEP avatar nodes of XEP-0084
(``urn:xmpp:avatar:metadata`` and ``urn:xmpp:avatar:data``) hold for a vCard PHOTO, and back.
Pure conversions; mod_pubsub calls them when either side changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from suricate.xml.element import Element

METADATA = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"


def chosen_info(metadata: Element) -> tuple[str, str | None] | None:
    """(id, type) of the avatar the metadata announces, None for "no avatar" (XEP-0084 §4.2:
    an empty ``<metadata/>``). XEP-0398 §3: of several ``<info/>``, the one without a url
    (whose bytes are in the data node)."""
    for info in metadata.find_all("info", METADATA):
        if info.attrs.get("id") and not info.attrs.get("url"):
            return info.attrs["id"], info.attrs.get("type")
    return None


def data_bytes(data: Element) -> bytes | None:
    """The image in a ``<data/>`` payload (base64, XEP-0084 §4.1), None when unreadable."""
    try:
        return base64.b64decode("".join(data.text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def avatar_items(mime: str | None, image: bytes) -> tuple[str, Element, Element]:
    """The item id (SHA-1, XEP-0084 §4.1), data and metadata payloads of an image."""
    item_id = hashlib.sha1(image).hexdigest()
    data = Element("data", DATA, {}, [base64.b64encode(image).decode()])
    metadata = Element("metadata", METADATA)
    metadata.add("info", attrs={"id": item_id, "bytes": str(len(image)),
                                "type": mime or "image/png"})
    return item_id, data, metadata
