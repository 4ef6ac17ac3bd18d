"""What a command is for mod_adhoc (XEP-0050): its node and name, where it lives, who may run
it, and a step function computing each stage; the stage it returns (``Reply``) and the state one
execution keeps (``CommandSession``). Other modules build ``Command``s from these."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from suricate.jid import JID
from suricate.xml.element import Element

COMMANDS = "http://jabber.org/protocol/commands"
ACTIONS = ("execute", "next", "prev", "complete", "cancel")

#: Where a command lives: on the served domain (``to='localhost'``) or on an account's bare JID.
Target = Literal["local", "sm"]


@dataclass(slots=True)
class Reply:
    """One stage of a command (XEP-0050 §3.4): its status, the payload (a data form, notes)
    and, while executing, the actions the requester may take next."""

    status: Literal["executing", "completed", "canceled"]
    form: Element | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    actions: tuple[str, ...] = ()  # among "prev", "next", "complete"
    default: str | None = None  # the action meant by "execute" (§3.4, <actions execute=.../>)


@dataclass(slots=True)
class CommandSession:
    """What a command keeps between stages of one execution (XEP-0050 §3.3)."""

    id: str
    node: str
    requester: JID
    target: JID  # the JID the command was sent to (domain or bare account)
    stage: int = 0
    data: dict[str, Any] = field(default_factory=dict)  # the command's own state
    last: Reply | None = None
    touched: float = field(default_factory=time.monotonic)


#: A command's step: (session, action, submitted values or None) -> the next stage.
Step = Callable[[CommandSession, str, "dict[str, list[str]] | None"], Awaitable[Reply]]
#: Who may see and run a command: (requester, target) -> bool.
Allowed = Callable[[JID, JID], bool]


@dataclass(frozen=True, slots=True)
class Command:
    """A command at ``node``: shown as ``name`` in the command list of ``target`` JIDs to
    requesters ``allowed`` lets through; ``step`` computes each stage."""

    node: str
    name: str
    target: Target
    step: Step
    allowed: Allowed


def note(kind: str, text: str) -> Reply:
    """A finished command telling the requester one thing (§3.4.2 notes: info/warn/error)."""
    return Reply("completed", notes=[(kind, text)])


