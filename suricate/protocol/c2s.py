"""The client-to-server stream as data: its states, the allowed transitions, and the pure
pieces of negotiation (features after authentication, SASL2). Named like MongooseIM's ``mongoose_c2s``.

The transition table is the single source of truth: ``C2SStateMachine`` (the generic
``protocol.fsm.StateMachine`` over ``TRANSITIONS``) refuses any move not listed, so a bug shows
as an exception at the faulty step, and the diagram in docs/architecture.md is generated from
``TRANSITIONS``.
"""

from __future__ import annotations

import enum

from suricate.protocol.fsm import StateMachine
from suricate.protocol.stream import (
    STREAM_CLOSE,
    STREAM_PREFIXES,
    channel_binding_feature,
    features_element,
    mechanisms_feature,
    sasl_failure,
    starttls_feature,
    stream_header,
)
from suricate.xml import ns
from suricate.xml.element import Element

__all__ = [
    "DEFAULT_HANDLERS", "ELEMENT_HANDLERS", "STREAM_CLOSE", "STREAM_PREFIXES", "TIMED_STATES",
    "TRANSITIONS", "C2SState",
    "C2SStateMachine", "bind_feature", "channel_binding_feature", "features_element",
    "mechanisms_feature", "sasl2_failure", "sasl2_feature", "sasl_failure", "session_feature",
    "starttls_feature", "stream_header",
]


class C2SState(enum.Enum):
    CONNECT = "connect"
    WAIT_FOR_STREAM = "wait_for_stream"
    WAIT_FOR_FEATURE_BEFORE_AUTH = "wait_for_feature_before_auth"
    WAIT_FOR_SASL_RESPONSE = "wait_for_sasl_response"
    WAIT_FOR_FEATURE_AFTER_AUTH = "wait_for_feature_after_auth"
    SESSION_ESTABLISHED = "session_established"
    # XEP-0198: the connection is gone but the session waits resume_timeout for a client to
    # take it over (MongooseIM's resume_session); the router still delivers to it (buffered).
    RESUME_SESSION = "resume_session"
    CLOSED = "closed"


S = C2SState

TRANSITIONS: dict[C2SState, frozenset[C2SState]] = {
    S.CONNECT: frozenset({S.WAIT_FOR_STREAM, S.CLOSED}),
    # a stream header arrived: features before or after auth, depending on what happened
    S.WAIT_FOR_STREAM: frozenset({S.WAIT_FOR_FEATURE_BEFORE_AUTH, S.WAIT_FOR_FEATURE_AFTER_AUTH,
                                  S.CLOSED}),
    # <starttls/> restarts the stream; <auth/> starts SASL (or succeeds at once)
    S.WAIT_FOR_FEATURE_BEFORE_AUTH: frozenset({S.WAIT_FOR_STREAM, S.WAIT_FOR_SASL_RESPONSE,
                                               S.CLOSED}),
    # Legacy SASL success restarts the stream (RFC 6120 §6.4.6). SASL2 success does not
    # (XEP-0388 §2.6.3): the post-auth features follow at once, or, with Bind 2 inline
    # (XEP-0386 §3) or an inline XEP-0198 resumption, the session is established by the same
    # <success/>.
    S.WAIT_FOR_SASL_RESPONSE: frozenset({S.WAIT_FOR_STREAM, S.WAIT_FOR_FEATURE_BEFORE_AUTH,
                                         S.WAIT_FOR_FEATURE_AFTER_AUTH, S.SESSION_ESTABLISHED,
                                         S.CLOSED}),
    # <bind/> (RFC 6120 §7) or an XEP-0198 <resume/> taking over a waiting session
    S.WAIT_FOR_FEATURE_AFTER_AUTH: frozenset({S.SESSION_ESTABLISHED, S.CLOSED}),
    # XEP-0198 with resume='true': a lost connection leaves the session waiting
    S.SESSION_ESTABLISHED: frozenset({S.RESUME_SESSION, S.CLOSED}),
    # resumed by another stream, or resume_timeout passed
    S.RESUME_SESSION: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}

# States with a negotiation deadline (the listener's state_timeout).
TIMED_STATES = frozenset({S.WAIT_FOR_STREAM, S.WAIT_FOR_FEATURE_BEFORE_AUTH,
                          S.WAIT_FOR_SASL_RESPONSE, S.WAIT_FOR_FEATURE_AFTER_AUTH})


# What each state does with a top-level element, by (namespace, name): the name of the
# handler the c2s runs (``_on_<name>``). An element not listed gets the state's default
# (``DEFAULT_HANDLERS``, else "not_authorized": RFC 6120 §6.4.1/§7.1, nothing but negotiation
# before a session exists). An established session has only its default: every stanza goes
# through one handler, with no lookup by name on the hot path.
ELEMENT_HANDLERS: dict[C2SState, dict[tuple[str, str], str]] = {
    S.WAIT_FOR_FEATURE_BEFORE_AUTH: {
        (ns.TLS, "starttls"): "starttls",  # RFC 6120 §5.4.2
        (ns.SASL, "auth"): "sasl_auth",  # RFC 6120 §6.4.2
        (ns.SASL2, "authenticate"): "sasl2_authenticate",  # XEP-0388 §2.5
        (ns.CLIENT, "iq"): "preauth_iq",  # XEP-0077 registration before authentication
    },
    S.WAIT_FOR_SASL_RESPONSE: {
        (ns.SASL, "response"): "sasl_response",  # RFC 6120 §6.4.3
        (ns.SASL2, "response"): "sasl_response",  # XEP-0388 §2.6.1
        (ns.SASL, "abort"): "sasl_abort",  # RFC 6120 §6.4.4
        (ns.SASL2, "abort"): "sasl_abort",
        (ns.SASL2, "next"): "sasl2_next",  # XEP-0388 §2.6.2, XEP-0480 §3: start a task
        (ns.SASL2, "task-data"): "sasl2_task_data",  # XEP-0480 §4: the task's answer
    },
    S.WAIT_FOR_FEATURE_AFTER_AUTH: {
        (ns.CLIENT, "iq"): "bind",  # RFC 6120 §7
    },
}
DEFAULT_HANDLERS: dict[C2SState, str] = {
    # XEP-0198 <resume/> after legacy authentication, through the modules
    S.WAIT_FOR_FEATURE_AFTER_AUTH: "stream_element",
    # RFC 6120 §8: stanzas; XEP-0198 / XEP-0352 elements through the modules
    S.SESSION_ESTABLISHED: "stanza",
}


class C2SStateMachine(StateMachine[C2SState]):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(TRANSITIONS, S.CONNECT)


def bind_feature() -> Element:
    return Element("bind", ns.BIND)


def session_feature() -> Element:
    # RFC 3921 §3 session establishment, kept for old clients and marked optional
    # (draft-cridland-xmpp-session-01) so new ones skip the round trip.
    el = Element("session", ns.SESSION)
    el.add("optional")
    return el


# -- SASL2 (XEP-0388) ---------------------------------------------------------------------------

def sasl2_feature(mechanisms: list[str], inline: list[Element],
                  upgrades: list[str] | None = None) -> Element:
    """XEP-0388 §2.1: <authentication/> with the mechanisms and the inline features;
    XEP-0480 §2: the SASL upgrade tasks on offer."""
    el = Element("authentication", ns.SASL2)
    for name in mechanisms:
        el.add("mechanism", text=name)
    if inline:
        el.add("inline").children.extend(inline)
    for task in upgrades or ():
        el.add("upgrade", ns.SASL_UPGRADE, text=task)
    return el


def sasl2_failure(condition: str, text: str | None = None) -> Element:
    """XEP-0388 §2.6.4: the RFC 6120 condition, then an optional text."""
    el = Element("failure", ns.SASL2)
    el.add(condition, ns.SASL)
    if text:
        el.add("text", text=text)
    return el
