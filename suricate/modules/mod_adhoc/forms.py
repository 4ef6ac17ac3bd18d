"""XEP-0004 data forms as ad-hoc commands use them: building a form field by field and reading
the values a requester submitted. Pure functions, no server."""

from __future__ import annotations

from collections.abc import Iterable

from suricate.xml import ns
from suricate.xml.element import Element


def form(form_type: str, title: str | None = None, instructions: str | None = None,
         *, kind: str = "form") -> Element:
    """An empty ``<x type=kind/>`` scoped by a hidden FORM_TYPE (XEP-0068 §3)."""
    x = Element("x", ns.DATA_FORMS, {"type": kind})
    if title:
        x.add("title", text=title)
    if instructions:
        x.add("instructions", text=instructions)
    field(x, "FORM_TYPE", "hidden", values=[form_type])
    return x


def field(x: Element, var: str, ftype: str, label: str | None = None,
          values: Iterable[str] = (), required: bool = False) -> Element:
    attrs = {"var": var, "type": ftype}
    if label:
        attrs["label"] = label
    f = x.add("field", attrs=attrs)
    if required:
        f.add("required")  # XEP-0004 §3.2
    for value in values:
        f.add("value", text=value)
    return f


def submitted(command: Element) -> dict[str, list[str]] | None:
    """The values of the ``<x type='submit'/>`` in a command, or None without one."""
    for x in command.find_all("x", ns.DATA_FORMS):
        if x.attrs.get("type") == "submit":
            return {f.attrs.get("var", ""): [v.text or "" for v in f.find_all("value",
                                                                              ns.DATA_FORMS)]
                    for f in x.find_all("field", ns.DATA_FORMS)}
    return None


def single(values: dict[str, list[str]], var: str) -> str:
    """The one value of a field ('' when absent or empty)."""
    found = values.get(var) or [""]
    return found[0].strip()
