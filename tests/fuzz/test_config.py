"""The configuration loader under arbitrary documents: a valid configuration or a ConfigError
naming the TOML path, never another exception (a typo must stop start-up with a message, not a
trace)."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from suricate.config import parse_config
from suricate.config.spec import ConfigError

BASE: dict[str, Any] = {
    "general": {"hosts": ["localhost", "example.com"], "default_server_domain": "localhost",
                "loglevel": "info"},
    "listen": {"c2s": [{"port": 5222, "shaper": "normal", "max_stanza_size": 65536,
                        "state_timeout": 5000, "max_connections": 100, "backlog": 50,
                        "proxy_protocol": False, "access": "c2s"}]},
    "auth": {"methods": ["rdbms"], "password": {"format": "scram", "scram_iterations": 4096}},
    "shaper": {"normal": {"max_rate": 1000}, "fast": {"max_rate": 50000}},
    "acl": {"admin": [{"user": "alice", "server": "localhost"}]},
    "access": {"c2s": [{"acl": "admin", "value": "allow"}, {"acl": "all", "value": "allow"}],
               "max_user_sessions": [{"acl": "all", "value": 10}]},
    "modules": {"mod_ping": {"send_pings": True, "ping_interval": 60},
                "mod_register": {"ip_access": [{"address": "127.0.0.0/8", "policy": "allow"}]},
                "mod_offline": {}},
}

_KEYS = st.one_of(st.sampled_from(["port", "hosts", "shaper", "max_rate", "acl", "value",
                                   "tls", "mode", "certfile", "modules", "c2s", "s2s",
                                   "access", "methods", "ip_access", "address", "policy",
                                   "max_stanza_size", "mod_roster", "none", "all", "user"]),
                  st.text(min_size=1, max_size=8))
_SCALARS = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.booleans(), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["infinity", "none", "all", "normal", "", "::1",
                                           "0.0.0.0", "starttls", "peer", "c2s"]),
    st.dates())
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value).replace("inf", "inf")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}"
                           for k, v in value.items()) + "}"


def _toml_string(text: str) -> str:
    # A TOML basic string: JSON escaping, except that TOML has no surrogate escapes.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml(doc: dict[str, Any]) -> str:
    return "\n".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in doc.items()) + "\n"


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(_VALUES)
            elif action == "delete" and isinstance(node, dict):
                del node[key]
            elif isinstance(node, dict):
                node[draw(_KEYS)] = draw(_VALUES)
            else:
                node.append(draw(_VALUES))
            break
    return doc


def _load(text: str, tmp: Path) -> None:
    try:
        cfg = parse_config(text, tmp)
    except ConfigError as exc:
        assert str(exc)
        for problem in exc.problems:
            assert problem.message
    else:
        assert isinstance(cfg, dict) and "listen" in cfg


def test_the_base_document_is_valid(tmp_path: Path) -> None:
    cfg = parse_config(_toml(BASE), tmp_path)  # raises ConfigError if not
    assert cfg["listen"]


@given(mutated())
def test_a_mutated_configuration_is_accepted_or_refused_with_paths(doc: dict[str, Any]) -> None:
    _load(_toml(doc), Path("/nonexistent"))


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_cleanly(text: str) -> None:
    _load(text, Path("/nonexistent"))
