"""Hypothesis strategies shared by the fuzz tests: XML that XMPP peers send, and XML that
hostile peers send."""

from __future__ import annotations

from hypothesis import strategies as st

from suricate.xml import ns
from suricate.xml.element import Element

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")

# XML 1.0 §2.2 Char, minus what RFC 6120 §11 or XML forbids anyway.
_xml_char = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from("\t\n\r&<>'\""),
    st.characters(min_codepoint=0xA0, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
)

names = st.from_regex(r"\A[a-z][a-z0-9_.-]{0,8}\Z")
namespaces = st.sampled_from([ns.CLIENT, ns.SASL, ns.BIND, "urn:example:a", "urn:example:b",
                              ns.ROSTER, "http://jabber.org/protocol/disco#info"])
texts = st.text(_xml_char, max_size=40)
attr_values = st.text(_xml_char, max_size=20)


def _normalize(children: list[Element | str]) -> list[Element | str]:
    """What a parser gives back: adjacent text merged, empty text dropped."""
    out: list[Element | str] = []
    for child in children:
        if isinstance(child, str):
            if not child:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += child
                continue
        out.append(child)
    return out


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> Element:
    attrs = draw(st.dictionaries(names.filter(lambda n: n != "xmlns"), attr_values, max_size=4))
    children: list[Element | str] = []
    if depth < 4:
        children = draw(st.lists(st.one_of(texts, elements(depth + 1)), max_size=4))
    return Element(draw(names), draw(namespaces), attrs, _normalize(children))


stanzas = st.builds(
    lambda name, child, attrs: Element(name, ns.CLIENT, attrs, [child]),
    st.sampled_from(["message", "presence", "iq"]), elements(1),
    st.dictionaries(st.sampled_from(["to", "id", "type", "from"]), attr_values, max_size=3))

# RFC 6120 §11.1 restricted constructs, and what each must end the stream with.
HOSTILE: list[tuple[bytes, str]] = [
    (b"<!-- a comment -->", "restricted-xml"),
    (b"<?pi data?>", "restricted-xml"),
    (b"<?xml-stylesheet href='x'?>", "restricted-xml"),
    (b"<message><!-- inside --></message>", "restricted-xml"),
    (b"<message><body><?pi?></body></message>", "restricted-xml"),
    (b"<message><body>&custom;</body></message>", "restricted-xml"),
    (b"<message to='&ext;'/>", "restricted-xml"),
    (b"<message><body>&#0;</body></message>", "not-well-formed"),
    (b"<message><body>&#xD800;</body></message>", "not-well-formed"),
    (b"<!DOCTYPE message>", "not-well-formed"),  # a DTD after the root: not XML at all
    (b"<message><body>\xff\xfe</body></message>", "not-well-formed"),
    (b"<message><body>\xc3\x28</body></message>", "not-well-formed"),
    (b"<message><body>\xed\xa0\x80</body></message>", "not-well-formed"),  # UTF-8 surrogate
    (b"<message><body>\xf8\x88\x80\x80\x80</body></message>", "not-well-formed"),
    (b"<undeclared:message/>", "not-well-formed"),  # XML-NAMES: unbound prefix
    (b"<message xmlns:x='' />", "not-well-formed"),  # XML-NAMES: undeclaring a prefix
    (b"<message a='1' a='2'/>", "not-well-formed"),
    (b"<message></presence>", "not-well-formed"),
    (b"text between stanzas", "not-well-formed"),
]

# Every DTD form before the root (XML 1.0 §2.8): all refused before anything is expanded.
DTDS: list[bytes] = [
    b"<!DOCTYPE stream>",
    b"<!DOCTYPE stream SYSTEM 'http://example.com/x.dtd'>",
    b"<!DOCTYPE stream PUBLIC '-//X//EN' 'file:///etc/passwd'>",
    b"<!DOCTYPE stream [<!ELEMENT stream ANY>]>",
    b"<!DOCTYPE stream [<!ATTLIST stream a CDATA 'x'>]>",
    b"<!DOCTYPE stream [<!NOTATION n SYSTEM 'x'>]>",
    b"<!DOCTYPE stream [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    b"<!DOCTYPE stream [<!ENTITY % p SYSTEM 'http://example.com/p'> %p;]>",
    b"<!DOCTYPE stream [<!ENTITY u SYSTEM 'x' NDATA n>]>",
    # billion laughs (XML bomb) and the quadratic blow-up
    b"<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
               for i in range(1, 10))
    + b"]>",
    b"<!DOCTYPE q [<!ENTITY a '" + b"x" * 50000 + b"'>]>",
]
