"""HTTP requests and responses as plain data, and the handler interface.

Handlers that answer one request with one document (GraphQL, metrics, host-meta) see only
these dataclasses, so they do not depend on the HTTP library; the listener converts. Handlers
that hold the connection (WebSocket, BOSH long polls) implement ``handle_web`` and get
aiohttp's request themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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
        return host_of(self.headers.get("host", ""))

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qs  # not at start-up: urllib.parse costs milliseconds

        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), {"content-type": content_type, **(headers or {})})

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
        import json

        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, {"content-type": "application/json", **(headers or {})})


def host_of(header: str) -> str:
    """The Host header without its port, lowercased (RFC 9110 §7.2)."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0].lower() if ":" in header else header.lower()


class HttpHandler(Protocol):
    """One ``[[listen.http.handlers.<type>]]`` entry: answers the requests of its path."""

    async def handle(self, request: Request) -> Response: ...
