"""A resolver's own bug (an exception that is not a GraphQL field error) answers 6.4's
"Unexpected ... resolver crash" with a code, logged with its trace, and shows the caller
nothing of the exception's text."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from graphql import GraphQLError

from suricate.admin.context import fail
from suricate.admin.schema import _bind

INFO = SimpleNamespace(parent_type=SimpleNamespace(name="AccountAdminQuery"),
                       field_name="countUsers", context=None)


def _sync_bug(_ctx: Any, _args: dict[str, Any]) -> Any:
    raise OverflowError("Python int too large to convert to SQLite INTEGER")


async def _async_bug(_ctx: Any, _args: dict[str, Any]) -> Any:
    raise KeyError("internal detail")


async def _refusal(_ctx: Any, _args: dict[str, Any]) -> Any:
    raise fail("domain x is not served here", "domain_not_found")


@pytest.mark.parametrize("bug", [_sync_bug, _async_bug])
def test_a_crash_is_a_coded_error_and_a_logged_trace(
        bug: Any, caplog: pytest.LogCaptureFixture) -> None:
    resolve = _bind(bug)

    async def run() -> Any:
        result = resolve(None, INFO)
        return await result if asyncio.iscoroutine(result) else result

    with caplog.at_level(logging.ERROR, "suricate.admin"), pytest.raises(GraphQLError) as err:
        asyncio.run(run())
    assert err.value.message == ("Unexpected AccountAdminQuery resolver crash (see the server "
                                 "log)")
    assert err.value.extensions == {"code": "internal_server_error"}
    (record,) = [r for r in caplog.records if "graphql_resolver_crash" in r.getMessage()]
    assert "AccountAdminQuery.countUsers" in record.getMessage() and record.exc_info


def test_a_field_error_passes_as_it_is() -> None:
    with pytest.raises(GraphQLError) as err:
        asyncio.run(_bind(_refusal)(None, INFO))
    assert err.value.extensions == {"code": "domain_not_found"}
    assert _bind(lambda _c, _a: 3)(None, INFO) == 3
