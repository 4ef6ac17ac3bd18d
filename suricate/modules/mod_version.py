"""mod_version: XEP-0092 Software Version of the server."""

from __future__ import annotations

import suricate
from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Bool, Option, Section
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.modules.mod_disco import SERVER_NAME
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element


class ModVersion(Module):
    name = "mod_version"
    options = Section(
        {
            "iqdisc": iqdisc("no_queue"),
            "os_info": Option(Bool(), False, "Include the operating system in the reply."),
        },
        doc="XEP-0092 Software Version.",
    )
    xeps = ("0092",)
    iq_handlers = (("local", ns.VERSION, "version"),)
    features = (ns.VERSION,)

    def version(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            raise StanzaError("not-allowed")  # XEP-0092 §2 only defines retrieval
        query = Element("query", ns.VERSION)
        query.add("name", text=SERVER_NAME)
        query.add("version", text=suricate.__version__)
        # XEP-0092 §2 makes <os/> optional and §4 notes it helps attackers: opt-in.
        if self.opts.get("os_info", False):
            import platform  # opt-in, so not loaded at start-up (~1 ms) for every server

            query.add("os", text=f"{platform.system()} {platform.release()}".strip())
        return query
