"""mod_global_distrib's events, as MongooseIM 6.4 names them (its
``include/global_distrib_metrics.hrl``). Left out: ``mod_global_distrib_outgoing_queue`` and
``mod_global_distrib_incoming_queue`` (time spent in 6.4's per-connection and per-sender worker
queues: there are no such queues here, a stanza is written to its connection at once)."""

from __future__ import annotations

from suricate.instrument.events import GAUGE, HISTOGRAM, SPIRAL, declare

OUTGOING_MESSAGES = declare(
    "mod_global_distrib_outgoing_messages", ("host",), {"count": SPIRAL},
    "Stanzas sent to another data centre (label: its local_host)")
INCOMING_MESSAGES = declare(
    "mod_global_distrib_incoming_messages", ("host",), {"count": SPIRAL},
    "Stanzas received from another data centre (label: its local_host)")
INCOMING_TRANSFER = declare(
    "mod_global_distrib_incoming_transfer", ("host",), {"time": HISTOGRAM},
    "Microseconds between sending and receiving a stanza, by the wall clocks of both sides")
MAPPING_FETCHES = declare(
    "mod_global_distrib_mapping_fetches", (), {"count": SPIRAL, "time": HISTOGRAM},
    "Look-ups of the session table (cached or not); time in microseconds")
MAPPING_CACHE_MISSES = declare(
    "mod_global_distrib_mapping_cache_misses", (), {"count": SPIRAL},
    "Look-ups of the session table that went to Redis")
DELIVERED_WITH_TTL = declare(
    "mod_global_distrib_delivered_with_ttl", (), {"value": HISTOGRAM},
    "TTL left on stanzas from another data centre routed here")
STOP_TTL_ZERO = declare(
    "mod_global_distrib_stop_ttl_zero", (), {"count": SPIRAL},
    "Stanzas routed here rather than forwarded again because their TTL ran out")
INCOMING_ESTABLISHED = declare(
    "mod_global_distrib_incoming_established", (), {"count": SPIRAL},
    "Connections accepted from other data centres")
INCOMING_FIRST_PACKET = declare(
    "mod_global_distrib_incoming_first_packet", ("host",), {"count": SPIRAL},
    "Accepted connections whose first frame named their data centre")
INCOMING_CLOSED = declare(
    "mod_global_distrib_incoming_closed", ("host",), {"count": SPIRAL},
    "Accepted connections that closed")
INCOMING_ERRORED = declare(
    "mod_global_distrib_incoming_errored", ("host",), {"count": SPIRAL},
    "Accepted connections that ended with an error (TLS, framing)")
OUTGOING_ESTABLISHED = declare(
    "mod_global_distrib_outgoing_established", ("host",), {"count": SPIRAL},
    "Connections opened to another data centre")
OUTGOING_CLOSED = declare(
    "mod_global_distrib_outgoing_closed", ("host",), {"count": SPIRAL},
    "Connections to another data centre that closed")
OUTGOING_ERRORED = declare(
    "mod_global_distrib_outgoing_errored", ("host",), {"count": SPIRAL},
    "Connections to another data centre that failed (refused, reset, TLS)")
BOUNCE_QUEUE = declare(
    "mod_global_distrib_bounce_queue", (), {"size": GAUGE},
    "Stanzas waiting to be routed again (bounce.resend_after_ms), on this node")
