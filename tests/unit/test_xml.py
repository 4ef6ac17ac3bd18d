"""The stream parser against each construct RFC 6120 §11 restricts, and the serializer."""

from __future__ import annotations

import random

import pytest

from suricate.xml import Element, StreamClose, StreamOpen, StreamParser, XMLStreamError, ns
from suricate.xml.element import WrittenContent, WrittenElement, escape_attr, escape_text

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
          b"xml:lang='en'>")


def opened(max_size: int | None = None) -> StreamParser:
    parser = StreamParser(max_size)
    events = parser.feed(HEADER)
    assert isinstance(events[0], StreamOpen)
    return parser


def test_header_event() -> None:
    (event,) = StreamParser().feed(HEADER)
    assert isinstance(event, StreamOpen)
    assert event.name == "stream" and event.xmlns == ns.STREAM
    assert event.content_ns == ns.CLIENT
    assert event.attrs == {"to": "localhost", "version": "1.0", "xml:lang": "en"}


def test_stanzas_arrive_whole_whatever_the_chunking() -> None:
    parser = opened()
    data = b"<message to='a@b'><body>h\xc3\xa9 &amp; &lt;</body><x xmlns='urn:x'/></message>"
    events: list[object] = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    (msg,) = events
    assert isinstance(msg, Element)
    assert msg.name == "message" and msg.xmlns == ns.CLIENT
    assert msg.find_text("body") == "hé & <"
    x = msg.find("x", "urn:x")
    assert x is not None
    assert msg.serialize(ns.CLIENT) == (
        '<message to="a@b"><body>hé &amp; &lt;</body><x xmlns="urn:x"/></message>')


def test_stream_close_and_whitespace() -> None:
    parser = opened()
    assert parser.feed(b"  \n\t ") == []
    (event,) = parser.feed(b"</stream:stream>")
    assert isinstance(event, StreamClose)


@pytest.mark.parametrize(("data", "condition"), [
    (b"<!-- comment -->", "restricted-xml"),
    (b"<?target data?>", "restricted-xml"),
    (b"<message><body>&ent;</body></message>", "restricted-xml"),
    (b"<message><body>&#0;</body></message>", "not-well-formed"),
    (b"<message><body></message>", "not-well-formed"),
    (b"<a:b/>", "not-well-formed"),  # undeclared prefix
    (b"\xff\xfe", "not-well-formed"),  # invalid UTF-8
    (b"text at the top level", "not-well-formed"),
])
def test_restricted_and_malformed(data: bytes, condition: str) -> None:
    parser = opened()
    with pytest.raises(XMLStreamError) as exc:
        parser.feed(data)
    assert exc.value.condition == condition


@pytest.mark.parametrize("doctype", [
    b"<!DOCTYPE stream>",
    b"<!DOCTYPE s [<!ENTITY a 'b'>]>",
    b"<!DOCTYPE s SYSTEM 'http://example.com/x.dtd'>",
    b"<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]>",
])
def test_every_dtd_form_is_refused(doctype: bytes) -> None:
    with pytest.raises(XMLStreamError) as exc:
        StreamParser().feed(b"<?xml version='1.0'?>" + doctype + HEADER[21:])
    assert exc.value.condition == "restricted-xml"


def test_stanza_size_limit_while_streaming_and_whole() -> None:
    parser = opened(100)
    with pytest.raises(XMLStreamError) as exc:
        parser.feed(b"<message><body>" + b"x" * 200)  # never finished: still caught
    assert exc.value.condition == "policy-violation"
    parser = opened(100)
    with pytest.raises(XMLStreamError):
        parser.feed(b"<message><body>" + b"x" * 200 + b"</body></message>")
    parser = opened(100)
    assert len(parser.feed(b"<message><body>ok</body></message>")) == 1


def test_deep_nesting_is_refused() -> None:
    parser = opened()
    with pytest.raises(XMLStreamError) as exc:
        parser.feed(b"<a>" * 100)
    assert exc.value.condition == "policy-violation"


class _CountingExpat:
    """expat with a count of the bytes each ``Parse`` scans: the new bytes plus the
    unfinished token it scans again from its start."""

    def __init__(self, parser: StreamParser) -> None:
        self._expat = parser._parser
        self.fed = parser._fed
        self.scanned = 0

    def Parse(self, data: bytes, final: bool) -> int:  # noqa: N802 (pyexpat's name)
        self.scanned += self.fed - self._expat.CurrentByteIndex + len(data)
        self.fed += len(data)
        return int(self._expat.Parse(data, final))

    def __getattr__(self, name: str) -> object:
        return getattr(self._expat, name)


@pytest.mark.parametrize("prefix", [b"<message a='", b"<message ", b"<!-- ", b"<a"])
def test_a_long_token_in_small_reads_is_not_scanned_again_at_every_read(prefix: bytes) -> None:
    parser = opened()
    counting = _CountingExpat(parser)
    parser._parser = counting  # type: ignore[assignment]
    total = 1024 * 1024
    parser.feed(prefix)
    for _ in range(total // 1024):
        assert parser.feed(b"x" * 1024) == []
    # Scanning the unfinished token again at each of the 1024 reads is ~512 MiB of work,
    # and held the event loop; growing steps keep it linear.
    assert counting.scanned < 4 * total, counting.scanned


def test_a_long_tag_still_ends_at_once_and_the_limit_holds_while_deferring() -> None:
    long_value = b"x" * 200_000
    parser = opened()
    parser.feed(b"<message id='" + long_value[:100_000])
    (message,) = parser.feed(long_value[100_000:] + b"'/>")  # the '>' ends it at once
    assert isinstance(message, Element) and message.attrs["id"] == long_value.decode()
    assert [e.name for e in parser.feed(b"<iq/>")] == ["iq"]  # deferring is over
    # A '>' inside the quoted value does not end the tag: the next one still does when the
    # held bytes are worth a rescan, and nothing is lost or reordered.
    parser = opened()
    parser.feed(b"<message id='" + long_value[:100_000])
    assert parser.feed(b"a>b") == []
    assert parser.feed(b"x" * 10_000) == []
    (message,) = parser.feed(b"'/><iq/>")[:1]
    assert isinstance(message, Element) and message.attrs["id"].endswith("a>b" + "x" * 10_000)
    # The next long tag gets its own first '>' at once again.
    parser.feed(b"<message id='" + long_value[:100_000])
    (message,) = parser.feed(b"'/>")
    assert isinstance(message, Element) and len(message.attrs["id"]) == 100_000
    # max_stanza_size still counts the bytes held back.
    parser = opened(150_000)
    parser.feed(b"<message id='" + long_value[:100_000])
    with pytest.raises(XMLStreamError) as exc:
        parser.feed(long_value[:60_000])
    assert exc.value.condition == "policy-violation"


def test_a_text_in_many_pieces_is_one_string() -> None:
    parser = opened()
    parser.feed(b"<message><body>")
    for _ in range(1000):
        parser.feed(b"y" * 10_000)
    (message,) = parser.feed(b"</body></message>")
    assert isinstance(message, Element)
    assert message.children[0].children == ["y" * 10_000_000]  # type: ignore[union-attr]


def test_serializer_escapes_and_prefixes() -> None:
    el = Element("features", ns.STREAM)
    el.add("starttls", ns.TLS).add("required")
    el.add("x", "urn:x", {"a": "\"'<&>"}, "1 < 2 & 3")
    assert el.serialize(ns.CLIENT, {ns.STREAM: "stream"}) == (
        '<stream:features><starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required/>'
        '</starttls><x xmlns="urn:x" a="&quot;&apos;&lt;&amp;&gt;">1 &lt; 2 &amp; 3</x>'
        "</stream:features>")


def test_copy_is_deep() -> None:
    el = Element("message", ns.CLIENT, {"to": "a@b"})
    el.add("body", text="x")
    dup = el.copy()
    dup.attrs["to"] = "c@d"
    body = dup.find("body")
    assert body is not None
    body.text = "y"
    assert el.attrs["to"] == "a@b" and el.find_text("body") == "x"
    assert el != dup


def test_written_content_declares_its_namespace_and_copies() -> None:
    inner = '<item jid="a@b"/><item jid="c@d"><group>G</group></item>'
    query = WrittenContent("query", ns.ROSTER, {"ver": 'v"1'}, inner)
    iq = Element("iq", ns.CLIENT, {"type": "result"}, [query])
    written = iq.serialize(ns.CLIENT)
    assert written == (f'<iq type="result"><query xmlns="{ns.ROSTER}" ver="v&quot;1">'
                       f'{inner}</query></iq>')
    # Read back, it is the element tree the text stands for.
    parsed = Element("query", ns.ROSTER, {"ver": 'v"1'})
    parsed.add("item", attrs={"jid": "a@b"})
    parsed.add("item", attrs={"jid": "c@d"}).add("group", text="G")
    assert parsed.serialize(ns.CLIENT) == written[len('<iq type="result">'):-len("</iq>")]
    # Under a prefixed parent the items stay in the roster namespace: a default declaration.
    assert query.serialize(ns.CLIENT, {ns.ROSTER: "r"}).startswith(f'<query xmlns="{ns.ROSTER}"')
    copy = iq.copy()
    assert copy.serialize(ns.CLIENT) == written and copy == iq
    empty = WrittenContent("query", ns.ROSTER, {}, "")
    assert empty.serialize(ns.CLIENT) == f'<query xmlns="{ns.ROSTER}"/>'  # as Element writes it
    assert empty != WrittenContent("query", ns.ROSTER, {}, "<x/>")


def test_written_element_keeps_its_xml_only_while_unchanged() -> None:
    el = Element("message", ns.CLIENT, {"to": "a@b", "type": "chat"})
    el.add("body", text="hi")
    kept = '<message to="a@b" type="chat"><body>hi</body><kept/></message>'
    written = WrittenElement(el, kept)
    # Its own namespace as the parent's (a jabber:client stream): the kept XML as it is.
    assert written.serialize(ns.CLIENT) == kept
    assert written.to_bytes(ns.CLIENT, {ns.STREAM: "stream"}) == kept.encode()
    # Anywhere else (inside a carbon's <forwarded/>, a BOSH body) it needs its declaration.
    outer = Element("forwarded", ns.FORWARD, children=[written])
    assert outer.serialize(ns.CLIENT) == (
        '<forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" to="a@b" '
        'type="chat"><body>hi</body></message></forwarded>')
    # It shares attributes and children with the element it was made from: a change to
    # either (an attribute, a child added or taken off) is serialized afresh.
    el.attrs["to"] = "c@d"
    assert written.serialize(ns.CLIENT) == el.serialize(ns.CLIENT)
    el.attrs["to"] = "a@b"
    assert written.serialize(ns.CLIENT) == kept
    el.add("x", "urn:x")
    assert written.serialize(ns.CLIENT) == el.serialize(ns.CLIENT)
    assert written.copy() == el and type(written.copy()) is Element


def _reference_write(el: Element, out: list[str], parent_ns: str | None,
                     prefixes: dict[str, str] | None) -> None:
    """The serializer as it was before its fast paths (one escape per value, no declaration
    cache, no leaf shortcut): the new one must write exactly the same bytes."""
    prefix = prefixes.get(el.xmlns) if prefixes else None
    current = parent_ns
    if prefix:
        tag = prefix + ":" + el.name
        start = "<" + tag
    else:
        tag = el.name
        start = "<" + tag
        if el.xmlns != parent_ns:
            start += ' xmlns="' + escape_attr(el.xmlns) + '"'
            current = el.xmlns
    start += "".join(" " + k + '="' + escape_attr(v) + '"' for k, v in el.attrs.items())
    if not el.children:
        out.append(start + "/>")
        return
    out.append(start + ">")
    for child in el.children:
        if isinstance(child, str):
            out.append(escape_text(child))
        else:
            _reference_write(child, out, current, prefixes)
    out.append("</" + tag + ">")


def _random_tree(rng: random.Random, depth: int = 0) -> Element:
    # Characters the escapes care about (XML 1.0 §2.4, §3.3.3) mixed with plain and non-ASCII.
    alphabet = "ab z&<>\"'\t\n\r\u00e9\u4e2d;#"

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))

    namespaces = [ns.CLIENT, "urn:xmpp:sid:0", "urn:a&b", 'urn:"q"', "jabber:x:data"]
    el = Element(rng.choice(["message", "body", "x", "item"]), rng.choice(namespaces),
                 {f"a{i}": text() for i in range(rng.randrange(0, 4))})
    for _ in range(rng.randrange(0, 4 if depth < 3 else 1)):
        el.children.append(text() if rng.random() < 0.4 else _random_tree(rng, depth + 1))
    return el


def test_serializer_fast_paths_write_what_the_plain_one_wrote() -> None:
    rng = random.Random(12)  # seeded: a failure reproduces
    for _ in range(30_000):
        tree = _random_tree(rng)
        parent = rng.choice([ns.CLIENT, None, "urn:xmpp:sid:0"])
        prefixes = rng.choice([None, {ns.STREAM: "stream"}, {"urn:xmpp:sid:0": "sid"}])
        expected: list[str] = []
        _reference_write(tree, expected, parent, prefixes)
        assert tree.serialize(parent, prefixes) == "".join(expected)
