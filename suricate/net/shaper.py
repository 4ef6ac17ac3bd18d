"""Traffic shapers (``[shaper.NAME] max_rate``): a token bucket per connection.

MongooseIM's shaper (``mongoose_shaper``) lets a connection receive ``max_rate`` bytes per
second; when a read goes over, the receiver pauses before reading again. Here the bucket holds
at most one second of traffic (``max_rate`` tokens, the burst a client gets after being quiet),
refills continuously, and each read takes as many tokens as it carried. A read that leaves the
bucket in debt tells the driver how long to stop reading: real back-pressure (the socket's
receive window fills and TCP slows the peer down), not a sleep on data already in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

NO_SHAPER = "none"  # the reserved name: no shaping at all


class TokenBucket:
    """``max_rate`` bytes per second, with a burst of one second."""

    __slots__ = ("rate", "capacity", "_tokens", "_stamp", "_clock")

    def __init__(self, max_rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_rate <= 0:
            raise ValueError("max_rate must be positive")
        self.rate = float(max_rate)
        self.capacity = float(max_rate)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def consume(self, size: int) -> float:
        """Take ``size`` bytes' worth of tokens; return how long (seconds) to stop reading so
        that the average rate stays at ``max_rate``: 0.0 while within the budget."""
        now = self._clock()
        tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate) - size
        self._stamp = now
        self._tokens = tokens
        return -tokens / self.rate if tokens < 0 else 0.0


def bucket_factory(name: str | None,
                   shapers: Mapping[str, Mapping[str, Any]]) -> Callable[[], TokenBucket] | None:
    """What a listener's ``shaper`` option names: a maker of one bucket per connection, or
    None for ``"none"`` (unlimited). An unknown name is refused by the config loader, so it
    is our bug here."""
    if not name or name == NO_SHAPER:
        return None
    max_rate = int(shapers[name]["max_rate"])
    return lambda: TokenBucket(max_rate)
