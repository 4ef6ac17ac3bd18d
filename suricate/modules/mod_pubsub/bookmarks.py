"""XEP-0411 Bookmarks Conversion: XEP-0402 PEP bookmarks (one item per room, urn:xmpp:bookmarks:1)
and XEP-0048 bookmarks in private XML storage (one ``<storage xmlns='storage:bookmarks'>``) are
kept the same, so an old client and a new one see one list; so is XEP-0048's PEP node
(``storage:bookmarks``, one item ``current``, XEP-0402 §5.3 "#compat-pep"), which the module
serves as a view of XEP-0402's. Pure conversions here; the module calls them when either side
changes.
"""

from __future__ import annotations

from suricate.xml.element import Element

BOOKMARKS = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
#: XEP-0048 §3 with XEP-0223: the legacy PEP node's single item.
LEGACY_ITEM = "current"
#: XEP-0411 §2: the account converts between private XML and the legacy PEP node.
CONVERSION = "urn:xmpp:bookmarks-conversion:0"

#: XEP-0402 §3: the node configuration bookmarks are published with.
NODE_CONFIG = {"persist_items": True, "max_items": "max", "send_last_published_item": "never",
               "access_model": "whitelist"}


def _is_true(value: str | None) -> bool:
    return value in ("1", "true")


def to_legacy(items: list[tuple[str, Element]], keep: list[Element]) -> Element:
    """PEP items (room JID, ``<conference/>``) as a XEP-0048 ``<storage/>``; ``keep``: legacy
    children without a PEP counterpart (``<url/>``) that stay as they are."""
    storage = Element("storage", LEGACY)
    for room, conference in items:
        attrs = {"jid": room, "autojoin": "true" if _is_true(conference.attrs.get("autojoin"))
                 else "false"}
        if conference.attrs.get("name"):
            attrs["name"] = conference.attrs["name"]
        legacy = storage.add("conference", attrs=attrs)
        for child in ("nick", "password"):
            text = conference.find_text(child, BOOKMARKS)
            if text:
                legacy.add(child, text=text)
    for element in keep:
        storage.append(element)
    return storage


def from_legacy(storage: Element) -> list[tuple[str, Element]]:
    """A XEP-0048 ``<storage/>`` as PEP items (room JID, ``<conference/>``)."""
    out: list[tuple[str, Element]] = []
    for legacy in storage.find_all("conference", LEGACY):
        room = legacy.attrs.get("jid")
        if not room:
            continue
        attrs = {"autojoin": "true" if _is_true(legacy.attrs.get("autojoin")) else "false"}
        if legacy.attrs.get("name"):
            attrs["name"] = legacy.attrs["name"]
        conference = Element("conference", BOOKMARKS, attrs)
        for child in ("nick", "password"):
            text = legacy.find_text(child, LEGACY)
            if text:
                conference.add(child, text=text)
        out.append((room, conference))
    return out
