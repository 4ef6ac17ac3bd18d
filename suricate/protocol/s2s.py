"""Server-to-server streams as data (RFC 6120 §4-§6 on ``jabber:server``, XEP-0220 dialback,
XEP-0178 SASL EXTERNAL): the states and transitions of the incoming and the outgoing stream,
headers, features and dialback elements, and the dialback key (XEP-0185). Named like
MongooseIM 6.4's ``mongoose_s2s_in`` / ``mongoose_s2s_out``."""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import deque
from collections.abc import Iterable

from suricate.protocol.sm import MOD, HandledCountTooHigh
from suricate.xml import ns
from suricate.xml.element import Element, escape_attr
from suricate.xml.parser import StreamParser

DIALBACK = "jabber:server:dialback"
DIALBACK_FEATURE = "urn:xmpp:features:dialback"  # XEP-0220 §2.4.1
STREAM_LIMITS = "urn:xmpp:stream-limits:0"  # XEP-0478
PREFIXES = {ns.STREAM: "stream", DIALBACK: "db"}


class S2SInState(enum.Enum):
    CONNECT = "connect"
    WAIT_FOR_STREAM = "wait_for_stream"
    WAIT_FOR_FEATURE_BEFORE_AUTH = "wait_for_feature_before_auth"
    WAIT_FOR_DIALBACK_VERIFICATION = "wait_for_dialback_verification"
    STREAM_ESTABLISHED = "stream_established"
    CLOSED = "closed"


class S2SOutState(enum.Enum):
    CONNECT = "connect"
    WAIT_FOR_STREAM = "wait_for_stream"
    WAIT_FOR_FEATURES = "wait_for_features"
    WAIT_FOR_TLS_PROCEED = "wait_for_tls_proceed"
    WAIT_FOR_SASL_RESULT = "wait_for_sasl_result"
    WAIT_FOR_DIALBACK_RESULT = "wait_for_dialback_result"
    STREAM_ESTABLISHED = "stream_established"
    CLOSED = "closed"


In = S2SInState
Out = S2SOutState

IN_TRANSITIONS: dict[S2SInState, frozenset[S2SInState]] = {
    In.CONNECT: frozenset({In.WAIT_FOR_STREAM, In.CLOSED}),
    # features before auth; after SASL EXTERNAL the restarted stream is established at once
    In.WAIT_FOR_STREAM: frozenset({In.WAIT_FOR_FEATURE_BEFORE_AUTH, In.STREAM_ESTABLISHED,
                                  In.CLOSED}),
    # <starttls/> and SASL success restart the stream; <db:result/> asks us to verify a key
    In.WAIT_FOR_FEATURE_BEFORE_AUTH: frozenset({In.WAIT_FOR_STREAM,
                                               In.WAIT_FOR_DIALBACK_VERIFICATION, In.CLOSED}),
    # valid: established; invalid: the stream ends with not-authorized
    In.WAIT_FOR_DIALBACK_VERIFICATION: frozenset({In.STREAM_ESTABLISHED, In.CLOSED}),
    # more domain pairs may be verified on an established stream (XEP-0220 §2.6)
    In.STREAM_ESTABLISHED: frozenset({In.CLOSED}),
    In.CLOSED: frozenset(),
}
IN_TIMED_STATES = frozenset({In.WAIT_FOR_STREAM, In.WAIT_FOR_FEATURE_BEFORE_AUTH})

OUT_TRANSITIONS: dict[S2SOutState, frozenset[S2SOutState]] = {
    Out.CONNECT: frozenset({Out.WAIT_FOR_STREAM, Out.CLOSED}),
    # a peer without version='1.0' has no features: dialback straight away
    Out.WAIT_FOR_STREAM: frozenset({Out.WAIT_FOR_FEATURES, Out.WAIT_FOR_DIALBACK_RESULT, Out.CLOSED}),
    Out.WAIT_FOR_FEATURES: frozenset({Out.WAIT_FOR_TLS_PROCEED, Out.WAIT_FOR_SASL_RESULT,
                                    Out.WAIT_FOR_DIALBACK_RESULT, Out.STREAM_ESTABLISHED,
                                    Out.CLOSED}),
    Out.WAIT_FOR_TLS_PROCEED: frozenset({Out.WAIT_FOR_STREAM, Out.CLOSED}),
    # XEP-0178 §2: after a SASL failure dialback may still authenticate us
    Out.WAIT_FOR_SASL_RESULT: frozenset({Out.WAIT_FOR_STREAM, Out.WAIT_FOR_DIALBACK_RESULT,
                                       Out.CLOSED}),
    Out.WAIT_FOR_DIALBACK_RESULT: frozenset({Out.STREAM_ESTABLISHED, Out.CLOSED}),
    Out.STREAM_ESTABLISHED: frozenset({Out.CLOSED}),
    Out.CLOSED: frozenset(),
}
OUT_TIMED_STATES = frozenset({Out.WAIT_FOR_STREAM, Out.WAIT_FOR_FEATURES, Out.WAIT_FOR_TLS_PROCEED,
                              Out.WAIT_FOR_SASL_RESULT, Out.WAIT_FOR_DIALBACK_RESULT})


def stream_header(frm: str | None, to: str | None, stream_id: str | None = None,
                  version: bool = True) -> bytes:
    """An s2s stream header (RFC 6120 §4.7) declaring the dialback prefix (XEP-0220 §2.1)."""
    attrs = ""
    if frm:
        attrs += f" from='{escape_attr(frm)}'"
    if to:
        attrs += f" to='{escape_attr(to)}'"
    if stream_id:
        attrs += f" id='{escape_attr(stream_id)}'"
    if version:
        attrs += " version='1.0'"
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' "
        f"xmlns:stream='{ns.STREAM}' xmlns:db='{DIALBACK}'{attrs}>"
    ).encode()


def dialback_feature() -> Element:
    # <errors/>: we understand dialback error conditions (XEP-0220 §2.4.1)
    el = Element("dialback", DIALBACK_FEATURE)
    el.add("errors")
    return el


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §3: HMAC-SHA256 keyed with hex(SHA256(secret)) over
    "Receiving Originating StreamID"; the hex digest is the key."""
    keyed = hashlib.sha256(secret.encode()).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(keyed, text, hashlib.sha256).hexdigest()


def db_element(name: str, frm: str, to: str, type_: str | None = None,
               stream_id: str | None = None, key: str | None = None,
               error: str | None = None) -> Element:
    """<db:result/> or <db:verify/> (XEP-0220 §2)."""
    el = Element(name, DIALBACK, {"from": frm, "to": to})
    if stream_id is not None:
        el.attrs["id"] = stream_id
    if type_ is not None:
        el.attrs["type"] = type_
    if key is not None:
        el.children.append(key)
    if error is not None:
        # XEP-0220 §2.4: <error/> in the stream namespace, its condition in the stanza one
        err = el.add("error", ns.SERVER, {"type": "cancel"})
        err.add(error, ns.STANZAS_ERRORS)
    return el


# -- XEP-0198 on s2s (acknowledgements only: no resumption) ---------------------------------

def sm_element(name: str, h: int | None = None) -> Element:
    """<sm/> (the feature), <enable/>, <enabled/>, <r/> or <a h=.../> (XEP-0198 §2-§4)."""
    return Element(name, ns.SM, {} if h is None else {"h": str(h)})


def sm_failed(condition: str = "unexpected-request") -> Element:
    el = Element("failed", ns.SM)
    el.add(condition, ns.STANZAS_ERRORS)
    return el


class S2SAcks:
    """The stanzas one outgoing s2s stream wrote since it sent <enable/> that the peer has not
    acknowledged yet, oldest first (XEP-0198 §4: ``h`` counts the peer's handled stanzas
    modulo 2^32). ``scheduled``: an <r/> waits for the end of this loop tick (one per batch
    of stanzas, not one per stanza); ``awaiting``: an <r/> is out and its <a/> not back.

    The stanzas are kept as the bytes written (``to_wire``), not as elements: bytes are not
    tracked by the garbage collector, and a few thousand elements held for a round trip made
    its collections twice as frequent (10% more CPU per s2s stanza). Only a lost stream
    needs the elements again (``from_wire``)."""

    __slots__ = ("unacked", "acked", "scheduled", "awaiting")

    def __init__(self) -> None:
        self.unacked: deque[bytes] = deque()
        self.acked = 0  # the peer's last h
        self.scheduled = False
        self.awaiting = False

    def ack(self, h: int) -> int:
        """The peer handled our stanzas up to ``h``: forget them; how many that was."""
        count = (h - self.acked) % MOD
        unacked = self.unacked
        if count > len(unacked):
            raise HandledCountTooHigh(h, (self.acked + len(unacked)) % MOD)
        for _ in range(count):
            unacked.popleft()
        self.acked = h % MOD
        return count

    def take(self) -> list[Element]:
        """The unacknowledged stanzas, which the stream will not send any more."""
        pending = from_wire(self.unacked)
        self.unacked.clear()
        return pending


# what to_wire writes is relative to a jabber:client parent, with the stream prefix
_WIRE_PARENT = f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAM}'>".encode()


def from_wire(stanzas: Iterable[bytes]) -> list[Element]:
    """The elements of stanzas serialized by ``to_wire``, in order."""
    parser = StreamParser()
    parser.feed(_WIRE_PARENT)
    try:
        return [e for e in parser.feed(b"".join(stanzas)) if isinstance(e, Element)]
    finally:
        parser.release()


def parse_h(el: Element) -> int | None:
    try:
        h = int(el.attrs.get("h", ""))
    except ValueError:
        return None
    return h if 0 <= h < MOD else None


# -- XEP-0478 stream limits -------------------------------------------------------------------

def limits_feature(max_bytes: int) -> Element:
    """<limits/>: the largest first-level element (stanza) we read on this stream."""
    el = Element("limits", STREAM_LIMITS)
    el.add("max-bytes", text=str(max_bytes))
    return el


def max_bytes(features: Element) -> int | None:
    """The peer's <max-bytes/> in its stream features, None when it says nothing usable."""
    limits = features.find("limits", STREAM_LIMITS)
    text = limits.find_text("max-bytes", STREAM_LIMITS) if limits is not None else None
    try:
        value = int(text.strip()) if text else 0
    except ValueError:
        return None
    return value if value > 0 else None
