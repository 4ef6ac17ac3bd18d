"""Reading, validating and normalizing the TOML configuration file."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from suricate.config.catalog import CATALOG, ModuleNotLoadable
from suricate.config.schema import ROOT
from suricate.config.spec import INVALID, ConfigError, Context, Problem, at, join

#: [auth.ldap] pool_tag and bind_pool_tag when not given (a refused config is checked raw).
LDAP_DEFAULT_TAGS = {"pool_tag": "default", "bind_pool_tag": "bind"}

#: Where a problem of the whole text (TOML syntax) is reported when the file is not known.
_NO_PATH = "<file>"

#: Names that are valid everywhere an access rule or ACL name is expected.
_BUILTIN_NAMES = ("all", "none")


def parse_config(text: str, base_dir: Path) -> dict[str, Any]:
    """Validate a TOML document and return the normalized configuration.

    Relative file paths are resolved against `base_dir`. Raises `ConfigError` with every
    problem found (not only the first) when the configuration is refused.
    """
    return parse_config_with_warnings(text, base_dir)[0]


def parse_config_with_warnings(text: str, base_dir: Path) -> tuple[dict[str, Any], list[Problem]]:
    """`parse_config`, also returning the warnings of an accepted configuration.

    A warning is a `Problem` that does not refuse the file: an option given although it has
    no effect in this version (`Option(inert=True)`).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError([Problem(_NO_PATH, f"invalid TOML: {exc}")]) from None
    ctx = Context(base_dir.absolute())
    result = ROOT.normalize(raw, "", ctx)
    if result is not INVALID:
        _cross_check(result, ctx)
    elif isinstance(raw, dict):
        # Still check cross-section references, so one run reports as much as possible:
        # definitions come from the sections that were valid, references from the raw text.
        _cross_check(_partial(raw, ctx.base_dir), ctx)
    if ctx.problems:
        raise ConfigError(_dedup(ctx.problems))
    assert isinstance(result, dict)
    return result, _dedup(ctx.warnings)


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate the configuration file at `path` (see `parse_config`)."""
    return load_config_with_warnings(path)[0]


def load_config_with_warnings(path: Path) -> tuple[dict[str, Any], list[Problem]]:
    """`load_config`, also returning the warnings (see `parse_config_with_warnings`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [Problem(str(path), f"cannot read the configuration file: {exc}")]
        ) from None
    try:
        return parse_config_with_warnings(text, path.absolute().parent)
    except ConfigError as err:
        # A syntax error has no TOML path: name the file, as an operator would look for it.
        raise ConfigError([Problem(str(path), p.message) if p.path == _NO_PATH else p
                           for p in err.problems]) from None


_DEFINITIONS = ("shaper", "acl", "access", "auth")


def _partial(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Best-effort view of a refused config for `_cross_check`.

    Each top-level section is normalized on its own (its problems were already reported, so
    they are discarded here). A section that defines names is left out when it is invalid
    (its names are unknown); a section that only refers to names falls back to its raw text.
    """
    out: dict[str, Any] = {}
    for name, option in ROOT.options.items():
        scratch = Context(base_dir)
        value = (
            option.normalize(raw[name], name, scratch)
            if name in raw
            else option.missing(name, scratch)
        )
        if value is INVALID:
            value = None if name in _DEFINITIONS else raw.get(name)
        out[name] = value
    return out


def _dedup(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    unique = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique


def _listeners(cfg: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    listen = cfg.get("listen")
    if not isinstance(listen, dict):
        return
    for kind, items in listen.items():
        if isinstance(items, list):
            for i, listener in enumerate(items):
                if isinstance(listener, dict):
                    yield kind, at(join("listen", kind), i), listener


class References:
    """What a module's ``check_config`` can ask of the rest of the configuration: whether a
    name it refers to is defined, reporting the problem at the module option's TOML path."""

    def __init__(self, access: Callable[[str, Any], None], shaper: Callable[[str, Any], None],
                 pools: Any, report: Context, modules: Any = None,
                 general: Any = None) -> None:
        self.access_defined = access
        self.shaper_defined = shaper
        self._pools = pools if isinstance(pools, dict) else {}
        self.report = report
        #: The raw ``[modules]`` and ``[general]`` tables, for a module that depends on
        #: another's options (mod_auth_token on mod_keystore's keys); may hold any TOML value.
        self.modules: dict[str, Any] = modules if isinstance(modules, dict) else {}
        self.general: dict[str, Any] = general if isinstance(general, dict) else {}

    def pool_defined(self, path: str, kind: str, tag: Any) -> None:
        """``[outgoing_pools.<kind>.<tag>]`` must exist."""
        pools = self._pools.get(kind)
        if isinstance(tag, str) and (not isinstance(pools, dict) or tag not in pools):
            self.report.error(path, f"pool '{tag}' is not defined in [outgoing_pools.{kind}]")


def _cross_check(cfg: dict[str, Any], report: Context) -> None:
    """Checks that span sections: names referring to [shaper], [acl], [access], [auth].

    Written defensively: on a refused config it sees raw TOML values of any type.
    """
    shapers = cfg.get("shaper")
    acls = cfg.get("acl")
    access = cfg.get("access")
    auth = cfg.get("auth")
    modules = cfg.get("modules")

    def shaper_defined(path: str, name: Any) -> None:
        if not isinstance(name, str) or not isinstance(shapers, dict):
            return
        if name != "none" and name not in shapers:
            report.error(path, f"shaper '{name}' is not defined in [shaper]")

    def listener_shaper_defined(path: str, name: Any) -> None:
        if isinstance(name, str) and isinstance(access, dict) and name in access \
                and isinstance(shapers, dict) and name not in shapers:
            # Configs from before 6.4 gave c2s/s2s listeners the access rules "c2s_shaper"
            # and "s2s_shaper"; 6.4 refuses them too, so say what to write instead.
            report.error(path, f"shaper '{name}' is not defined in [shaper] (it is an access "
                         "rule: since MongooseIM 6.4 a listener names a shaper, e.g. "
                         'shaper = "normal")')
            return
        shaper_defined(path, name)

    def access_defined(path: str, name: Any) -> None:
        if not isinstance(name, str) or not isinstance(access, dict):
            return
        if name not in _BUILTIN_NAMES and name not in access:
            report.error(path, f"access rule '{name}' is not defined in [access]")

    bound: dict[tuple[str, Any, str], str] = {}
    for kind, path, listener in _listeners(cfg):
        listener_shaper_defined(join(path, "shaper"), listener.get("shaper"))
        access_defined(join(path, "access"), listener.get("access"))
        # Two listeners on one address and port would fail at bind time with a less helpful error.
        key = (
            str(listener.get("ip_address", "0.0.0.0")),
            listener.get("port", 0),
            str(listener.get("proto", "tcp")),
        )
        if not isinstance(key[1], int):
            continue
        if key in bound:
            report.error(join(path, "port"), f"port {key[1]} is already used by {bound[key]}")
        else:
            bound[key] = path
        methods = listener.get("allowed_auth_methods")
        if kind == "c2s" and isinstance(methods, list) and isinstance(auth, dict):
            for method in methods:
                if method not in auth.get("methods", []):
                    report.error(
                        join(path, "allowed_auth_methods"),
                        f"method '{method}' is not enabled in auth.methods",
                    )

    if isinstance(auth, dict) and "http" in (auth.get("methods") or []):
        # MongooseIM 6.4: the http method talks to the pool tagged "auth".
        pools = cfg.get("outgoing_pools")
        http_pools = pools.get("http") if isinstance(pools, dict) else None
        if not isinstance(http_pools, dict) or "auth" not in http_pools:
            report.error("auth.methods",
                         "method 'http' needs the pool [outgoing_pools.http.auth]")

    if isinstance(auth, dict) and "ldap" in (auth.get("methods") or []) \
            and isinstance(auth.get("ldap"), dict):
        # 6.4: searches go through pool_tag, password checks (binds) through bind_pool_tag.
        pools = cfg.get("outgoing_pools")
        ldap_pools = pools.get("ldap") if isinstance(pools, dict) else None
        for option in ("pool_tag", "bind_pool_tag"):
            tag = auth["ldap"].get(option, LDAP_DEFAULT_TAGS[option])
            if not isinstance(ldap_pools, dict) or tag not in ldap_pools:
                report.error(f"auth.ldap.{option}",
                             f"method 'ldap' needs the pool [outgoing_pools.ldap.{tag}]")

    s2s = cfg.get("s2s")
    if isinstance(s2s, dict) and isinstance(s2s.get("outgoing"), dict):
        shaper_defined("s2s.outgoing.shaper", s2s["outgoing"].get("shaper"))

    if isinstance(access, dict) and isinstance(acls, dict):
        for rule, clauses in access.items():
            for i, clause in enumerate(clauses):
                name = clause["acl"]
                if name not in acls:
                    # MongooseIM starts with such a clause (its own default config names the
                    # undefined classes "admin" and "blocked"): it matches nobody.
                    report.warn(
                        join(at(join("access", rule), i), "acl"),
                        f"acl '{name}' is not defined in [acl]: this clause matches nobody",
                    )

    refs = References(access_defined, shaper_defined, cfg.get("outgoing_pools"), report,
                      modules, cfg.get("general"))
    if isinstance(modules, dict):
        _check_modules(modules, "modules", refs)
    _check_host_configs(cfg, report, shaper_defined)


def _check_modules(modules: dict[str, Any], path: str, refs: References) -> None:
    # Each module checks its own references (Module.check_config): the loader knows
    # nothing of any module's options.
    for name, opts in modules.items():
        if isinstance(opts, dict) and name in CATALOG:
            with contextlib.suppress(ModuleNotLoadable):
                CATALOG[name].check_config(opts, join(path, name), refs)


def _check_host_configs(cfg: dict[str, Any], report: Context,
                        shaper_defined: Callable[[str, Any], None]) -> None:
    """``[[host_config]]``: each names a known host or host type, once; what its sections
    refer to exists in the top level or in the entry itself."""
    entries = cfg.get("host_config")
    general: dict[str, Any] = cfg["general"] if isinstance(cfg.get("general"), dict) else {}
    if not isinstance(entries, list):
        return
    seen: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(entries):
        path = at("host_config", i)
        if not isinstance(entry, dict):
            continue
        if ("host" in entry) == ("host_type" in entry):
            report.error(path, 'expected exactly one of "host" or "host_type"')
            continue
        kind = "host" if "host" in entry else "host_type"
        name = entry[kind]
        known = general.get(f"{kind}s") or []
        if isinstance(name, str) and name.lower() not in known and name not in known:
            report.error(join(path, kind), f"unknown {kind.replace('_', ' ')} \"{name}\" "
                         f"(not one of general.{kind}s)")
        if (kind, str(name)) in seen:
            report.error(join(path, kind),
                         f'"{name}" already has a host_config ({seen[kind, str(name)]})')
        seen[kind, str(name)] = path
        acls = {**(cfg.get("acl") or {}), **(entry.get("acl") or {})} \
            if isinstance(entry.get("acl", {}), dict) else {}
        access = {**(cfg.get("access") or {}), **(entry.get("access") or {})} \
            if isinstance(entry.get("access", {}), dict) else {}
        for rule, clauses in access.items() if isinstance(entry.get("access"), dict) else ():
            if rule not in entry["access"] or not isinstance(clauses, list):
                continue
            for j, clause in enumerate(entry["access"][rule]):
                acl = clause.get("acl") if isinstance(clause, dict) else None
                if isinstance(acl, str) and acl not in acls and acl not in _BUILTIN_NAMES:
                    report.warn(join(at(join(join(path, "access"), rule), j), "acl"),
                                f"acl '{acl}' is not defined in [acl] or {path}.acl: "
                                "this clause matches nobody")

        def access_defined(p: str, rule: Any, access: dict[str, Any] = access) -> None:
            if isinstance(rule, str) and rule not in _BUILTIN_NAMES and rule not in access:
                report.error(p, f"access rule '{rule}' is not defined in [access]")

        if isinstance(entry.get("modules"), dict):
            top: dict[str, Any] = cfg["modules"] if isinstance(cfg.get("modules"), dict) else {}
            refs = References(access_defined, shaper_defined, cfg.get("outgoing_pools"), report,
                              {**top, **entry["modules"]}, cfg.get("general"))
            _check_modules(entry["modules"], join(path, "modules"), refs)
        auth = entry.get("auth")
        if isinstance(auth, dict) and "http" in (auth.get("methods") or []):
            pools = cfg.get("outgoing_pools")
            http_pools = pools.get("http") if isinstance(pools, dict) else None
            if not isinstance(http_pools, dict) or "auth" not in http_pools:
                report.error(join(path, "auth.methods"),
                             "method 'http' needs the pool [outgoing_pools.http.auth]")
        if isinstance(auth, dict) and "ldap" in (auth.get("methods") or []) \
                and isinstance(auth.get("ldap"), dict):
            pools = cfg.get("outgoing_pools")
            ldap_pools = pools.get("ldap") if isinstance(pools, dict) else None
            for option in ("pool_tag", "bind_pool_tag"):
                tag = auth["ldap"].get(option, LDAP_DEFAULT_TAGS[option])
                if not isinstance(ldap_pools, dict) or tag not in ldap_pools:
                    report.error(join(join(path, "auth.ldap"), option),
                                 f"method 'ldap' needs the pool [outgoing_pools.ldap.{tag}]")
