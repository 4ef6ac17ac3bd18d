"""Subscription options (XEP-0060 §6.3, form ``pubsub#subscribe_options``, §16.4.2): the fields
Suricate honours, their defaults, the form that carries them and the check of a submitted one.
Pure functions, tested without a server.

Honoured: ``deliver`` (false: no notifications for this subscription), ``include_body`` (a
``<body/>`` saying what happened, for clients that show only bodies) and ``show-values`` (only
to the subscriber's sessions whose presence ``<show/>`` is listed; for subscribers on this
server). Refused, with ``invalid-options``: ``digest`` = true (no digests),
``subscription_type`` and ``subscription_depth`` (collections only; nodes here are leaves), and
fields this version does not know (``expire``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suricate.modules.mod_pubsub.config import PUBSUB, pubsub_error
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

SUBSCRIBE_OPTIONS = f"{PUBSUB}#subscribe_options"
SHOWS = ("away", "chat", "dnd", "online", "xa")

DEFAULTS: dict[str, Any] = {"deliver": True, "digest": False, "include_body": False,
                            "show-values": list(SHOWS)}

_LABELS = {
    "deliver": "Enable delivery?",
    "digest": "Receive digest notifications (approx. one per day)? (not supported: false)",
    "include_body": "Receive message body in addition to payload?",
    "show-values": "Select the presence types which are allowed to receive event "
                   "notifications",
}
#: Collection-only fields (XEP-0248 / XEP-0060 §6.3.4): there are no collections here.
_COLLECTIONS = ("pubsub#subscription_type", "pubsub#subscription_depth")


def options_form(options: Mapping[str, Any], type_: str = "form") -> Element:
    form = Element("x", ns.DATA_FORMS, {"type": type_})
    form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add(
        "value", text=SUBSCRIBE_OPTIONS)
    for key in ("deliver", "digest", "include_body"):
        field = form.add("field", attrs={"var": f"pubsub#{key}", "type": "boolean",
                                         "label": _LABELS[key]})
        field.add("value", text="1" if options.get(key, DEFAULTS[key]) else "0")
    field = form.add("field", attrs={"var": "pubsub#show-values", "type": "list-multi",
                                     "label": _LABELS["show-values"]})
    # XEP-0004 (its XML Schema): a field's <value/>s come before its <option/>s.
    for show in options.get("show-values", DEFAULTS["show-values"]):
        field.add("value", text=show)
    if type_ == "form":
        for show in SHOWS:
            field.add("option").add("value", text=show)
    return form


def _invalid(text: str) -> StanzaError:
    # XEP-0060 §6.3.7: options the service will not take.
    return pubsub_error("bad-request", "invalid-options", text)


def parse_options(form: Element | None) -> dict[str, Any]:
    """The options of a submitted ``pubsub#subscribe_options`` form (only those it sets)."""
    if form is None:
        return {}
    if form.attrs.get("type", "submit") != "submit":
        raise _invalid("a submitted data form is expected")
    out: dict[str, Any] = {}
    for field in form.find_all("field", ns.DATA_FORMS):
        var = field.attrs.get("var", "")
        values = [(v.text or "").strip() for v in field.find_all("value", ns.DATA_FORMS)]
        if var == "FORM_TYPE":
            if values and values[0] != SUBSCRIBE_OPTIONS:
                raise _invalid(f"FORM_TYPE must be {SUBSCRIBE_OPTIONS}")
            continue
        if var in _COLLECTIONS:
            raise _invalid(f"{var} applies to collection nodes, which this service does "
                           "not have")
        key = var.removeprefix("pubsub#")
        if key in ("deliver", "digest", "include_body"):
            text = values[0] if values else ""
            if text not in ("0", "1", "false", "true"):
                raise _invalid(f"{var} must be a boolean")
            out[key] = text in ("1", "true")
        elif key == "show-values":
            wrong = [v for v in values if v not in SHOWS]
            if wrong:
                raise _invalid(f"{var}: unknown presence show {wrong[0]!r}")
            out[key] = [v for v in SHOWS if v in values]
        elif key == "digest_frequency":
            continue  # only meaningful with digests, which are refused below
        else:
            raise _invalid(f"{var} is not a subscription option of this service")
    if out.get("digest"):
        raise _invalid("pubsub#digest: digests are not supported (false only)")
    out.pop("digest", None)
    return out


def wants(options: Mapping[str, Any], show: str) -> bool:
    """Does a subscription with ``options`` get a notification for a session whose presence
    show is ``show`` ("online" for none)?"""
    return bool(options.get("deliver", True)) and show in options.get("show-values", SHOWS)
