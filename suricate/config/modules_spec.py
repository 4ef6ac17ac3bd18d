"""Shared pieces of `[modules.mod_x]` specs: the option builders every module reuses
(`iqdisc()`, `backend()`, `period()`) and the 6.4 modules Suricate does not have.

Each module declares its own section as the class attribute `options` (a module is one place,
DESIGN.md §7); nothing here lists the modules that exist: the catalogue
(`suricate.config.catalog`) finds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suricate.config.spec import DEFAULTS, Context, Int, OneOf, Option, Section

#: IQ handling strategies of MongooseIM (`iqdisc.type`).
IQDISC_TYPES = ["one_queue", "no_queue", "queues", "parallel"]

#: Storage backends of 6.4 modules that Suricate does not implement; only "rdbms"
#: (SQLite or PostgreSQL through `[outgoing_pools.rdbms]`) exists here.
UNAVAILABLE_BACKENDS = [
    "mnesia",
    "cets",
    "ldap",
    "riak",
    "cassandra",
    "elasticsearch",
    "rdbms_async",
]


def _iqdisc_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # MongooseIM: `workers` only makes sense (and is then mandatory) for the "queues" strategy.
    if out["type"] == "queues" and out["workers"] is None:
        ctx.error(f"{path}.workers", 'required when iqdisc.type is "queues"')
    if out["type"] != "queues" and "workers" in raw:
        ctx.error(f"{path}.workers", 'only allowed when iqdisc.type is "queues"')


def iqdisc(default: str) -> Option:
    return Option(
        Section(
            {
                "type": Option(OneOf(IQDISC_TYPES), default, "IQ processing strategy."),
                "workers": Option(
                    Int(min=1), None, 'Number of worker queues; only for type "queues".'
                ),
            },
            post=_iqdisc_post,
        ),
        DEFAULTS,
        "How incoming IQs for this module are processed.",
        inert=True,
    )


def backend() -> Option:
    return Option(
        OneOf(
            ["rdbms"],
            UNAVAILABLE_BACKENDS,
            # 6.4's default is "mnesia" for several modules, so configurations name it.
            "backend '{value}' is not available in this version of Suricate: use "
            '"rdbms" (or leave it out): the data goes to [outgoing_pools.rdbms.default], '
            "an SQLite file when no pool is configured",
        ),
        "rdbms",
        "Storage backend. Suricate stores everything through the configured RDBMS pool "
        "(SQLite or PostgreSQL).",
    )


#: Units of a MongooseIM time period (`{value = 3, unit = "days"}`), in seconds.
TIME_UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def period(value: int, unit: str, doc: str) -> Option:
    return Option(
        Section(
            {
                "value": Option(Int(min=0), doc="Number of units."),
                "unit": Option(OneOf(list(TIME_UNITS)), doc="days, hours, minutes or seconds."),
            }
        ),
        {"value": value, "unit": unit},
        doc,
    )


def period_seconds(p: Mapping[str, Any]) -> int:
    """A normalized `period()` value in seconds."""
    return int(p["value"]) * TIME_UNITS[p["unit"]]



#: Modules that exist in MongooseIM 6.4 but not (yet) in Suricate, with what to do instead.
UNAVAILABLE_MODULES: dict[str, str] = {
    # 6.4 configures WebSockets as an HTTP handler, not as a module.
    "mod_websockets": "not a module, in MongooseIM 6.4 either: WebSockets are served by a "
    "[[listen.http.handlers.mod_websockets]] handler (docs/http.md)",
}
