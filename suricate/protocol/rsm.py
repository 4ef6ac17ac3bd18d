"""XEP-0059 Result Set Management over a result held whole in memory (a directory search,
a pubsub node's items): the page a ``<set/>`` asks for and the ``<set/>`` answering it.
Sans-IO, shared by the modules that page such results."""

from __future__ import annotations

from collections.abc import Sequence

from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

__all__ = ["rsm_page"]


def rsm_page(keys: Sequence[str], request: Element) -> tuple[int, int, Element]:
    """The page of ``keys`` (a result's ids, in order: found JIDs, node items) a XEP-0059 ``<set/>`` asks for: its
    bounds and the ``<set/>`` answering it. ``<after/>`` (§2.2) and ``<before/>`` (§2.3, empty:
    the last page) name an id of the results, ``<index/>`` (§2.4) a position; ``<max/>`` is
    the page size (§2.1). An id that is not in the results is item-not-found (§2.5)."""
    total = len(keys)
    maximum = _rsm_int(request, "max")
    after = request.find_text("after", ns.RSM)
    before = request.find_text("before", ns.RSM)
    index = _rsm_int(request, "index")
    start, end = 0, total
    if after is not None:
        if after not in keys:
            raise StanzaError("item-not-found", "no such item in the results")
        start = keys.index(after) + 1
    elif before is not None:
        if before and before not in keys:
            raise StanzaError("item-not-found", "no such item in the results")
        end = keys.index(before) if before else total
        start = max(0, end - maximum) if maximum is not None else 0
    elif index is not None:
        start = min(index, total)
    if maximum is not None and before is None:
        end = min(end, start + maximum)
    answer = Element("set", ns.RSM)
    if start < end:
        answer.add("first", attrs={"index": str(start)}, text=keys[start])
        answer.add("last", text=keys[end - 1])
    answer.add("count", text=str(total))
    return start, end, answer


def _rsm_int(request: Element, name: str) -> int | None:
    text = request.find_text(name, ns.RSM)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise StanzaError("bad-request", f"<{name}/> is not a non-negative integer")
    return value
