"""XEP-0156 §3: ``/.well-known/host-meta`` (XRD, RFC 6415) and ``host-meta.json`` list the
WebSocket (RFC 7395) and BOSH (XEP-0206) endpoints a browser client can connect to.

Served by every HTTP listener that has a ``mod_websockets`` or ``mod_bosh`` handler. The
links are built from the request's Host header (the domain the client asks about, with the
port it used), for the handlers whose ``host`` matches it; a Host that is neither a served
domain nor a handler's explicit host gets 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from suricate.net.http.forwarded import forwarded_proto
from suricate.net.http.message import Request, Response
from suricate.xml.element import escape_attr

if TYPE_CHECKING:
    from suricate.net.http.listener import HttpListener

REL = {"mod_websockets": "urn:xmpp:alt-connections:websocket",
       "mod_bosh": "urn:xmpp:alt-connections:xbosh"}
XRD_NS = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
# A page on another origin reads these documents (XEP-0156 §3: CORS).
CORS = {"access-control-allow-origin": "*"}


class HostMeta:
    def __init__(self, is_local_domain: Callable[[str], bool], listener: HttpListener) -> None:
        self.is_local_domain = is_local_domain
        self.listener = listener

    def links(self, host_header: str, forwarded_proto: str | None = None
              ) -> list[tuple[str, str]] | None:
        from suricate.net.http.message import host_of

        host = host_of(host_header)
        # A reverse proxy in front that ends TLS tells how the client reached it: the links
        # must be the client's (wss:// for a page on https, where ws:// is mixed content).
        # Believing the header costs nothing: it only changes the answer to its own sender.
        secure = self.listener.secure if forwarded_proto is None \
            else forwarded_proto == "https"
        links = []
        explicit = False
        for route in self.listener.routes:
            rel = REL.get(route.kind)
            if rel is None or route.host not in ("_", host):
                continue
            explicit = explicit or route.host == host
            if route.kind == "mod_websockets":
                scheme = "wss" if secure else "ws"
            else:
                scheme = "https" if secure else "http"
            links.append((rel, f"{scheme}://{host_header}{route.path}"))
        if not explicit and not self.is_local_domain(host):
            return None
        return links

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "GET only\n", headers={"allow": "GET, HEAD"})
        if request.path not in ("/.well-known/host-meta", "/.well-known/host-meta.json"):
            return Response.text(404, "not found\n")
        links = self.links(request.headers.get("host", ""), forwarded_proto(request.headers))
        if links is None:
            return Response.text(404, "not a domain served here\n")
        if request.path.endswith(".json"):
            import json  # not at start-up

            doc = {"links": [{"rel": rel, "href": href} for rel, href in links]}
            return Response(200, json.dumps(doc, indent=1).encode(),
                            {"content-type": "application/json", **CORS})
        lines = [f"  <Link rel='{rel}' href='{escape_attr(href)}'/>" for rel, href in links]
        xrd = ("<?xml version='1.0' encoding='utf-8'?>\n"
               f"<XRD xmlns='{XRD_NS}'>\n" + "\n".join(lines) + "\n</XRD>\n")
        return Response(200, xrd.encode(), {"content-type": "application/xrd+xml", **CORS})

