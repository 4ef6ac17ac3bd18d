"""``mongoose_prometheus_handler``: the Prometheus text format of ``[instrumentation.prometheus]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from suricate.instrument.prometheus import PrometheusHandler


class PrometheusEndpoint:
    def __init__(self, handler: PrometheusHandler | None, opts: Any = None) -> None:
        self.handler = handler

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "GET only\n", headers={"allow": "GET, HEAD"})
        if self.handler is None:
            return Response.text(503, "instrumentation.prometheus is not configured\n")
        from suricate.instrument.prometheus import CONTENT_TYPE

        body = self.handler.render()
        return Response(200, b"" if request.method == "HEAD" else body,
                        {"content-type": CONTENT_TYPE})
