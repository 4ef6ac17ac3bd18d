"""The memory of failed logins (suricate.auth.failures): waits, expiry, bounded tables."""

from __future__ import annotations

from suricate.auth.failures import AuthFailures, client_ip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_grow_past_the_free_failures_then_expire() -> None:
    clock = Clock()
    failures = AuthFailures(clock)
    assert failures.delay("203.0.113.7", "alice@example.com") == 0
    for _ in range(5):
        failures.failed("203.0.113.7", "alice@example.com")
    assert failures.delay("203.0.113.7", "bob@example.com") == 0.5  # the address
    assert failures.delay("198.51.100.1", "alice@example.com") == 0.5  # the name
    assert failures.delay("198.51.100.1", "bob@example.com") == 0
    for _ in range(10):
        failures.failed("203.0.113.7", None)
    assert failures.delay("203.0.113.7", "x@example.com") == AuthFailures.CAP
    clock.now += AuthFailures.WINDOW + 1
    assert failures.delay("203.0.113.7", "alice@example.com") == 0


def test_success_clears_the_name_not_the_address() -> None:
    failures = AuthFailures(Clock())
    for _ in range(6):
        failures.failed("203.0.113.7", "alice@example.com")
    failures.succeeded("alice@example.com")
    assert failures.delay("198.51.100.1", "alice@example.com") == 0
    assert failures.delay("203.0.113.7", "bob@example.com") == 1.0


def test_loopback_is_not_counted_per_address() -> None:
    failures = AuthFailures(Clock())
    for ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        for _ in range(6):
            failures.failed(ip, None)
        assert failures.delay(ip, "bob@example.com") == 0


def test_tables_stay_bounded() -> None:
    clock = Clock()
    failures = AuthFailures(clock, max_entries=100)
    for i in range(1000):
        clock.now += 0.001
        failures.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}@example.com")
    assert len(failures._by_ip) <= 100 and len(failures._by_name) <= 100
    # expired entries go as new failures come
    clock.now += AuthFailures.WINDOW + 1
    failures.failed("10.9.9.9", "late@example.com")
    assert len(failures._by_ip) < 100


def test_client_ip() -> None:
    assert client_ip(("203.0.113.7", 5222)) == "203.0.113.7"
    assert client_ip(("::1", 5222, 0, 0)) == "::1"
    assert client_ip(None) is None
