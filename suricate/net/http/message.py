"""HTTP/1.1 requests and responses as plain data (RFC 9112), and the handler interface."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

REASONS = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    version: str
    headers: dict[str, str]  # names lowercased; repeated headers joined with ", "
    body: bytes = b""
    peer: Any = None

    @property
    def host(self) -> str:
        """The Host header without its port (RFC 9110 §7.2)."""
        host = self.headers.get("host", "")
        if host.startswith("["):
            return host[1:host.find("]")] if "]" in host else host
        return host.rsplit(":", 1)[0].lower() if ":" in host else host.lower()

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: For protocol upgrades (WebSocket): after the response is written, the connection's
    #: transport is handed to the protocol this returns.
    upgrade: Callable[[Any], Any] | None = None

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), {"content-type": content_type, **(headers or {})})

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, {"content-type": "application/json", **(headers or {})})

    def head(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}"]
        headers = dict(self.headers)
        if self.upgrade is None:
            headers["content-length"] = str(len(self.body))
            headers.setdefault("connection", "keep-alive" if keep_alive else "close")
        headers.setdefault("server", "suricate")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpHandler(Protocol):
    """One ``[[listen.http.handlers.<type>]]`` entry: answers the requests of its path."""

    async def handle(self, request: Request) -> Response: ...
