"""What one domain sees of the configuration: the top level with its ``[[host_config]]``
applied, following MongooseIM 6.4 (doc/configuration/host_config.md):

- ``general``, ``s2s``: the host's options override the top-level ones (``s2s.host_policy``
  entry by entry, keyed by remote host);
- ``auth``: merged when the file was loaded (``schema.merged_auth_raw``), kept whole here;
- ``modules``: the host's table replaces the top-level one completely;
- ``acl``: a class defined in both places is the union of both;
- ``access``: the host's clauses follow the top-level ones, before a final
  ``{acl = "all"}`` catch-all clause when the top-level rule ends with one.

A ``host`` entry names a static domain, a ``host_type`` entry the host type of dynamic
domains (a static domain is its own host type); both are looked up by host type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECTIONS = ("general", "auth", "modules", "acl", "access", "s2s")


def host_configs(cfg: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``[[host_config]]`` entries by the host type they apply to."""
    return {entry.get("host") or entry["host_type"]: entry
            for entry in cfg.get("host_config") or ()}


def host_view(cfg: Mapping[str, Any], host_type: str) -> dict[str, Any]:
    """The sections of ``SECTIONS`` as ``host_type`` sees them."""
    entry = host_configs(cfg).get(host_type, {})
    view = {name: cfg.get(name) for name in SECTIONS}
    if "general" in entry:
        view["general"] = {**cfg["general"], **entry["general"]}
    if "auth" in entry:
        view["auth"] = entry["auth"]
    if "modules" in entry:
        view["modules"] = entry["modules"]
    if "acl" in entry:
        acl = {name: list(patterns) for name, patterns in cfg["acl"].items()}
        for name, patterns in entry["acl"].items():
            acl[name] = acl.get(name, []) + [p for p in patterns if p not in acl.get(name, [])]
        view["acl"] = acl
    if "access" in entry:
        access = {name: list(clauses) for name, clauses in cfg["access"].items()}
        for name, clauses in entry["access"].items():
            access[name] = merge_access_rule(access.get(name, []), clauses)
        view["access"] = access
    if "s2s" in entry:
        s2s = {**cfg["s2s"], **{k: v for k, v in entry["s2s"].items() if k != "host_policy"}}
        if "host_policy" in entry["s2s"]:
            policy = {p["host"]: p for p in cfg["s2s"].get("host_policy", [])}
            policy.update({p["host"]: p for p in entry["s2s"]["host_policy"]})
            s2s["host_policy"] = list(policy.values())
        view["s2s"] = s2s
    return view


def merge_access_rule(top: list[Mapping[str, Any]],
                      host: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """6.4: the host's clauses after the top-level ones, but before a final catch-all."""
    if top and top[-1].get("acl") == "all":
        return [*top[:-1], *host, top[-1]]
    return [*top, *host]


def overridden(cfg: Mapping[str, Any], section: str) -> dict[str, Mapping[str, Any]]:
    """Host types whose ``[[host_config]]`` gives ``section``, with their view of it."""
    return {key: host_view(cfg, key)[section] for key, entry in host_configs(cfg).items()
            if section in entry}
