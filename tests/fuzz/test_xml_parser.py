"""The stream parser under hostile input (RFC 6120 §11, §4.9.3): every input ends in events or
one of the defined stream errors, never in another exception, whatever the chunking, and
memory stays bounded by ``max_stanza_size``."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suricate.protocol.errors import STREAM_CONDITIONS
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import MAX_DEPTH, StreamParser, XMLStreamError
from tests.fuzz.strategies import DTDS, HEADER, HOSTILE, elements, stanzas

Outcome = tuple[list[str], str | None]


def _outcome(chunks: list[bytes], limit: int | None = None) -> Outcome:
    """Serialized events and the error condition (None if the input was fine so far)."""
    parser = StreamParser(limit)
    seen: list[str] = []
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                seen.append(event.serialize() if isinstance(event, Element) else repr(event))
    except XMLStreamError as exc:
        assert exc.condition in STREAM_CONDITIONS, exc
        seen.extend(e.serialize() if isinstance(e, Element) else repr(e) for e in exc.events)
        return seen, exc.condition
    return seen, None


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.binary(max_size=2000))
def test_any_bytes_after_a_header_end_in_events_or_a_stream_error(junk: bytes) -> None:
    seen, _ = _outcome([HEADER, junk], limit=1000)
    assert seen  # the header itself was read before any error in what follows


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_as_a_whole_stream(junk: bytes, cuts: list[int]) -> None:
    _outcome(_split(junk, cuts), limit=200)


@given(st.lists(stanzas, min_size=1, max_size=3), st.lists(st.integers(0, 5000), max_size=10))
def test_chunking_never_changes_the_result(items: list[Element], cuts: list[int]) -> None:
    data = HEADER + b"".join(e.to_bytes(ns.CLIENT) for e in items) + b"</stream:stream>"
    assert _outcome(_split(data, cuts)) == _outcome([data])


@given(elements())
def test_what_we_serialize_parses_back_to_the_same_element(element: Element) -> None:
    # The serializer's escaping against the parser's normalization (XML 1.0 §2.11 line ends,
    # §3.3.3 attribute-value normalization): a routed stanza arrives as it was sent.
    stanza = Element("message", ns.CLIENT, {}, [element])
    parser = StreamParser()
    events = parser.feed(HEADER + stanza.to_bytes(ns.CLIENT))
    assert events[1:] == [stanza]


@given(st.lists(stanzas, max_size=3), st.sampled_from(HOSTILE), st.lists(stanzas, max_size=2),
       st.lists(st.integers(0, 3000), max_size=6))
def test_hostile_constructs_get_their_stream_error(before: list[Element],
                                                   hostile: tuple[bytes, str],
                                                   after: list[Element], cuts: list[int]) -> None:
    payload, condition = hostile
    data = (HEADER + b"".join(e.to_bytes(ns.CLIENT) for e in before) + payload
            + b"".join(e.to_bytes(ns.CLIENT) for e in after))
    events, error = _outcome(_split(data, cuts))
    assert error == condition
    # the stanzas before it, never one after
    assert [e for e in events if e.startswith("<")] == [e.serialize() for e in before]


@pytest.mark.parametrize("dtd", DTDS, ids=lambda d: d[:30].decode(errors="replace"))
@pytest.mark.parametrize("chunk", [1, 7, 100000])
def test_every_dtd_form_is_restricted_before_any_expansion(dtd: bytes, chunk: int) -> None:
    data = b"<?xml version='1.0'?>" + dtd + HEADER.removeprefix(b"<?xml version='1.0'?>")
    events, error = _outcome([data[i:i + chunk] for i in range(0, len(data), chunk)])
    assert (events, error) == ([], "restricted-xml")


def test_an_encoding_other_than_utf8_is_unsupported() -> None:
    header = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='ISO-8859-1'?>", 1)
    assert _outcome([header]) == ([], "unsupported-encoding")
    assert _outcome([HEADER.replace(b"'1.0'?>", b"'1.0' encoding='utf-8'?>", 1)])[1] is None


def test_nesting_deeper_than_the_limit_is_a_policy_violation() -> None:
    data = HEADER + b"<message>" + b"<a>" * MAX_DEPTH
    assert _outcome([data])[1] == "policy-violation"
    ok = HEADER + b"<message>" + b"<a>" * (MAX_DEPTH - 3) + b"</a>" * (MAX_DEPTH - 3)
    assert _outcome([ok + b"</message>"]) [1] is None


def _peak_while_feeding(prefix: bytes, filler: bytes, limit: int, total: int) -> tuple[int, str]:
    parser = StreamParser(limit)
    tracemalloc.start()
    try:
        parser.feed(HEADER + prefix)
        for _ in range(total // len(filler)):
            parser.feed(filler)
    except XMLStreamError as exc:
        condition = exc.condition
    else:
        condition = "none"
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, condition


@pytest.mark.parametrize(("prefix", "filler"), [
    (b"<message><body>", b"x" * 4096),  # an endless text
    (b"<message>", b"<a/>" * 1024),  # endless children
    (b"<message a='", b"x" * 4096),  # an endless attribute: one token, never reported
    (b"<message ", b"a" * 4096),  # an endless attribute name
    (b"<message><body><![CDATA[", b"y" * 4096),  # an endless CDATA section
])
def test_an_endless_stanza_is_refused_with_memory_bounded(prefix: bytes, filler: bytes) -> None:
    limit = 65536
    peak, condition = _peak_while_feeding(prefix, filler, limit, total=32 * 1024 * 1024)
    assert condition == "policy-violation"
    # Bounded by the limit, not by the 32 MiB sent; the worst case (empty children, one
    # Element each) costs about 64 bytes of objects per byte of XML.
    assert peak < 100 * limit, peak


def test_an_endless_stream_header_is_refused() -> None:
    parser = StreamParser(65536)
    parser.feed(b"<stream:stream to='")
    with pytest.raises(XMLStreamError) as exc:
        for _ in range(100):
            parser.feed(b"x" * 4096)
    assert exc.value.condition == "policy-violation"


def test_whitespace_keepalives_between_stanzas_never_add_up() -> None:
    parser = StreamParser(100)
    parser.feed(HEADER)
    for _ in range(10000):
        assert parser.feed(b" ") == []
    assert len(parser.feed(b"<message/>")) == 1
