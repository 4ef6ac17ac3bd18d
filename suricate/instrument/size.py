"""The serialized size of an element without serializing it.

6.4 measures ``byte_size`` of a received element on the parsed element. Serializing it to
count its bytes costs as much as writing it; this walks the tree and adds lengths instead,
escaping and encoding only strings that need it. It equals ``len(element.to_bytes(ns))``
(a test checks that on generated elements).
"""

from __future__ import annotations

import re

from suricate.xml.element import Element, escape_attr, escape_text

_TEXT_SPECIAL = re.compile("[&<>\r]").search
_ATTR_SPECIAL = re.compile("[&<>\"'\t\n\r]").search


def _text_size(text: str) -> int:
    if text.isascii() and _TEXT_SPECIAL(text) is None:
        return len(text)
    return len(escape_text(text).encode())


def _attr_size(value: str) -> int:
    # isascii first: a multi-byte character changes the byte count, not only escapes do
    if value.isascii() and _ATTR_SPECIAL(value) is None:
        return len(value)
    return len(escape_attr(value).encode())


def xml_size(element: Element, parent_ns: str | None) -> int:
    name = element.name
    name_len = len(name) if name.isascii() else len(name.encode())
    size = name_len + 1  # "<name"
    ns = parent_ns
    if element.xmlns != parent_ns:
        size += 9 + _attr_size(element.xmlns)  # ' xmlns=""'
        ns = element.xmlns
    for key, value in element.attrs.items():
        size += 4 + len(key) + _attr_size(value)  # ' key=""'
    children = element.children
    if not children:
        return size + 2  # "/>"
    size += 1 + name_len + 3  # ">" ... "</name>"
    for child in children:
        if isinstance(child, str):
            size += _text_size(child)
        else:
            size += xml_size(child, ns)
    return size
