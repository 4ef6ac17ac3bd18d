"""The module API: a module declares what it provides as class data; the loader wires it.

A module is one feature, named like MongooseIM's (``mod_ping``). It declares its XEPs, the
modules it needs, its hooks (hook, method name, priority), its IQ handlers (scope, namespace,
method name) and its disco features; ``start``/``stop`` are for anything else. Options come
from ``[modules.<name>]`` already validated and defaulted by the config spec.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from suricate.core import hooks as H

if TYPE_CHECKING:
    from suricate.core.iq import Scope
    from suricate.core.server import Server

log = logging.getLogger("suricate.modules")


class Module:
    name: ClassVar[str]
    xeps: ClassVar[tuple[str, ...]] = ()
    deps: ClassVar[tuple[str, ...]] = ()
    hooks: ClassVar[tuple[tuple[H.Hook, str, int], ...]] = ()
    iq_handlers: ClassVar[tuple[tuple[Scope, str, str], ...]] = ()
    features: ClassVar[tuple[str, ...]] = ()  # disco#info features of the server
    sm_features: ClassVar[tuple[str, ...]] = ()  # disco#info features of an account

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        self.server = server
        self.opts = opts

    async def start(self) -> None:
        """Anything beyond the declared wiring (timers, caches)."""

    async def stop(self) -> None:
        """Undo ``start``."""

    # -- wiring, done by the loader -------------------------------------------------------
    def wire(self) -> None:
        for hook, method, priority in self.hooks:
            self.server.hooks.add(hook, getattr(self, method), priority)
        for scope, xmlns, method in self.iq_handlers:
            self.server.iq.register(scope, xmlns, getattr(self, method))
        if self.features:
            self.server.hooks.add(H.DISCO_LOCAL_FEATURES, self._add_features, 50)
        if self.sm_features:
            self.server.hooks.add(H.DISCO_SM_FEATURES, self._add_sm_features, 50)

    def unwire(self) -> None:
        for hook, method, _ in self.hooks:
            self.server.hooks.remove(hook, getattr(self, method))
        for scope, xmlns, _ in self.iq_handlers:
            self.server.iq.unregister(scope, xmlns)
        self.server.hooks.remove(H.DISCO_LOCAL_FEATURES, self._add_features)
        self.server.hooks.remove(H.DISCO_SM_FEATURES, self._add_sm_features)

    def _add_features(self, acc: set[str], domain: str) -> set[str]:
        return acc | set(self.features)

    def _add_sm_features(self, acc: set[str], jid: Any) -> set[str]:
        return acc | set(self.sm_features)


def load_order(selected: Mapping[str, Any], registry: Mapping[str, type[Module]]) -> list[str]:
    """Modules in dependency order; a dependency that is not configured is added with its
    defaults (as MongooseIM does), and a cycle is our bug."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RuntimeError(f"module dependency cycle at {name}")
        visiting.add(name)
        for dep in registry[name].deps:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in selected:
        visit(name)
    return order
