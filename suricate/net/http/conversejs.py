"""``mod_conversejs``: the Converse.js web client served by the server itself (named after
ejabberd's handler), preconfigured for the domain and this listener's WebSocket (or BOSH)
endpoint, so a browser on ``http://localhost:5280/chat`` can register and chat with no set-up.

Converse.js is not committed: ``make webclient`` (run by ``make install``) fetches the pinned
npm package into ``webclient/node_modules/converse.js`` (see ``webclient/package.json``); the
``conversejs_resources`` option points elsewhere (an installed package has no source tree, so
there it is how the files are found). Without the files the page says how to get them (503)
instead of failing silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate.net.http.message import Request, Response

if TYPE_CHECKING:
    from aiohttp import web

    from suricate.core.server import Server
    from suricate.net.http.listener import HttpListener

log = logging.getLogger("suricate.http")

#: The source tree when Suricate runs from a checkout (an editable install, `make serve`);
#: for an installed package (a wheel in site-packages) there is no such folder.
_SOURCE_TREE = Path(__file__).parents[3]

#: Where `make webclient` puts Converse.js in a source tree.
DEFAULT_RESOURCES = _SOURCE_TREE / "webclient" / "node_modules" / "converse.js" / "dist"

#: The Converse.js release this page is written for (webclient/package.json pins the same).
CONVERSE_VERSION = "14.0.0"


def missing_advice(resources: Path, configured: bool) -> str:
    """What to do when ``resources`` holds no Converse.js: `make webclient` in a source tree;
    for an installed package (pip, no Makefile, no npm folder of ours), fetch the npm package
    anywhere and point ``conversejs_resources`` at its ``dist``."""
    if not configured and (_SOURCE_TREE / "webclient" / "package.json").is_file():
        return "run `make webclient` (needs npm) or set conversejs_resources"
    return (f"no converse.min.js in {resources}: fetch Converse.js (`npm install --prefix DIR "
            f"converse.js@{CONVERSE_VERSION}`, npm from Node.js) and set conversejs_resources "
            f'= "DIR/node_modules/converse.js/dist" in the [[listen.http.handlers.'
            f"mod_conversejs]] handler")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Suricate chat</title>
<link rel="stylesheet" href="{base}/dist/converse.min.css">
<!-- Converse's own icon: without a link the browser asks the origin's root for /favicon.ico,
where nothing is served (a 404 in every visitor's console). -->
<link rel="icon" href="{base}/dist/images/favicon.ico">
</head>
<body class="converse-fullscreen">
<noscript>This XMPP web client (Converse.js) needs JavaScript.</noscript>
<!-- Converse finds the folder of its companion files (OMEMO's libomemo and its WebAssembly
module) from a script element whose src names converse.min.js; without one it guesses the
page's own folder, the origin's root here, where nothing is served. The module is evaluated
once: the import below gets the same instance. -->
<script type="module" src="{base}/dist/converse.min.js"></script>
<script type="module">
import converse from "{base}/dist/converse.min.js";
const settings = {settings};
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
if (settings.websocket_url && settings.websocket_url.startsWith("/")) {{
  settings.websocket_url = scheme + location.host + settings.websocket_url;
}}
if (settings.bosh_service_url && settings.bosh_service_url.startsWith("/")) {{
  settings.bosh_service_url = location.origin + settings.bosh_service_url;
}}
// Converse.js 14.0.0 approves a contact request without asking for the contact's presence in
// return (its accept dialog calls contact.subscribe(), now the model's event subscription, not
// subscribeToPresence()): the two would stay one-way. Ask when the user approves a request.
converse.plugins.add("suricate-subscribe-back", {{
  initialize() {{
    this._converse.api.listen.on("rosterInitialized", (roster) => {{
      roster.on("change:subscription", (contact) => {{
        // none -> from: the user approved the contact's request (RFC 6121 §3.1.4).
        if (contact.previous("subscription") === "none" && contact.get("subscription") === "from"
            && contact.get("ask") !== "subscribe") {{
          contact.subscribeToPresence();
        }}
      }});
    }});
  }},
}});
settings.whitelisted_plugins = ["suricate-subscribe-back"];
converse.initialize(settings);
</script>
</body>
</html>
"""


class ConverseEndpoint:
    def __init__(self, server: Server, opts: Mapping[str, Any],
                 listener: HttpListener | None = None) -> None:
        self.server = server
        self.opts = opts
        self.base = opts["path"].rstrip("/")
        configured = opts.get("conversejs_resources")
        self.resources = Path(configured or DEFAULT_RESOURCES).resolve()
        self.missing = ("" if (self.resources / "converse.min.js").is_file()
                        else missing_advice(self.resources, bool(configured)))
        if self.missing:
            log.warning("conversejs_missing resources=%s: %s", self.resources, self.missing)
        self.listener = listener
        self._page: bytes | None = None

    def page(self) -> bytes:
        if self._page is None:
            ws, bosh = self.opts.get("websocket_url"), self.opts.get("bosh_service_url")
            routes = self.listener.routes if self.listener is not None else []
            for route in routes:
                if ws is None and route.kind == "mod_websockets":
                    ws = route.path
                if bosh is None and route.kind == "mod_bosh":
                    bosh = route.path
            import json  # not at start-up

            domain = self.opts.get("default_domain") or self.server.default_domain
            settings: dict[str, Any] = {
                "assets_path": f"{self.base}/dist/",
                "view_mode": "fullscreen",
                "default_domain": domain,
                "registration_domain": domain,
                "allow_registration": True,
                "discover_connection_methods": False,
                "auto_reconnect": True,
                "show_client_info": False,
                # No list of public XMPP providers fetched from data.xmpp.net (a request to a
                # third party from every visitor's browser, failing on a machine off line) to
                # complete addresses in "Add a contact": full addresses are typed instead.
                "autocomplete_providers_url": "",
            }
            if ws:
                settings["websocket_url"] = ws
            if bosh:
                settings["bosh_service_url"] = bosh
            self._page = _PAGE.format(base=self.base,
                                      settings=json.dumps(settings, indent=1)).encode()
        return self._page

    async def handle(self, request: Request) -> Response:
        return Response.text(405, "GET only\n")

    async def handle_web(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="GET only\n", headers={"Allow": "GET, HEAD"})
        rest = request.path[len(self.base):]
        if rest in ("", "/"):
            if not (self.resources / "converse.min.js").is_file():
                advice = self.missing or missing_advice(
                    self.resources, bool(self.opts.get("conversejs_resources")))
                return web.Response(status=503,
                                    text=f"The web client is not installed: {advice}.\n")
            return web.Response(body=self.page(), content_type="text/html", charset="utf-8",
                                headers={"Cache-Control": "no-cache"})
        if not rest.startswith("/dist/"):
            return web.Response(status=404, text="not found\n")
        target = (self.resources / rest[len("/dist/"):]).resolve()
        # Only files under the resources folder (no "..", no symlink out of it).
        if not target.is_relative_to(self.resources) or not target.is_file():
            return web.Response(status=404, text="not found\n")
        import mimetypes

        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".wasm":
            content_type = "application/wasm"
        return web.FileResponse(target, headers={"Content-Type": content_type,
                                                 "Cache-Control": "max-age=86400"})
