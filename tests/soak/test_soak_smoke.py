"""A tiny run of bench/soak.py for CI (the real soak runs for minutes, outside CI): clients
chatting, leaving cleanly or with a reset, hostile ones throughout, and every message sent
accounted for."""

from __future__ import annotations

import argparse
import time

from bench.soak import soak


async def test_soak_smoke() -> None:
    started = time.monotonic()
    result = await soak(argparse.Namespace(clients=30, hostile=4, seconds=5.0, rate=2.0,
                                           seed=7, keep=False, rounds=1))
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0, result
    assert result["confirmed"] > 50, result
    assert result["server_exit_code"] == 0, result
    assert result["server_errors_logged"] == 0, result
    assert time.monotonic() - started < 30, result
