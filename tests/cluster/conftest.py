"""The real Redis for the cluster tests: a database of their own per test run."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

CLAIM = "suricate-test-claim"


def _redis_or_skip() -> Any:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis 127.0.0.1:6379 is required under CI=true: {exc}")
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc})")
    return client


def require_redis_server() -> None:
    """Tests that start Redis processes of their own (restarts, Sentinel) need the binary:
    skipped without it, except under CI=true, where that is a failure."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required under CI=true")
        pytest.skip("no redis-server binary")


@pytest.fixture(scope="module")
def redis_db() -> Iterator[int]:
    """An empty Redis database claimed for this test run (other runs on the machine use
    others), emptied afterwards."""
    _redis_or_skip()
    token = uuid.uuid4().hex
    for db in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        if client.set(CLAIM, token, nx=True, ex=900):
            if client.dbsize() == 1:
                try:
                    yield db
                finally:
                    client.flushdb()
                return
            client.delete(CLAIM)
    pytest.skip("no empty Redis database among 1..15")
