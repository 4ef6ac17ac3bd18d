"""The external component stream (XEP-0114, ``jabber:component:accept``) as data: states,
transitions, the stream header and the handshake digest. Named like MongooseIM's
``mongoose_component_connection``."""

from __future__ import annotations

import enum
import hashlib
import hmac

from suricate.xml import ns
from suricate.xml.element import escape_attr


class ComponentState(enum.Enum):
    CONNECT = "connect"
    WAIT_FOR_STREAM = "wait_for_stream"
    WAIT_FOR_HANDSHAKE = "wait_for_handshake"
    STREAM_ESTABLISHED = "stream_established"
    CLOSED = "closed"


S = ComponentState

TRANSITIONS: dict[ComponentState, frozenset[ComponentState]] = {
    S.CONNECT: frozenset({S.WAIT_FOR_STREAM, S.CLOSED}),
    S.WAIT_FOR_STREAM: frozenset({S.WAIT_FOR_HANDSHAKE, S.CLOSED}),
    S.WAIT_FOR_HANDSHAKE: frozenset({S.STREAM_ESTABLISHED, S.CLOSED}),
    S.STREAM_ESTABLISHED: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}

TIMED_STATES = frozenset({S.WAIT_FOR_STREAM, S.WAIT_FOR_HANDSHAKE})


def stream_header(stream_id: str, domain: str) -> bytes:
    """XEP-0114 §3: the server answers with ``from`` = the component's domain and an id; the
    protocol predates XMPP 1.0, so there is no version and no stream features."""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{ns.COMPONENT}' "
        f"xmlns:stream='{ns.STREAM}' id='{escape_attr(stream_id)}' "
        f"from='{escape_attr(domain)}'>"
    ).encode()


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: hex SHA-1 of the stream id concatenated with the shared secret."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


def handshake_matches(received: str, stream_id: str, secret: str) -> bool:
    # Constant-time comparison: the digest is a credential.
    expected = handshake_digest(stream_id, secret)
    return hmac.compare_digest(received.strip().lower().encode(), expected.encode())
