"""Option specs of `[modules.mod_x]`, keyed by module name.

Kept apart from the rest of the schema so each entry can later move next to its module
(`suricate/modules/mod_x.py` declaring its own config section, DESIGN.md §2.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suricate.config.spec import (
    DEFAULTS,
    Bool,
    Context,
    Int,
    IntOrInfinity,
    IPNetwork,
    ListOf,
    OneOf,
    Option,
    Section,
    Str,
)

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
            "backend '{value}' is not available in this version of Suricate",
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


MODULES: dict[str, Section] = {
    "mod_disco": Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "extra_domains": Option(
                ListOf(Str(lower=True), unique=True), [], "Extra domains listed in disco#items."
            ),
            "server_info": Option(
                ListOf(
                    Section(
                        {
                            "name": Option(Str(), doc="Form field name (e.g. abuse-addresses)."),
                            "urls": Option(ListOf(Str()), doc="Addresses listed for this field."),
                            "modules": Option(
                                ListOf(Str()),
                                None,
                                "Only advertise when one of these modules is enabled.",
                            ),
                        }
                    )
                ),
                [],
                "XEP-0157 contact addresses added to the server's disco#info.",
            ),
            "users_can_see_hidden_services": Option(
                Bool(), True, "Whether users see components marked as hidden.", inert=True
            ),
        },
        doc="XEP-0030 Service Discovery.",
    ),
    "mod_ping": Section(
        {
            "iqdisc": iqdisc("no_queue"),
            "send_pings": Option(Bool(), False, "Ping clients that have been idle."),
            "ping_interval": Option(
                Int(min=1, unit="seconds"), 60, "Idle time after which a ping is sent."
            ),
            "ping_req_timeout": Option(
                Int(min=1, unit="seconds"), 32, "How long to wait for the ping reply."
            ),
            "timeout_action": Option(
                OneOf(["none", "kill"]), "none", "What to do when a ping is not answered."
            ),
        },
        doc="XEP-0199 XMPP Ping.",
    ),
    "mod_version": Section(
        {
            "iqdisc": iqdisc("no_queue"),
            "os_info": Option(Bool(), False, "Include the operating system in the reply."),
        },
        doc="XEP-0092 Software Version.",
    ),
    "mod_last": Section(
        {"iqdisc": iqdisc("one_queue"), "backend": backend()},
        doc="XEP-0012 Last Activity.",
    ),
    "mod_time": Section({"iqdisc": iqdisc("one_queue")}, doc="XEP-0202 Entity Time."),
    "mod_vcard": Section(
        {
            "iqdisc": iqdisc("parallel"),
            "backend": backend(),
            "host": Option(
                Str(lower=True),
                "vjud.@HOST@",
                "Domain of the user directory; @HOST@ is replaced by each served domain.",
                inert=True,
            ),
            "search": Option(
                Bool(), True, "Whether the user directory can be searched.", inert=True
            ),
            "matches": Option(
                IntOrInfinity(min=0),
                30,
                "Maximum number of search results returned.",
                inert=True,
            ),
        },
        doc="XEP-0054 vcard-temp and XEP-0055 Jabber Search.",
        unavailable={"ldap": "the ldap backend is not available in this version of Suricate"},
    ),
    "mod_register": Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "access": Option(
                Str(),
                "all",
                'Access rule deciding whether a username may be registered ("all" allows any).',
            ),
            "registration_watchers": Option(
                ListOf(Str()), [], "JIDs notified by message of every registration."
            ),
            "password_strength": Option(
                Int(min=0), 0, "Minimum password entropy in bits; 0 disables the check."
            ),
            "ip_access": Option(
                ListOf(
                    Section(
                        {
                            "address": Option(IPNetwork(), doc="Address or network."),
                            "policy": Option(OneOf(["allow", "deny"]), doc="Decision."),
                        }
                    )
                ),
                [],
                "Ordered allow/deny list of client addresses; the first match decides.",
            ),
            "welcome_message": Option(
                Section(
                    {
                        "subject": Option(Str(nonempty=False), "", "Subject."),
                        "body": Option(Str(nonempty=False), "", "Body."),
                    }
                ),
                DEFAULTS,
                "Message sent to new users; nothing is sent when both fields are empty.",
            ),
        },
        doc="XEP-0077 In-Band Registration.",
    ),
    "mod_blocking": Section(
        {"iqdisc": iqdisc("one_queue"), "backend": backend()},
        doc="XEP-0191 Blocking Command.",
    ),
    "mod_presence": Section({}, doc="RFC 6121 presence handling."),
    "mod_roster": Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "versioning": Option(Bool(), False, "XEP-0237 roster versioning."),
            "store_current_id": Option(
                Bool(), False, "Store the roster version instead of computing it."
            ),
            "backend": backend(),
        },
        doc="RFC 6121 roster management.",
    ),
    "mod_offline": Section(
        {
            "access_max_user_messages": Option(
                Str(),
                "max_user_offline_messages",
                "Access rule giving the maximum number of stored messages per user.",
            ),
            "backend": backend(),
            "store_groupchat_messages": Option(
                Bool(), False, "Also store groupchat messages for offline users."
            ),
        },
        doc="XEP-0160 offline message storage.",
    ),
    "mod_sasl2": Section({}, doc="XEP-0388 Extensible SASL Profile (SASL2)."),
    "mod_bind2": Section(
        {}, doc="XEP-0386 Bind 2: resource binding inline in SASL2, with SM, carbons and CSI."
    ),
    "mod_fast_auth_token": Section(
        {
            "backend": backend(),
            "validity_period": Option(
                Section(
                    {
                        "access": period(3, "days", "How long a token can be used."),
                        "rotate_before_expire": period(
                            6,
                            "hours",
                            "A login this close to the token's expiry gets a new token; "
                            "0 disables rotation.",
                        ),
                    }
                ),
                DEFAULTS,
                "Token lifetimes.",
            ),
        },
        doc="XEP-0484 Fast Authentication Streamlining Tokens (HT-* mechanisms).",
    ),
    "mod_stream_management": Section(
        {
            "buffer_max": Option(
                IntOrInfinity(min=1), 100, "Stanzas kept until the client acknowledges them."
            ),
            "ack_freq": Option(
                IntOrInfinity(min=1),
                1,
                'Ask for an acknowledgement after this many stanzas ("infinity": never ask).',
            ),
            "resume_timeout": Option(
                Int(min=1, unit="seconds"), 600, "How long a lost session waits to be resumed."
            ),
            "stale_h": Option(
                Section(
                    {
                        "enabled": Option(
                            Bool(), False, "Remember the counter of sessions that timed out."
                        ),
                        "repeat_after": Option(
                            Int(min=1, unit="seconds"), 1800, "How often old entries are removed."
                        ),
                        "geriatric": Option(
                            Int(min=1, unit="seconds"), 3600, "How long an entry is kept."
                        ),
                    }
                ),
                DEFAULTS,
                "Answer a late resumption with the last 'h' of the session (XEP-0198 §5).",
            ),
        },
        doc="XEP-0198 Stream Management.",
        unavailable={"backend": "the session table is in memory; 'backend' is not used"},
    ),
    "mod_carboncopy": Section({"iqdisc": iqdisc("no_queue")}, doc="XEP-0280 Message Carbons."),
    "mod_csi": Section(
        {
            "buffer_max": Option(
                Int(min=1), 20, "Stanzas held while the client is inactive before a flush."
            )
        },
        doc="XEP-0352 Client State Indication.",
    ),
}

#: Modules that exist in MongooseIM 6.4 but not (yet) in Suricate.
UNAVAILABLE_MODULES: list[str] = [
    "mod_adhoc",
    "mod_amp",
    "mod_auth_token",
    "mod_bosh",
    "mod_cache_users",
    "mod_caps",
    "mod_domain_isolation",
    "mod_event_pusher",
    "mod_extdisco",
    "mod_global_distrib",
    "mod_http_upload",
    "mod_inbox",
    "mod_jingle_sip",
    "mod_keystore",
    "mod_mam",
    "mod_muc",
    "mod_muc_light",
    "mod_muc_log",
    "mod_offline_stub",
    "mod_privacy",
    "mod_pubsub",
    "mod_push_service_mongoosepush",
    "mod_shared_roster_ldap",
    "mod_sic",
    "mod_smart_markers",
    "mod_websockets",
]
