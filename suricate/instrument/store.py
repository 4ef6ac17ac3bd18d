"""In-memory values of every event: the state behind ``/metrics`` and the GraphQL ``metric``
category. One ``Family`` per event, one ``Series`` per set of label values.

A series keeps its scalar measurements in a list, in the event's declared order, so a hot
caller that holds the series updates a value with one list store.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping

from suricate.instrument.events import EVENTS, HISTOGRAM, EventSpec, MetricType


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> Iterator[tuple[float, int]]:
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            yield bound, total


class Series:
    __slots__ = ("labels", "values", "hists")

    def __init__(self, family: Family, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.values = [0.0] * len(family.scalars)
        self.hists = [Histogram(family.spec.buckets_of(m)) for m in family.histograms]


class Family:
    __slots__ = ("spec", "scalars", "scalar_types", "histograms", "series")

    def __init__(self, spec: EventSpec) -> None:
        self.spec = spec
        self.scalars = [m for m, t in spec.metrics.items() if t != HISTOGRAM]
        self.scalar_types = [spec.metrics[m] for m in self.scalars]
        self.histograms = [m for m, t in spec.metrics.items() if t == HISTOGRAM]
        self.series: dict[tuple[str, ...], Series] = {}

    def get(self, labels: tuple[str, ...]) -> Series:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = Series(self, labels)
        return series

    def update(self, labels: tuple[str, ...], measurements: Mapping[str, float]) -> None:
        series = self.get(labels)
        for index, metric in enumerate(self.scalars):
            value = measurements.get(metric)
            if value is None:
                continue
            if self.scalar_types[index] == MetricType.GAUGE:
                series.values[index] = value
            else:
                series.values[index] += value
        for index, metric in enumerate(self.histograms):
            value = measurements.get(metric)
            if value is not None:
                series.hists[index].observe(value)


class MetricStore:
    """Values of every declared event; families are made on first use."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def family(self, spec: EventSpec) -> Family:
        fam = self.families.get(spec.name)
        if fam is None:
            fam = self.families[spec.name] = Family(spec)
        return fam

    def update(self, spec: EventSpec, labels: Mapping[str, str],
               measurements: Mapping[str, float]) -> bool:
        """Record one generic event; False when the spec is not the declared one."""
        if EVENTS.get(spec.name) is not spec:
            return False
        key = tuple(str(labels.get(name, "")) for name in spec.labels)
        self.family(spec).update(key, measurements)
        return True

    def snapshot(self) -> Iterator[tuple[EventSpec, tuple[str, ...], dict[str, float]]]:
        """Every series as (event, label values, {metric: value}); a histogram metric ``m``
        appears as ``m_count``, ``m_sum`` and ``m_mean``."""
        for name in sorted(self.families):
            fam = self.families[name]
            for labels, series in sorted(fam.series.items()):
                values = dict(zip(fam.scalars, series.values, strict=True))
                for metric, hist in zip(fam.histograms, series.hists, strict=True):
                    values[f"{metric}_count"] = hist.count
                    values[f"{metric}_sum"] = hist.sum
                    values[f"{metric}_mean"] = hist.sum / hist.count if hist.count else 0
                yield fam.spec, labels, values
