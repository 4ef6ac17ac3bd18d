"""mod_time: XEP-0202 Entity Time of the server."""

from __future__ import annotations

import datetime

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Section
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element


def entity_time(now: datetime.datetime | None = None) -> Element:
    """``<time><tzo/><utc/></time>``: the server keeps UTC, so the offset is +00:00."""
    now = now or datetime.datetime.now(datetime.UTC)
    time_el = Element("time", ns.TIME)
    # XEP-0202 §3: tzo is the offset in XEP-0082 TZD form, utc a XEP-0082 DateTime in UTC.
    time_el.add("tzo", text="+00:00")
    time_el.add("utc", text=now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return time_el


class ModTime(Module):
    name = "mod_time"
    options = Section({"iqdisc": iqdisc("one_queue")}, doc="XEP-0202 Entity Time.")
    xeps = ("0202",)
    iq_handlers = (("local", ns.TIME, "time"),)
    features = (ns.TIME,)

    def time(self, iq: IqRequest) -> Element:
        if iq.type != "get" or iq.payload.name != "time":
            raise StanzaError("not-allowed" if iq.type != "get" else "bad-request")
        return entity_time()
