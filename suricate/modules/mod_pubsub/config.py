"""Node configuration (XEP-0060 §16.4.4 ``pubsub#node_config``): the fields Suricate honours,
their defaults per node type (MongooseIM's node_flat and node_pep), and the data forms that
carry them (configure, publish-options, meta-data). Pure functions, tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
# XEP-0060 §5.4: the FORM_TYPE of node meta-data is hyphenated (pubsub#meta-data), unlike
# node_config; a client matching the registered FORM_TYPE did not recognise "meta_data".
META_DATA = "http://jabber.org/protocol/pubsub#meta-data"

ACCESS_MODELS = ("open", "presence", "roster", "whitelist", "authorize")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")

# field -> (form type, allowed values or None, description)
FIELDS: dict[str, tuple[str, tuple[str, ...] | None, str]] = {
    "access_model": ("list-single", ACCESS_MODELS, "Who may subscribe and retrieve items"),
    "deliver_notifications": ("boolean", None, "Deliver event notifications"),
    "deliver_payloads": ("boolean", None, "Deliver payloads with event notifications"),
    "max_items": ("text-single", None, "Max # of items to persist ('max': the service limit)"),
    "max_payload_size": ("text-single", None, "Max payload size in bytes"),
    "notification_type": ("list-single", ("normal", "headline"), "Message type of notifications"),
    "notify_config": ("boolean", None, "Notify subscribers when the configuration changes"),
    "notify_delete": ("boolean", None, "Notify subscribers when the node is deleted"),
    "notify_retract": ("boolean", None, "Notify subscribers when items are removed"),
    "persist_items": ("boolean", None, "Persist items to storage"),
    "presence_based_delivery": ("boolean", None, "Deliver notifications only to available users"),
    "publish_model": ("list-single", ("publishers", "subscribers", "open"),
                      "Who may publish items"),
    "roster_groups_allowed": ("text-multi", None, "Roster groups allowed to subscribe"),
    "send_last_published_item": ("list-single", SEND_LAST, "When to send the last item"),
    "subscribe": ("boolean", None, "Allow subscriptions"),
    "title": ("text-single", None, "A friendly name for the node"),
    "type": ("text-single", None, "The type of node data (payload namespace)"),
}

_COMMON = {
    "deliver_notifications": True, "deliver_payloads": True, "max_payload_size": 60000,
    "notification_type": "headline", "notify_config": False, "notify_delete": False,
    "notify_retract": False, "persist_items": True, "publish_model": "publishers",
    "roster_groups_allowed": [], "subscribe": True, "title": "", "type": "",
}
#: MongooseIM 6.4's defaults of node_flat and node_pep (docs of default_node_config).
DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {**_COMMON, "access_model": "open", "max_items": 10,
             "presence_based_delivery": False, "send_last_published_item": "never"},
    "pep": {**_COMMON, "access_model": "presence", "max_items": 1,
            "presence_based_delivery": True, "send_last_published_item": "on_sub_and_presence"},
}


def items_kept(config: Mapping[str, Any], limit: int) -> int:
    """How many items a node keeps: its max_items ("max": the service's ``max_items_node``,
    ``limit``), never more than ``limit``."""
    max_items = config.get("max_items", limit)
    keep = limit if max_items == "max" else min(int(max_items), limit)
    # A node that does not persist items still keeps the last one, for
    # send_last_published_item (XEP-0060 §7.1.2 allows keeping the last item).
    return keep if config.get("persist_items", True) else min(keep, 1)


def _bool(text: str) -> bool:
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError(text)


def coerce(key: str, values: list[str]) -> Any:
    """A field's form values as the stored value; ValueError when they do not fit."""
    kind, allowed, _ = FIELDS[key]
    if kind == "text-multi":
        return [v for v in values if v]
    text = values[0].strip() if values else ""
    if kind == "boolean":
        return _bool(text)
    if key == "max_items":
        return "max" if text == "max" else _non_negative(text)
    if key == "max_payload_size":
        return _non_negative(text)
    if allowed is not None and text not in allowed:
        raise ValueError(text)
    return text


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def check_value(key: str, value: Any) -> Any:
    """A default_node_config value (TOML) as the stored value; ValueError when wrong."""
    kind, allowed, _ = FIELDS[key]
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if kind == "text-multi":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(value)
        return value
    if key in ("max_items", "max_payload_size"):
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 0
                                           or value == "max" and key == "max_items"):
            raise ValueError(value)
        return value
    if not isinstance(value, str) or allowed is not None and value not in allowed:
        raise ValueError(value)
    return value


def parse_form(form: Element | None, form_type: str,
               preconditions: bool = False) -> dict[str, Any]:
    """The fields of a submitted form (XEP-0004 type 'submit') we know, as stored values.

    In a node configuration form, unknown fields are left out: a client may submit back a
    whole form it got elsewhere. ``preconditions``: the form is publish-options, whose every
    field is a precondition on the node configuration field of the same name; XEP-0060
    §7.1.5 (1.15) says to "reject the publication upon encountering unknown fields", since
    such a precondition can never be checked, let alone met."""
    if form is None:
        return {}
    if form.attrs.get("type", "submit") not in ("submit", "result"):
        raise StanzaError("bad-request", "a submitted data form is expected")
    out: dict[str, Any] = {}
    for field in form.find_all("field", ns.DATA_FORMS):
        var = field.attrs.get("var", "")
        values = [v.text for v in field.find_all("value", ns.DATA_FORMS)]
        if var == "FORM_TYPE":
            if values and values[0] != form_type:
                raise StanzaError("bad-request", f"FORM_TYPE must be {form_type}")
            continue
        key = var.removeprefix("pubsub#")
        if form_type == NODE_CONFIG:
            _refuse_unsupported(var, values)
        if key not in FIELDS or not var.startswith("pubsub#"):
            if preconditions:
                raise precondition_error(f"no node configuration field {var}")
            continue
        try:
            out[key] = coerce(key, values)
        except ValueError:
            raise StanzaError("not-acceptable", f"invalid value for {var}") from None
    return out


#: XEP-0248 collection fields (§16.4.4): a node asking for them is refused, not made a leaf.
_COLLECTION_FIELDS = ("pubsub#collection", "pubsub#children",
                      "pubsub#children_association_policy",
                      "pubsub#children_association_whitelist", "pubsub#children_max")


def _refuse_unsupported(var: str, values: list[str]) -> None:
    """Registered node_config fields whose meaning this service does not implement. Left out
    like unknown fields, they would give a node that silently behaves otherwise than asked
    (a leaf instead of a collection, items that never expire), so they are refused."""
    given = [v.strip() for v in values if v and v.strip()]
    if var == "pubsub#node_type" and given and given[0] != "leaf" \
            or var in _COLLECTION_FIELDS and given:
        raise pubsub_error("feature-not-implemented", "unsupported",
                           f"{var}: collection nodes (XEP-0248) are not supported",
                           attrs={"feature": "collections"})
    if var == "pubsub#item_expire" and given and given[0] != "0" \
            or var == "pubsub#purge_offline" and given and given[0] in ("1", "true"):
        raise StanzaError("not-acceptable", f"{var} is not supported by this service")


def config_form(config: Mapping[str, Any], form_type: str = NODE_CONFIG,
                type_: str = "form") -> Element:
    form = Element("x", ns.DATA_FORMS, {"type": type_})
    form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add("value", text=form_type)
    for key, (kind, allowed, label) in FIELDS.items():
        if key not in config:
            continue
        attrs = {"var": f"pubsub#{key}", "type": kind, "label": label}
        field = form.add("field", attrs=attrs)
        value = config[key]
        # XEP-0004 (its XML Schema): a field's <value/>s come before its <option/>s.
        if kind == "text-multi":
            for v in value:
                field.add("value", text=v)
        elif kind == "boolean":
            field.add("value", text="1" if value else "0")
        else:
            field.add("value", text=str(value))
        if type_ == "form" and allowed is not None:
            for option in allowed:
                field.add("option").add("value", text=option)
    return form


def precondition_error(text: str = "publish-options do not match the node's configuration"
                       ) -> StanzaError:
    # XEP-0060 §7.1.5: a publish-options value that the existing node does not have.
    return StanzaError("conflict", text,
                       app_condition=Element("precondition-not-met", PUBSUB_ERRORS))


def pubsub_error(condition: str, app: str, text: str | None = None,
                 attrs: dict[str, str] | None = None, type_: str | None = None) -> StanzaError:
    """A stanza error with its pubsub#errors application condition (XEP-0060 §7, §6).
    ``type_``: where XEP-0060's example gives the condition another type than RFC 6120's
    usual one (unexpected-request is "wait" in RFC 6120 §8.3.3.22, "cancel" or "modify" in
    XEP-0060)."""
    return StanzaError(condition, text, type_,
                       app_condition=Element(app, PUBSUB_ERRORS, attrs or {}))
