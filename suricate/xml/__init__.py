"""XML: elements, serializer, the restricted incremental stream parser, namespaces."""

from suricate.xml.element import Element, escape_attr, escape_text
from suricate.xml.parser import StreamClose, StreamOpen, StreamParser, XMLStreamError

__all__ = [
    "Element", "StreamClose", "StreamOpen", "StreamParser", "XMLStreamError",
    "escape_attr", "escape_text",
]
