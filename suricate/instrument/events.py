"""Declared events: a name, the labels it carries and its typed measurements (MongooseIM 6.4).

An event is declared once, by the code that emits it, with ``declare(...)`` at import time
(like a hook): the server core's events are declared here, a module's next to the module
(``MOD_ROSTER_GET`` in ``suricate/modules/mod_roster.py``). Code emits the object ``declare``
returned, never a name (``instrument.emit(MOD_ROSTER_GET, labels, measurements)``), so a
misspelt event fails at import. Handlers learn every event from ``EVENTS``; emitting an
``EventSpec`` that was not declared is our bug and handlers log it.

Measurement types follow 6.4:
- ``spiral``: how many times something happened (a Prometheus counter),
- ``counter``: a value moved up and down by deltas (``sm_session`` count; a Prometheus gauge),
- ``gauge``: a value set as a whole (probes; a Prometheus gauge),
- ``histogram``: a distribution of observed values (``byte_size``; a Prometheus histogram).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class MetricType(StrEnum):
    SPIRAL = "spiral"
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


SPIRAL = MetricType.SPIRAL
COUNTER = MetricType.COUNTER
GAUGE = MetricType.GAUGE
HISTOGRAM = MetricType.HISTOGRAM

#: Upper bounds of every histogram's buckets, as 6.4's Prometheus handler declares them: the
#: powers of two from 1 to 2**30, whatever the unit (bytes, microseconds, items). A dashboard
#: built for 6.4 selects these `le` values (`le="1024"`); a quantile over them is within a
#: factor of two, enough for sizes and latencies.
HISTOGRAM_BUCKETS: tuple[float, ...] = tuple(1 << i for i in range(31))  # ints: compared faster


@dataclass(frozen=True)
class EventSpec:
    name: str
    labels: tuple[str, ...]
    metrics: Mapping[str, MetricType]
    doc: str = ""
    #: Histogram bucket bounds per histogram metric; 6.4's HISTOGRAM_BUCKETS when not given
    #: (every event of ours; an operator's own module may choose others).
    buckets: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    #: Polled every `probe_interval` rather than emitted by the code (system probes).
    probe: bool = False
    #: The Python module that declared it (``suricate.modules.mod_roster``...): whose event it
    #: is, so that a server sets up at zero the events of the modules it runs only.
    owner: str = field(default="", compare=False)

    def buckets_of(self, metric: str) -> tuple[float, ...]:
        return self.buckets.get(metric, HISTOGRAM_BUCKETS)


#: Every declared event by name. Filled at import by `declare`, never at run time: it is a
#: table of constants like the hooks, not state.
EVENTS: dict[str, EventSpec] = {}


def declare(name: str, labels: Sequence[str], metrics: Mapping[str, MetricType], doc: str,
            buckets: Mapping[str, tuple[float, ...]] | None = None,
            probe: bool = False) -> EventSpec:
    # The caller is the module-level code of the declaring module (declare runs at import).
    owner = str(sys._getframe(1).f_globals.get("__name__", ""))
    spec = EventSpec(name, tuple(labels), dict(metrics), doc, dict(buckets or {}), probe, owner)
    old = EVENTS.get(name)
    if old is not None:
        if old != spec:
            raise ValueError(f"event {name} declared twice, differently")
        return old  # the same object for everyone: handlers may compare specs by identity
    EVENTS[name] = spec
    return spec


# -- XMPP traffic --------------------------------------------------------------------------
_ELEMENT_METRICS = {
    "count": SPIRAL, "stanza_count": SPIRAL, "message_count": SPIRAL, "iq_count": SPIRAL,
    "presence_count": SPIRAL, "error_count": SPIRAL, "message_error_count": SPIRAL,
    "iq_error_count": SPIRAL, "presence_error_count": SPIRAL, "byte_size": HISTOGRAM,
}
#: Order of the element counters in a series (the Prometheus handler keeps them in a list).
ELEMENT_COUNTERS: tuple[str, ...] = tuple(m for m in _ELEMENT_METRICS if m != "byte_size")

XMPP_ELEMENT_IN = declare(
    "xmpp_element_in", ("connection_type", "host_type"), _ELEMENT_METRICS,
    "XML elements received, once per parsed element (stream features, SASL and stanzas); "
    "byte_size is the size of the element as serialized")
XMPP_ELEMENT_OUT = declare(
    "xmpp_element_out", ("connection_type", "host_type"), _ELEMENT_METRICS,
    "XML elements sent, once per element written")

TCP_DATA_IN = declare("tcp_data_in", ("connection_type",), {"byte_size": SPIRAL},
                      "Bytes read from sockets (TLS records included)")
TCP_DATA_OUT = declare("tcp_data_out", ("connection_type",), {"byte_size": SPIRAL},
                       "Bytes written to sockets")
TLS_DATA_IN = declare("tls_data_in", ("connection_type",), {"byte_size": SPIRAL},
                      "Plaintext bytes that came out of TLS")
TLS_DATA_OUT = declare("tls_data_out", ("connection_type",), {"byte_size": SPIRAL},
                       "Plaintext bytes that went into TLS")

# -- authentication ------------------------------------------------------------------------
C2S_AUTH_FAILED = declare("c2s_auth_failed", ("host_type",), {"count": SPIRAL},
                          "Failed client authentications")
# 6.4: s2s and component failures carry no label (a peer server or a component is no host
# type of ours), c2s failures carry the host type of the stream's domain.
S2S_AUTH_FAILED = declare("s2s_auth_failed", (), {"count": SPIRAL},
                          "Failed server-to-server authentications")
COMPONENT_AUTH_FAILED = declare("component_auth_failed", (), {"count": SPIRAL},
                                "Failed component handshakes")
AUTH_FAILED_BY_TYPE = {"c2s": C2S_AUTH_FAILED, "s2s": S2S_AUTH_FAILED,
                       "component": COMPONENT_AUTH_FAILED}
# The auth service's operations (6.4's ejabberd_auth): `time` is the total time in
# microseconds over the methods tried, a failed or refused attempt included.
_TIMED = {"count": SPIRAL, "time": HISTOGRAM}
AUTH_AUTHORIZE = declare(
    "auth_authorize", ("host_type",), _TIMED,
    "SASL credential look-ups (a login's check of its password or SCRAM proof against the "
    "methods), whatever their outcome; time in microseconds")
AUTH_CHECK_PASSWORD = declare(
    "auth_check_password", ("host_type",), _TIMED,
    "Passwords checked outside SASL (admin API, CLI); time in microseconds")
AUTH_TRY_REGISTER = declare(
    "auth_try_register", ("host_type",), _TIMED,
    "Attempts to create an account, created or not; time in microseconds")
AUTH_DOES_USER_EXIST = declare(
    "auth_does_user_exist", ("host_type",), _TIMED,
    "Questions to the auth methods whether an account exists; time in microseconds")
AUTH_REGISTER_USER = declare("auth_register_user", ("host_type",), {"count": SPIRAL},
                             "Accounts created")
AUTH_UNREGISTER_USER = declare("auth_unregister_user", ("host_type",), {"count": SPIRAL},
                               "Accounts removed")
AUTH_ANONYMOUS_REGISTER_USER = declare(
    "auth_anonymous_register_user", ("host_type",), {"count": SPIRAL},
    "Anonymous accounts that came to be (the first session of an anonymous user)")
AUTH_ANONYMOUS_UNREGISTER_USER = declare(
    "auth_anonymous_unregister_user", ("host_type",), {"count": SPIRAL},
    "Anonymous accounts that ended with their last session")

# -- sessions and routing ------------------------------------------------------------------
SM_SESSION = declare(
    "sm_session", ("host_type",), {"count": COUNTER, "logins": SPIRAL, "logouts": SPIRAL},
    "Client sessions: count is how many are open now")
SM_MESSAGE_BOUNCED = declare("sm_message_bounced", ("host_type",), {"count": SPIRAL},
                             "Messages to an account that could not take them (bounced)")
C2S_MESSAGE_PROCESSED = declare(
    "c2s_message_processed", ("host_type",), {"time": HISTOGRAM},
    "Time in microseconds the server spent on an element a client sent in its established "
    "session (up to routing it)")
SM_PRESENCE_SUBSCRIPTION = declare(
    "sm_presence_subscription", ("host_type",),
    {"subscription_count": SPIRAL, "unsubscription_count": SPIRAL},
    "Subscription stanzas a client sent (RFC 6121 §3): subscribe and subscribed count as "
    "subscriptions, unsubscribe and unsubscribed as unsubscriptions")
ROUTER_NO_ROUTE_FOUND = declare("router_no_route_found", ("host_type",), {"count": SPIRAL},
                                "Stanzas to a domain with no route")
ROUTER_STANZA_DROPPED = declare("router_stanza_dropped", ("host_type",), {"count": SPIRAL},
                                "Stanzas dropped by the router (errors to errors, no sender)")

# -- async pools (6.4's mongoose_async_pools: mod_mam's and mod_inbox's writers) -----------
ASYNC_POOL_FLUSH = declare(
    "async_pool_flush", ("host_type", "pool_id"), {"timed": SPIRAL, "batch": SPIRAL},
    "Flushes of a batch writer: timed (its flush_interval ran out, or a query needed the "
    "rows) or batch (batch_size rows were waiting)")
ASYNC_POOL_REQUEST = declare(
    "async_pool_request", ("host_type", "pool_id"), {"count": SPIRAL},
    "Requests an aggregating writer made (mod_inbox: one per entry written)")

# -- system probes (polled every probe_interval) -------------------------------------------
SYSTEM_UP_TIME = declare("system_up_time", (), {"seconds": GAUGE},
                         "Seconds since the server started", probe=True)
SYSTEM_MEMORY = declare("system_memory", (), {"total": GAUGE, "peak": GAUGE},
                        "Resident memory of the process in bytes (now, and its peak)",
                        probe=True)
SYSTEM_TCP_PORTS = declare("system_tcp_ports", (), {"count": GAUGE},
                           "Open TCP connections: accepted by every listener (c2s, s2s, "
                           "component, http) and outgoing s2s streams", probe=True)
SYSTEM_EVENT_LOOP_LAG = declare(
    "system_event_loop_lag", (), {"seconds": GAUGE},
    "How late the last probe timer fired: a busy event loop answers late", probe=True)
SM_NODE_SESSIONS = declare("sm_node_sessions", (), {"count": GAUGE},
                           "Client sessions on this node", probe=True)
SM_TOTAL_SESSIONS = declare("sm_total_sessions", (), {"count": GAUGE},
                            "Client sessions on this node (6.4: in the cluster; the session "
                            "table of sm_backend = \"redis\" is not asked by the probe)",
                            probe=True)
SM_UNIQUE_SESSIONS = declare("sm_unique_sessions", (), {"count": GAUGE},
                             "Accounts with at least one session", probe=True)


def element_kind(name: str) -> int:
    """Index of the per-kind counter (message/iq/presence) in ELEMENT_COUNTERS, or -1."""
    return _KIND_INDEX.get(name, -1)


_KIND_INDEX = {"message": 2, "iq": 3, "presence": 4}
