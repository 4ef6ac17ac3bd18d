"""Slowing down password guessing: recent failed logins per client address and per account.

MongooseIM 6.4 has nothing built in (operators run fail2ban on its logs). Suricate logs each
failure as ``c2s_auth_failed ip=... user=...`` for fail2ban, and, without any configuration,
makes guessing slow: past ``FREE`` failed logins from one address, or for one account name,
within ``WINDOW`` seconds, each further login attempt from that address or for that name
waits before its credentials are checked, ``FIRST`` seconds then twice as long each time, up
to ``CAP``. Waiting *before* the check (not before the answer) is what bounds the guesses
per second: an attacker gains nothing from not waiting for a failure.

Nobody is locked out: the right password still logs in, after the wait. Successful logins
from addresses and for names without recent failures only pay two dictionary lookups; nothing
is recorded for them. Loopback addresses are not counted per address: behind a local proxy
that does not pass the client's address (PROXY protocol, ``X-Forwarded-For``) every client
would pay for one attacker; the per-name count still applies there.

The tables hold at most ``MAX_ENTRIES`` keys each (an attacker trying random names or
addresses cannot grow them without bound): the entry idle longest goes first.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import Callable
from typing import Any

__all__ = ["AuthFailures", "client_ip"]


def client_ip(peer: Any) -> str | None:
    """The address of a connection's ``peer`` (``(host, port, ...)``), None if unknown."""
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


def _is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class _Recent:
    """Failures per key: key -> (count, time of the last one), oldest first."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, float]] = {}

    def count(self, key: str, now: float, window: float) -> int:
        entry = self._entries.get(key)
        if entry is None:
            return 0
        if now - entry[1] > window:
            del self._entries[key]
            return 0
        return entry[0]

    def add(self, key: str, now: float, window: float, max_entries: int) -> int:
        count = self.count(key, now, window) + 1
        self._entries.pop(key, None)  # re-inserted last: the dict stays ordered by last failure
        self._entries[key] = (count, now)
        # The oldest first: drop what has expired, and what is over the limit.
        for oldest in list(itertools.islice(self._entries, 8)):
            if len(self._entries) <= max_entries and now - self._entries[oldest][1] <= window:
                break
            del self._entries[oldest]
        return count

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class AuthFailures:
    """The server's memory of recent failed logins (one per Server, all listeners)."""

    FREE = 5  # failures answered without any wait (typos, a client with an old password)
    FIRST = 0.5  # seconds: the first wait
    CAP = 4.0  # seconds: the longest wait (below the default state_timeout, 5 s)
    WINDOW = 600.0  # seconds after its last failure that an address or name is forgotten
    MAX_ENTRIES = 100_000

    __slots__ = ("_by_ip", "_by_name", "_clock", "_max_entries")

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self._by_ip = _Recent()
        self._by_name = _Recent()
        self._clock = clock
        self._max_entries = max_entries

    def _wait_for(self, failures: int) -> float:
        if failures < self.FREE:
            return 0.0
        return min(self.FIRST * 2 ** (failures - self.FREE), self.CAP)

    def delay(self, ip: str | None, name: str) -> float:
        """Seconds the attempt to log in as ``name`` (a bare JID) from ``ip`` waits before its
        credentials are checked."""
        if not self._by_ip and not self._by_name:
            return 0.0
        now = self._clock()
        failures = self._by_name.count(name, now, self.WINDOW)
        if ip is not None:
            failures = max(failures, self._by_ip.count(ip, now, self.WINDOW))
        return self._wait_for(failures)

    def failed(self, ip: str | None, name: str | None) -> None:
        """A login as ``name`` (None when the client named nobody valid) from ``ip`` failed."""
        now = self._clock()
        if name:
            self._by_name.add(name, now, self.WINDOW, self._max_entries)
        if ip is not None and not _is_loopback(ip):
            self._by_ip.add(ip, now, self.WINDOW, self._max_entries)

    def succeeded(self, name: str) -> None:
        """The account's owner logged in: their name owes nothing any more (the address's
        failures stay: one right password among guesses clears nothing for the others)."""
        if self._by_name:
            self._by_name.forget(name)
