"""A small declarative DSL describing the TOML configuration.

One tree of `Spec` objects drives three things at once:
  * validation (every problem is recorded with its TOML path, none is fatal on its own),
  * defaults (the normalized result always has every option of every present section),
  * the generated reference in docs/configuration.md (see `suricate.config.docs`).

A spec never clamps or silently drops a value: anything it does not understand is a `Problem`.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class _Sentinel:
    """A named marker object; distinct from every value a TOML file can hold."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Warning for an option given in the file although it does nothing (`Option.inert`).
INERT_MESSAGE = "accepted for compatibility, has no effect in this version"

#: Option default meaning "the option must be given".
REQUIRED: Any = _Sentinel("REQUIRED")
#: Option default for a nested section: build it from the section's own defaults.
DEFAULTS: Any = _Sentinel("DEFAULTS")
#: Option default meaning "leave the key out of the normalized result" (e.g. disabled modules).
OMIT: Any = _Sentinel("OMIT")
#: Returned by `Spec.normalize` after a problem was recorded; never escapes `parse_config`.
INVALID: Any = _Sentinel("INVALID")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, located by its TOML path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration was refused; `problems` lists every reason found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Context:
    """State shared by one validation run."""

    def __init__(self, base_dir: Path) -> None:
        # Relative file paths in the config are relative to the config file's directory,
        # not to the working directory the server happens to be started from.
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        #: Not refusals: options that were given but do nothing (see `Option.inert`).
        self.warnings: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))


def join(path: str, key: str) -> str:
    """TOML path of `key` inside the table at `path`."""
    return f"{path}.{key}" if path else key


def at(path: str, index: int) -> str:
    """TOML path of element `index` of the array at `path`."""
    return f"{path}[{index}]"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _quote(value: Any) -> str:
    """Render a value the way it would be written in TOML (used in docs and messages)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_quote(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_quote(v)}" for k, v in value.items()) + "}"
    return str(value)


#: A validator looks at an already type-checked value and returns an error message or None.
Validator = Callable[[Any], "str | None"]


class Spec:
    """A value type: checks one TOML value and returns its normalized form."""

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """Short human description of the accepted syntax, for the docs."""
        raise NotImplementedError

    def _wrong_type(self, value: Any, path: str, ctx: Context) -> Any:
        ctx.error(path, f"expected {self.describe()}, got {_type_name(value)}")
        return INVALID


class Bool(Spec):
    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, bool):
            return self._wrong_type(value, path, ctx)
        return value

    def describe(self) -> str:
        return "a boolean"


class Int(Spec):
    def __init__(self, min: int | None = None, max: int | None = None, unit: str = "") -> None:
        self.min, self.max, self.unit = min, max, unit

    def _range_error(self, value: int) -> str | None:
        if self.min is not None and value < self.min:
            return f"expected {self.describe()}, got {value}"
        if self.max is not None and value > self.max:
            return f"expected {self.describe()}, got {value}"
        return None

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        # bool is a subclass of int in Python; `port = true` must not become port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            return self._wrong_type(value, path, ctx)
        message = self._range_error(value)
        if message:
            ctx.error(path, message)
            return INVALID
        return value

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            text = f"an integer from {self.min} to {self.max}"
        elif self.min is not None:
            text = {0: "a non-negative integer", 1: "a positive integer"}.get(
                self.min, f"an integer >= {self.min}"
            )
        elif self.max is not None:
            text = f"an integer <= {self.max}"
        else:
            text = "an integer"
        return f"{text} ({self.unit})" if self.unit else text


class IntOrInfinity(Int):
    """An integer or the string "infinity"; infinity is normalized to None (no limit)."""

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if value == "infinity":
            return None
        if isinstance(value, str):
            ctx.error(path, f'expected {self.describe()}, got "{value}"')
            return INVALID
        return super().normalize(value, path, ctx)

    def describe(self) -> str:
        return f'{super().describe()} or "infinity"'


class Float(Spec):
    def __init__(self, min: float | None = None) -> None:
        self.min = min

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        # TOML integers are acceptable where a float is expected (e.g. `rate = 1`).
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._wrong_type(value, path, ctx)
        if self.min is not None and value < self.min:
            ctx.error(path, f"expected {self.describe()}, got {value}")
            return INVALID
        return float(value)

    def describe(self) -> str:
        return "a number" if self.min is None else f"a number >= {self.min}"


class Str(Spec):
    def __init__(self, nonempty: bool = True, lower: bool = False) -> None:
        self.nonempty, self.lower = nonempty, lower

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return self._wrong_type(value, path, ctx)
        if self.nonempty and not value:
            ctx.error(path, "expected a non-empty string")
            return INVALID
        return value.lower() if self.lower else value

    def describe(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"


class Domain(Str):
    """An XMPP domain name; lowercased because domains compare case-insensitively (RFC 7622 §3.2)."""

    def __init__(self) -> None:
        super().__init__(nonempty=True, lower=True)

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = super().normalize(value, path, ctx)
        if result is INVALID:
            return result
        if any(c in result for c in "@/ \t\r\n") or result.startswith(".") or result.endswith("."):
            ctx.error(path, f'"{value}" is not a valid domain name')
            return INVALID
        return result

    def describe(self) -> str:
        return "a domain name"


class LocalPart(Str):
    """The user part of a JID (RFC 7622 §3.3), compared with prepared JIDs: lowercased, as
    MongooseIM 6.4 nodepreps the ACL conditions, and refused when it holds a character a
    localpart cannot (``user = "alice@example.com"`` would otherwise match nobody)."""

    #: RFC 7622 §3.3.1: excluded from localparts (with the space characters).
    FORBIDDEN = frozenset("\"&'/:<>@ \t\r\n")

    def __init__(self) -> None:
        super().__init__(nonempty=True, lower=True)

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = super().normalize(value, path, ctx)
        if result is INVALID:
            return result
        bad = sorted(self.FORBIDDEN.intersection(result))
        if bad:
            hint = ""
            if "@" in result:
                user, _, domain = result.partition("@")
                hint = f'; write {{user = "{user}", server = "{domain}"}}'
            ctx.error(
                path,
                f'"{value}" is not a valid user part '
                f"({', '.join(map(repr, bad))} not allowed{hint})",
            )
            return INVALID
        return result

    def describe(self) -> str:
        return "a JID user part"


class Regexp(Str):
    """A regular expression; compiled here so a typo stops start-up instead of failing later."""

    def __init__(self) -> None:
        super().__init__(nonempty=False)

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = super().normalize(value, path, ctx)
        if result is INVALID:
            return result
        try:
            re.compile(result)
        except re.error as exc:
            ctx.error(path, f"invalid regular expression: {exc}")
            return INVALID
        return result

    def describe(self) -> str:
        return "a regular expression (Python `re` syntax, searched anywhere in the value)"


class OneOf(Spec):
    """One of a fixed set of values.

    `unavailable` lists values MongooseIM 6.4 accepts but Suricate does not implement yet; they
    get a clearer message than a plain "expected one of". `{value}` in `unavailable_message`
    is replaced by the refused value.
    """

    def __init__(
        self,
        values: Sequence[Any],
        unavailable: Iterable[Any] = (),
        unavailable_message: str = "'{value}' is not available in this version of Suricate",
    ) -> None:
        self.values = list(values)
        self.unavailable = list(unavailable)
        self.unavailable_message = unavailable_message

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        # Compare with type: `true` must not match 1, nor "4" match 4.
        for allowed in self.values:
            if type(allowed) is type(value) and allowed == value:
                return value
        if value in self.unavailable and not isinstance(value, bool):
            ctx.error(path, self.unavailable_message.format(value=value))
            return INVALID
        if not any(type(allowed) is type(value) for allowed in self.values):
            # `last_item_cache = false` where the string "false" is expected, `ip_version =
            # "6"` where 6 is: show the values as TOML writes them, and what was given.
            ctx.error(path, f"expected {self.describe_doc()}, got {_type_name(value)}")
            return INVALID
        ctx.error(path, f"expected {self.describe()}")
        return INVALID

    def describe(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)

    def describe_doc(self) -> str:
        return "one of " + ", ".join(_quote(v) for v in self.values)


class IPAddress(Spec):
    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return self._wrong_type(value, path, ctx)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            ctx.error(path, f'"{value}" is not a valid IP address')
            return INVALID

    def describe(self) -> str:
        return "an IPv4 or IPv6 address"


class IPNetwork(Spec):
    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return self._wrong_type(value, path, ctx)
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            ctx.error(path, f'"{value}" is not a valid IP address or network')
            return INVALID

    def describe(self) -> str:
        return 'an IP address or network ("10.0.0.0/8")'


class FilePath(Spec):
    """A file path, normalized to an absolute string.

    Relative paths are taken relative to the config file's directory. With `must_exist` a
    missing file is a problem at load time, so a typo in a certificate path is reported
    before the first TLS handshake fails.
    """

    def __init__(self, must_exist: bool = True) -> None:
        self.must_exist = must_exist

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return self._wrong_type(value, path, ctx)
        if not value:
            ctx.error(path, "expected a non-empty file path")
            return INVALID
        full = Path(value).expanduser()
        if not full.is_absolute():
            full = ctx.base_dir / full
        normalized = os.path.normpath(full)
        if self.must_exist and not os.path.isfile(normalized):
            missing = "is a directory" if os.path.isdir(normalized) else "does not exist"
            ctx.error(path, f'file "{value}" {missing} (looked for {normalized})')
            return INVALID
        return normalized

    def describe(self) -> str:
        kind = "path of an existing file" if self.must_exist else "file path"
        return f"a {kind} (relative to the config file's directory)"


class AnyScalar(Spec):
    """A string, integer or float (access rule values: "allow", "deny", 10, "fast", ...)."""

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            ctx.error(path, f"expected a string or a number, got {_type_name(value)}")
            return INVALID
        return value

    def describe(self) -> str:
        return "a string or a number"


class ListOf(Spec):
    """A TOML array: a plain list of scalars, or an array of tables (`[[listen.c2s]]`).

    With `item_paths=False` problems in items are reported at the array's own path, which reads
    better for short lists of names (`auth.methods: method 'ldap' is not available ...`).
    """

    def __init__(
        self,
        item: Spec,
        unique: bool = False,
        nonempty: bool = False,
        item_paths: bool = True,
    ) -> None:
        self.item, self.unique, self.nonempty, self.item_paths = item, unique, nonempty, item_paths

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, list):
            return self._wrong_type(value, path, ctx)
        if self.nonempty and not value:
            ctx.error(path, "expected a non-empty array")
            return INVALID
        result: list[Any] = []
        failed = False
        for i, element in enumerate(value):
            item = self.item.normalize(element, at(path, i) if self.item_paths else path, ctx)
            failed = failed or item is INVALID
            result.append(item)
        if failed:
            return INVALID
        if self.unique:
            seen: list[Any] = []
            for item in result:
                if item in seen:
                    ctx.error(path, f"duplicate value {_quote(item)}")
                    return INVALID
                seen.append(item)
        return result

    def describe(self) -> str:
        if isinstance(self.item, Section):
            return "an array of tables"
        return f"an array, each element {self.item.describe()}"


@dataclass
class Option:
    """One key of a section: its type, default, extra validators and documentation.

    `default` is a value, or REQUIRED, DEFAULTS (nested section filled with its defaults) or
    OMIT (key absent from the result). `default_doc` overrides how the default is documented
    when it is computed by a section's `post` hook.

    `inert` marks an option accepted for MongooseIM 6.4 compatibility that has no effect in
    this version: it is validated as usual, and giving it yields a warning (`INERT_MESSAGE`)
    instead of passing silently; the generated docs say so too. `inert_reason` tells the
    operator why nothing is lost (appended to the warning and to the docs).
    """

    type: Spec
    default: Any = REQUIRED
    doc: str = ""
    validators: Sequence[Validator] = ()
    default_doc: str | None = None
    example: str | None = None
    inert: bool = False
    inert_reason: str = ""

    def missing(self, path: str, ctx: Context) -> Any:
        if self.default is REQUIRED:
            what = "section" if isinstance(self.type, Section | MapOf) else "option"
            ctx.error(path, f"missing required {what}")
            return INVALID
        if self.default is DEFAULTS:
            return self.type.normalize({}, path, ctx)
        if self.default is OMIT:
            return OMIT
        return copy.deepcopy(self.default)

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        result = self.type.normalize(value, path, ctx)
        if result is INVALID:
            return result
        for validator in self.validators:
            message = validator(result)
            if message:
                ctx.error(path, message)
                return INVALID
        return result


#: post(normalized, raw, path, ctx): cross-option checks and computed defaults of one section.
#: It runs only when the section itself had no problem, so it can trust every value's type.
PostHook = Callable[[dict[str, Any], Mapping[str, Any], str, Context], None]


@dataclass
class Section(Spec):
    """A TOML table with a fixed set of keys."""

    options: dict[str, Option]
    doc: str = ""
    post: PostHook | None = None
    #: Keys known from MongooseIM 6.4 but not implemented: key -> message.
    unavailable: dict[str, str] = field(default_factory=dict)
    unknown_message: str = "unknown option"

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self._wrong_type(value, path, ctx)
        before = len(ctx.problems)
        for key in value:
            if key in self.options:
                continue
            message = self.unavailable.get(key, self.unknown_message)
            ctx.error(join(path, key), message)
        result: dict[str, Any] = {}
        for name, option in self.options.items():
            sub = join(path, name)
            if name in value:
                item = option.normalize(value[name], sub, ctx)
                # A refused value is reported once, as an error; no warning on top of it.
                if option.inert and item is not INVALID:
                    reason = f": {option.inert_reason}" if option.inert_reason else ""
                    ctx.warn(sub, INERT_MESSAGE + reason)
            else:
                item = option.missing(sub, ctx)
            if item is OMIT:
                continue
            result[name] = item
        # The post hook may rely on every value having its declared type, but it still runs
        # next to unknown-key problems so that one run reports as much as possible.
        if self.post is not None and INVALID not in result.values():
            self.post(result, value, path, ctx)
        return INVALID if len(ctx.problems) > before else result

    def describe(self) -> str:
        return "a table"


@dataclass
class MapOf(Spec):
    """A table whose keys are user-chosen names (`[shaper.NAME]`, `[outgoing_pools.rdbms.TAG]`).

    `defaults` are entries present even when not configured (a configured entry of the same name
    replaces them). `reserved` maps names that cannot be used to the reason why.
    """

    value: Spec
    doc: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)
    key_doc: str = "NAME"

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self._wrong_type(value, path, ctx)
        result: dict[str, Any] = copy.deepcopy(self.defaults)
        failed = False
        for key, item in value.items():
            sub = join(path, key)
            if key in self.reserved:
                ctx.error(sub, self.reserved[key])
                failed = True
                continue
            normalized = self.value.normalize(item, sub, ctx)
            failed = failed or normalized is INVALID
            result[key] = normalized
        return INVALID if failed else result

    def describe(self) -> str:
        return "a table of named entries"


def ip_version_of(address: str) -> int:
    return ipaddress.ip_address(address).version
