"""SessionSlot: a module's per-session state in ``module_state`` (DESIGN §7)."""

from __future__ import annotations

import types

import pytest

from suricate.core.module import SessionSlot


def test_get_setdefault_set_pop() -> None:
    session = types.SimpleNamespace(module_state={})
    directed: SessionSlot[set[str]] = SessionSlot("mod_example.directed", set)
    assert directed.get(session) is None
    directed.setdefault(session).add("bob@localhost")
    assert directed.setdefault(session) == {"bob@localhost"}  # created once
    assert session.module_state == {"mod_example.directed": {"bob@localhost"}}
    directed.set(session, {"carol@localhost"})
    assert directed.pop(session) == {"carol@localhost"}
    assert directed.pop(session) is None
    assert session.module_state == {}


def test_setdefault_without_factory_is_our_bug() -> None:
    flag: SessionSlot[bool] = SessionSlot("mod_example")
    with pytest.raises(TypeError):
        flag.setdefault(types.SimpleNamespace(module_state={}))
