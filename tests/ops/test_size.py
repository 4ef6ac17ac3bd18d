"""xml_size equals the length of the serialization it avoids."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suricate.instrument.size import xml_size
from suricate.xml import ns
from suricate.xml.element import Element

NAMES = st.sampled_from(["message", "body", "x", "é", "query"])
NAMESPACES = st.sampled_from([ns.CLIENT, "urn:x", "urn:é&<"])
TEXT = st.text(alphabet=st.sampled_from("ab &<>\"'\t\n\ré€😀"), max_size=12)


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> Element:
    el = Element(draw(NAMES), draw(NAMESPACES),
                 draw(st.dictionaries(st.sampled_from(["to", "id", "type"]), TEXT, max_size=3)))
    for _ in range(draw(st.integers(0, 3 if depth < 2 else 0))):
        if draw(st.booleans()):
            el.children.append(draw(TEXT))
        else:
            el.children.append(draw(elements(depth + 1)))
    return el


# A shared CI machine can be slow: the property, not the timing, is under test.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elements(), st.sampled_from([ns.CLIENT, "urn:x", None]))
def test_size_is_the_serialized_length(element: Element, parent: str | None) -> None:
    assert xml_size(element, parent) == len(element.to_bytes(parent))
