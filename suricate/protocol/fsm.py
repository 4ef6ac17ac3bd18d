"""A state machine whose transitions are data: any move not in the table raises, so a bug shows
at the faulty step, and a diagram can be generated from the table (as for c2s)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

State = TypeVar("State", bound=enum.Enum)


class InvalidTransition(RuntimeError):
    """A move the table does not list: our bug, caught at the faulty step."""


class StateMachine(Generic[State]):
    __slots__ = ("state", "_table")

    def __init__(self, table: Mapping[State, frozenset[State]], initial: State) -> None:
        self._table = table
        self.state = initial

    def goto(self, new: State) -> None:
        if new not in self._table[self.state]:
            raise InvalidTransition(f"{self.state.value} -> {new.value}")
        self.state = new


def mermaid(table: Mapping[State, frozenset[State]]) -> str:
    lines = ["```mermaid", "stateDiagram-v2"]
    for state, targets in table.items():
        for target in sorted(targets, key=lambda s: s.value):
            lines.append(f"    {state.value} --> {target.value}")
    lines.append("```")
    return "\n".join(lines)

