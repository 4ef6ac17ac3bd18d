"""metric: instrumentation values from the Prometheus handler's in-memory store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from suricate.admin.context import Caller, Context, fail
from suricate.core.cluster import NodeUnreachable
from suricate.instrument.events import HISTOGRAM, EventSpec
from suricate.instrument.setup import find_handler


def _series(ctx: Context) -> Iterator[tuple[EventSpec, tuple[str, ...], dict[str, float]]]:
    handler: Any = find_handler(ctx.server.instrument, "prometheus")
    if handler is None:
        raise fail("metrics are kept only with [instrumentation.prometheus] configured",
                   "instrumentation_not_enabled")
    return handler.store.snapshot()  # type: ignore[no-any-return]


def _matches(pattern: list[str] | None, name: list[str]) -> bool:
    if not pattern:
        return True
    if len(pattern) > len(name):
        return False
    return all(p in ("_", n) for p, n in zip(pattern, name, strict=False))


def _type_of(spec: EventSpec, key: str) -> str:
    base = key.rsplit("_", 1)[0]
    if key in spec.metrics:
        return spec.metrics[key].value
    return HISTOGRAM.value if spec.metrics.get(base) == HISTOGRAM else "gauge"


def _labels(spec: EventSpec, values: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in zip(spec.labels, values, strict=True)]


async def get_metrics(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for spec, labels, values in _series(ctx):
        for key, value in values.items():
            if _matches(a.get("name"), [spec.name, key]):
                out.append({"name": [spec.name, key], "type": _type_of(spec, key),
                            "labels": _labels(spec, labels), "value": value})
    return out


async def get_metrics_as_dicts(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    keys = a.get("keys")
    out = []
    for spec, labels, values in _series(ctx):
        if not _matches(a.get("name"), [spec.name]):
            continue
        entries = [{"key": k, "value": v} for k, v in values.items() if not keys or k in keys]
        out.append({"name": [spec.name], "labels": _labels(spec, labels), "dict": entries})
    return out


#: The ``server.cluster.ask`` operation answering getClusterMetricsAsDicts on each node
#: (registered by the admin GraphQL endpoint of each node).
CLUSTER_OP = "admin.metrics_as_dicts"


async def answer_metrics(server: Any, name: list[str] | None,
                         keys: list[str] | None) -> list[dict[str, Any]]:
    """This node's getMetricsAsDicts, for another node's getClusterMetricsAsDicts."""
    return await get_metrics_as_dicts(Context(server, Caller("admin")),
                                      {"name": name, "keys": keys})


async def get_cluster_metrics_as_dicts(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    """6.4's getClusterMetricsAsDicts: getMetricsAsDicts of each node (of `nodes`, or of the
    cluster; this node alone without one). A node that does not answer (stopped, or without
    an admin GraphQL endpoint) has a null result."""
    cluster = ctx.server.cluster
    known = await cluster.nodes()
    wanted = a.get("nodes") or known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise fail(f"nodes: not in the cluster: {', '.join(unknown)} (nodes: "
                   f"{', '.join(known)})", "node_not_found")
    out = []
    for node in wanted:
        if node == cluster.node:
            result: Any = await get_metrics_as_dicts(ctx, a)
        else:
            try:
                result = await cluster.ask(node, CLUSTER_OP, a.get("name"), a.get("keys"))
            except NodeUnreachable:
                result = None
        out.append({"node": node, "result": result})
    return out


RESOLVERS = {
    ("MetricAdminQuery", "getClusterMetricsAsDicts"): get_cluster_metrics_as_dicts,
    ("MetricAdminQuery", "getMetrics"): get_metrics,
    ("MetricAdminQuery", "getMetricsAsDicts"): get_metrics_as_dicts,
}
