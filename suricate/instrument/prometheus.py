"""The ``prometheus`` handler: every event kept in memory, served as the Prometheus text
exposition format (version 0.0.4) by ``mongoose_prometheus_handler`` (``/metrics``).

Names are ``<event>_<metric>`` and the event's labels are Prometheus labels (6.4). A spiral is
a Prometheus counter, a 6.4 counter (it goes down too) and a gauge are gauges, a histogram is a
histogram with ``_bucket{le=...}``, ``_sum`` and ``_count``.

The typed calls on the message path cost a dict lookup on a tuple the caller already has and a
few list stores: the series for each (connection type, domain) is found once and kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from suricate.instrument.events import (
    AUTH_FAILED_BY_TYPE,
    C2S_MESSAGE_PROCESSED,
    COUNTER,
    EVENTS,
    GAUGE,
    HISTOGRAM,
    ROUTER_NO_ROUTE_FOUND,
    ROUTER_STANZA_DROPPED,
    SM_MESSAGE_BOUNCED,
    SM_SESSION,
    SPIRAL,
    TCP_DATA_IN,
    TCP_DATA_OUT,
    TLS_DATA_IN,
    TLS_DATA_OUT,
    XMPP_ELEMENT_IN,
    XMPP_ELEMENT_OUT,
    EventSpec,
)
from suricate.instrument.handler import STREAM_NS, Handler, same
from suricate.instrument.size import xml_size
from suricate.instrument.store import Family, Histogram, MetricStore, Series
from suricate.xml import ns
from suricate.xml.element import Element

log = logging.getLogger("suricate.instrument")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PROM_TYPE = {SPIRAL: "counter", COUNTER: "gauge", GAUGE: "gauge", HISTOGRAM: "histogram"}
# ELEMENT_COUNTERS positions: count, stanza, message, iq, presence, error, then per-kind errors
_KIND = {"message": 2, "iq": 3, "presence": 4}



def _count_element(values: list[float], element: Element) -> None:
    """Bump the counters of one element: all, stanzas, its kind, errors, errors of its kind."""
    values[0] += 1
    kind = _KIND.get(element.name)
    if kind is not None:
        values[1] += 1
        values[kind] += 1
        if element.attrs.get("type") == "error":
            values[5] += 1
            values[kind + 4] += 1
    elif element.name == "error" and element.xmlns == ns.STREAM:
        values[5] += 1  # <stream:error/> is an error, not a stanza (6.4's measure_element)

class PrometheusHandler(Handler):
    name = "prometheus"

    def __init__(self, opts: Mapping[str, Any], host_type_of: Callable[[str], str] = same) -> None:
        super().__init__(opts, host_type_of)
        self.store = MetricStore()
        self._element_in = self.store.family(XMPP_ELEMENT_IN)
        self._element_out = self.store.family(XMPP_ELEMENT_OUT)
        self._data = {
            (False, True): self.store.family(TCP_DATA_IN),
            (False, False): self.store.family(TCP_DATA_OUT),
            (True, True): self.store.family(TLS_DATA_IN),
            (True, False): self.store.family(TLS_DATA_OUT),
        }
        self._sm_session = self.store.family(SM_SESSION)
        self._unknown_reported: set[str] = set()
        # The cluster node name (sm_backend = "redis", set by suricate.cluster.admin): shown
        # as one info sample, so that the target a scrape names (its `instance` label) can be
        # joined with the node the session table and the admin API name.
        self.node: str | None = None
        # (connection type, domain) -> series, so the hot path never builds a label tuple
        self._in_cache: dict[tuple[str, str], Series] = {}
        self._out_cache: dict[tuple[str, str], Series] = {}
        self._data_cache: dict[tuple[str, bool, bool], Series] = {}
        self._processed = self.store.family(C2S_MESSAGE_PROCESSED)
        self._processed_cache: dict[str, Histogram] = {}  # domain -> its series' histogram

    def labels_changed(self) -> None:
        self._in_cache.clear()
        self._out_cache.clear()
        self._processed_cache.clear()

    # -- hot path ---------------------------------------------------------------------------
    def _element_series(self, cache: dict[tuple[str, str], Series], family: Family,
                        connection_type: str, domain: str) -> Series:
        series = family.get((connection_type, self.host_type_of(domain) if domain else ""))
        cache[(connection_type, domain)] = series
        return series

    def xmpp_element_in(self, connection_type: str, host_type: str, element: Element) -> None:
        series = self._in_cache.get((connection_type, host_type))
        if series is None:
            series = self._element_series(self._in_cache, self._element_in, connection_type,
                                          host_type)
        _count_element(series.values, element)
        series.hists[0].observe(xml_size(element, STREAM_NS.get(connection_type, ns.CLIENT)))

    def xmpp_element_out(self, connection_type: str, host_type: str, element: Element,
                         size: int) -> None:
        series = self._out_cache.get((connection_type, host_type))
        if series is None:
            series = self._element_series(self._out_cache, self._element_out, connection_type,
                                          host_type)
        _count_element(series.values, element)
        series.hists[0].observe(size)

    def _data_series(self, connection_type: str, tls: bool, incoming: bool) -> Series:
        key = (connection_type, tls, incoming)
        series = self._data_cache.get(key)
        if series is None:
            series = self._data_cache[key] = self._data[(tls, incoming)].get((connection_type,))
        return series

    def data_in(self, connection_type: str, tls: bool, size: int) -> None:
        self._data_series(connection_type, tls, True).values[0] += size

    def data_out(self, connection_type: str, tls: bool, size: int) -> None:
        self._data_series(connection_type, tls, False).values[0] += size

    # -- the rest: rare enough for the generic path ------------------------------------------
    def auth_failed(self, connection_type: str, host_type: str) -> None:
        spec = AUTH_FAILED_BY_TYPE.get(connection_type)
        if spec is not None:
            key = (self.host_type_of(host_type),) if spec.labels else ()
            self.store.family(spec).get(key).values[0] += 1

    def sm_session(self, host_type: str, logins: int = 0, logouts: int = 0) -> None:
        values = self._sm_session.get((self.host_type_of(host_type),)).values
        values[0] += logins - logouts
        values[1] += logins
        values[2] += logouts

    def c2s_message_processed(self, host_type: str, microseconds: int) -> None:
        # Once per stanza a client sends: one dict lookup and a bisect, like the element calls.
        hist = self._processed_cache.get(host_type)
        if hist is None:
            hist = self._processed_cache[host_type] = self._processed.get(
                (self.host_type_of(host_type) if host_type else "",)).hists[0]
        hist.observe(microseconds)

    def _count(self, spec: EventSpec, host_type: str) -> None:
        self.store.family(spec).get((self.host_type_of(host_type) if host_type else "",)
                                    ).values[0] += 1

    def sm_message_bounced(self, host_type: str) -> None:
        self._count(SM_MESSAGE_BOUNCED, host_type)

    def router_no_route_found(self, host_type: str) -> None:
        self._count(ROUTER_NO_ROUTE_FOUND, host_type)

    def router_stanza_dropped(self, host_type: str) -> None:
        self._count(ROUTER_STANZA_DROPPED, host_type)

    def emit(self, event: EventSpec, labels: Mapping[str, str],
             measurements: Mapping[str, float]) -> None:
        if "host_type" in labels and labels["host_type"]:
            labels = dict(labels, host_type=self.host_type_of(labels["host_type"]))
        if not self.store.update(event, labels, measurements) \
                and event.name not in self._unknown_reported:
            self._unknown_reported.add(event.name)
            log.error("instrumentation_undeclared_event event=%s", event.name)

    def set_up(self, event: EventSpec, labels: Mapping[str, str]) -> None:
        # Labels here are host types already (not domains to map): the series at zero.
        self.store.family(event).get(tuple(str(labels.get(n, "")) for n in event.labels))

    # -- exposition -------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format: HELP and TYPE for every declared metric, one sample
        line per series (families never observed show their HELP/TYPE only)."""
        out: list[str] = []
        for name in sorted(EVENTS):
            spec = EVENTS[name]
            fam = self.store.families.get(name)
            for metric, mtype in spec.metrics.items():
                full = f"{name}_{metric}"
                out.append(f"# HELP {full} {_escape_help(spec.doc)}\n")
                out.append(f"# TYPE {full} {_PROM_TYPE[mtype]}\n")
                if fam is None:
                    continue
                if mtype == HISTOGRAM:
                    # A histogram that observed nothing has no meaningful value: not shown
                    # (6.4 does not initialize histograms), so series set up at zero add
                    # no empty buckets.
                    index = fam.histograms.index(metric)
                    for labels, series in sorted(fam.series.items()):
                        if series.hists[index].count:
                            _histogram_lines(out, full, spec.labels, labels,
                                             series.hists[index])
                else:
                    index = fam.scalars.index(metric)
                    for labels, series in sorted(fam.series.items()):
                        out.append(f"{full}{_labels(spec.labels, labels)} "
                                   f"{_number(series.values[index])}\n")
        if self.node is not None:
            out.append("# HELP cluster_node_info The cluster node this endpoint reports on "
                       "(its metrics are this node's only)\n")
            out.append("# TYPE cluster_node_info gauge\n")
            out.append(f'cluster_node_info{{node="{_escape_label(self.node)}"}} 1\n')
        return "".join(out).encode()


def _histogram_lines(out: list[str], full: str, names: tuple[str, ...],
                     values: tuple[str, ...], hist: Any) -> None:
    for bound, total in hist.cumulative():
        le = "+Inf" if bound == float("inf") else _number(bound)
        out.append(f"{full}_bucket{_labels(names, values, le)} {total}\n")
    out.append(f"{full}_sum{_labels(names, values)} {_number(hist.sum)}\n")
    out.append(f"{full}_count{_labels(names, values)} {hist.count}\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], le: str | None = None) -> str:
    pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if le is not None:
        pairs.append(f'le="{le}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape_label(value: str) -> str:
    # Text format: backslash, double quote and line feed are escaped in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
