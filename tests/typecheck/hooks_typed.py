"""Checked by mypy, never run (``make lint``/``make test``: ``mypy suricate tests/typecheck``).

Each hook declares its handler type, so ``Hooks.add`` refuses a handler of the wrong shape.
The ``type: ignore`` lines must stay errors: this package warns about unused ignores, so a
change that lets a wrong handler through fails the check.
"""

from __future__ import annotations

from typing import Any

from suricate.core import hooks as H
from suricate.jid import JID
from suricate.xml.element import Element


def consumes(stanza: Element | None, c2s: Any) -> Element | None:
    return None


def stops(stanza: Element | None, c2s: Any) -> Element | None | H.Stop:
    return H.Stop(stanza)


async def account_created(acc: None, jid: JID) -> None:
    pass


def features(acc: set[str], domain: str) -> set[str]:
    return acc


def no_arguments(acc: None) -> None:
    pass


#: Declared without a handler type (the form hooks may still be added in): takes any handler.
UNTYPED = H.Hook("untyped", "fold(acc, ...) -> acc")


def check(hooks: H.Hooks) -> None:
    hooks.add(UNTYPED, features)
    hooks.add(UNTYPED, account_created, 60)
    hooks.add(H.USER_SEND_PACKET, consumes)
    hooks.add(H.USER_SEND_PACKET, stops, 10)
    hooks.add(H.REGISTER_USER, account_created)
    hooks.add(H.DISCO_LOCAL_FEATURES, features)
    hooks.remove(H.DISCO_LOCAL_FEATURES, features)
    hooks.add(H.USER_SEND_PACKET, features)  # type: ignore[misc]
    hooks.add(H.REGISTER_USER, no_arguments)  # type: ignore[misc]
    hooks.add(H.DISCO_LOCAL_FEATURES, account_created)  # type: ignore[misc]
    hooks.remove(H.USER_RECEIVE_PACKET, features)  # type: ignore[misc]
