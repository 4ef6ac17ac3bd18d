"""mod_bosh: the options of XMPP over BOSH (XEP-0124/XEP-0206), as in MongooseIM 6.4, where
BOSH needs both this module and a ``[[listen.http.handlers.mod_bosh]]`` handler. The sessions
themselves live in the HTTP handler (``suricate/net/http/bosh.py``); a handler without this
module runs with these defaults (and says so)."""

from __future__ import annotations

from suricate.config.spec import Bool, Int, IntOrInfinity, OneOf, Option, Section
from suricate.core.module import Module


class ModBosh(Module):
    name = "mod_bosh"
    xeps = ("0124", "0206")
    options = Section(
        {
            "backend": Option(
                OneOf(["mnesia", "cets"]), "mnesia",
                "Where sessions are kept; here always in the node's memory.", inert=True),
            "inactivity": Option(
                IntOrInfinity(min=1, unit="seconds"), 30,
                "Longest time without a request held before the session ends."),
            "max_wait": Option(
                IntOrInfinity(min=1, unit="seconds"), None,
                "Cap on the client's 'wait' (longest a request is held).",
                default_doc='"infinity"'),
            "server_acks": Option(
                Bool(), False, "Acknowledge requests with 'ack' (XEP-0124 §9.1)."),
            "max_pause": Option(
                Int(min=1, unit="seconds"), 120, "Longest 'pause' a client may ask for."),
        },
        doc="XEP-0124/XEP-0206 XMPP over BOSH (sessions served by the mod_bosh HTTP handler).",
    )
