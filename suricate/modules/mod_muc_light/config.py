"""mod_muc_light's options (MongooseIM 6.4 names) and the room configuration schema
(``config_schema``): which fields a room's configuration has, their types and defaults.

Pure code: no server, no I/O, so the schema is tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suricate.config.modules_spec import backend
from suricate.config.spec import (
    OMIT,
    Bool,
    Context,
    Float,
    Int,
    IntOrInfinity,
    ListOf,
    OneOf,
    Option,
    Section,
    Str,
)

#: The value keys of a ``config_schema`` item and the type each gives the field.
VALUE_KEYS = {"string_value": "string", "integer_value": "integer",
              "float_value": "float", "boolean_value": "boolean"}

#: Field names reserved for room versioning (the protocol's §5.3).
RESERVED_FIELDS = frozenset({"version", "prev-version"})

#: Internal keys the module reads, and the value key their field must have (MongooseIM 6.4
#: refuses any other type): a string ``all_can_invite = "false"`` would read as true.
RESERVED_KEYS = {"roomname": "string_value", "all_can_configure": "boolean_value",
                 "all_can_invite": "boolean_value"}


def _schema_item_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                      ctx: Context) -> None:
    given = [key for key in VALUE_KEYS if key in out]
    if len(given) != 1:
        ctx.error(path, "exactly one of string_value, integer_value, float_value, "
                        "boolean_value is required")
    if out["field"] in RESERVED_FIELDS:
        ctx.error(f"{path}.field", f"'{out['field']}' is reserved for room versions")
    key = out.get("internal_key", out["field"])
    wanted = RESERVED_KEYS.get(key)
    if wanted is not None and len(given) == 1 and given[0] != wanted:
        ctx.error(path, f"the internal key '{key}' needs a {wanted}")


SCHEMA_ITEM = Section(
    {
        "field": Option(Str(), doc="The field's name in the room configuration (XML element)."),
        "string_value": Option(Str(nonempty=False), OMIT, "Default of a string field."),
        "integer_value": Option(Int(), OMIT, "Default of an integer field."),
        "float_value": Option(Float(), OMIT, "Default of a float field."),
        "boolean_value": Option(Bool(), OMIT, "Default of a boolean field."),
        "internal_key": Option(Str(), OMIT,
                               "Key used in storage; the field name when absent. Reserved: "
                               "roomname (the name in disco and rosters), all_can_configure, "
                               "all_can_invite (per-room overrides of the module options)."),
    },
    post=_schema_item_post,
)

DEFAULT_SCHEMA = [{"field": "roomname", "string_value": "Untitled"},
                  {"field": "subject", "string_value": ""}]


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    host = out["host"]
    if "@HOST@" not in host and "." not in host:
        ctx.error(f"{path}.host", 'expected a subdomain pattern such as "muclight.@HOST@"')
    seen: set[str] = set()
    for i, item in enumerate(out["config_schema"]):
        if item["field"] in seen:
            ctx.error(f"{path}.config_schema[{i}].field", f"duplicate field '{item['field']}'")
        seen.add(item["field"])


CACHE_AFFS = Section(
    {
        "strategy": Option(OneOf(["fifo", "lru"]), "fifo",
                           "Eviction strategy of MongooseIM's segmented cache.", inert=True),
        "time_to_live": Option(IntOrInfinity(min=1, unit="minutes"), 480,
                               "How long a room's affiliations are kept in memory (minutes)."),
        "number_of_segments": Option(Int(min=1), 3,
                                     "Segments of MongooseIM's segmented cache.", inert=True),
    },
    doc="Keep rooms' affiliations in memory instead of reading them for every message.",
)

OPTIONS = Section(
    {
        "host": Option(Str(), "muclight.@HOST@",
                       "Subdomain pattern of the MUC Light service; @HOST@ is each served "
                       "domain."),
        "backend": backend(),
        "cache_affs": Option(CACHE_AFFS, OMIT,
                             "When present, rooms' affiliations are cached in memory "
                             "(time_to_live); otherwise read from storage for every message."),
        "equal_occupants": Option(Bool(), False,
                                  "Rooms have no owner: everyone, the creator too, is a member."),
        "legacy_mode": Option(Bool(), False,
                              "XEP-0045 compatibility mode: the rooms speak the subset of "
                              "classic MUC described in the MUC Light protocol §8.1."),
        "rooms_per_user": Option(IntOrInfinity(min=1), None,
                                 "Rooms a user may be a member of at most.",
                                 default_doc='"infinity"'),
        "blocking": Option(Bool(), True, "The blocking feature (#blocking)."),
        "all_can_configure": Option(Bool(), False,
                                    "Every member may change the whole configuration (the "
                                    "subject is always open to members)."),
        "all_can_invite": Option(Bool(), False,
                                 "Every member may add new members."),
        "max_occupants": Option(IntOrInfinity(min=1), None, "Members of a room at most.",
                                default_doc='"infinity"'),
        "rooms_per_page": Option(IntOrInfinity(min=1), 10,
                                 "Rooms in one disco#items answer (XEP-0059 pages)."),
        "rooms_in_rosters": Option(Bool(), False,
                                   "The user's rooms are added to the roster it fetches "
                                   "(group urn:xmpp:muclight:0, subscription to, with the room's "
                                   "version); needs mod_roster."),
        "config_schema": Option(ListOf(SCHEMA_ITEM), DEFAULT_SCHEMA,
                                "The fields of a room's configuration: field, one of "
                                "string_value/integer_value/float_value/boolean_value (type and "
                                "default), optional internal_key.",
                                default_doc="roomname = \"Untitled\", subject = \"\""),
    },
    doc="MUC Light (urn:xmpp:muclight:0): group chats whose members are an affiliation list, "
        "not presences.",
    post=_post,
)

class ConfigValueError(ValueError):
    """A configuration value does not fit its field (bad-request)."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str  # string, integer, float, boolean
    default: Any
    key: str  # internal key (storage)

    def parse(self, text: str) -> Any:
        """The field's value from its XML text."""
        text = text.strip() if self.kind != "string" else text
        try:
            if self.kind == "integer":
                return int(text)
            if self.kind == "float":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
                return value
        except ValueError:
            raise ConfigValueError(f"{self.name}: expected {self.kind}, got '{text}'") from None
        if self.kind == "boolean":
            if text in ("true", "1"):
                return True
            if text in ("false", "0"):
                return False
            raise ConfigValueError(f"{self.name}: expected true or false, got '{text}'")
        return text

    def render(self, value: Any) -> str:
        if self.kind == "boolean":
            return "true" if value else "false"
        return str(value)


class ConfigSchema:
    """The ordered fields of ``config_schema``, by field name and by internal key."""

    def __init__(self, items: list[Mapping[str, Any]]) -> None:
        fields: list[Field] = []
        for item in items:
            for value_key, kind in VALUE_KEYS.items():
                if value_key in item:
                    fields.append(Field(item["field"], kind, item[value_key],
                                        item.get("internal_key", item["field"])))
        self.fields = sorted(fields, key=lambda f: f.name)
        self.by_name = {f.name: f for f in self.fields}
        self.by_key = {f.key: f for f in self.fields}

    def defaults(self) -> dict[str, Any]:
        """A new room's configuration (internal keys)."""
        return {f.key: f.default for f in self.fields}

    def parse(self, raw: list[tuple[str, str]]) -> dict[str, Any]:
        """Field name/text pairs of a request to internal keys and typed values; an unknown
        field or a repeated one is refused (the schema is the whole vocabulary)."""
        out: dict[str, Any] = {}
        for name, text in raw:
            spec = self.by_name.get(name)
            if spec is None:
                raise ConfigValueError(f"{name}: not a configuration field of this service")
            if spec.key in out:
                raise ConfigValueError(f"{name}: given twice")
            out[spec.key] = spec.parse(text)
        return out

    def render(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field name, text) of a stored configuration, in field order; keys no longer in
        the schema are left out."""
        return [(f.name, f.render(config.get(f.key, f.default))) for f in self.fields]

    def name_of(self, config: Mapping[str, Any], room: str) -> str:
        spec = self.by_key.get("roomname")
        return str(config.get("roomname", spec.default if spec else room)) if spec else room
