"""Generate the state diagrams (Mermaid) of docs/architecture.md from the transition tables:
``python -m suricate.protocol.diagram`` (c2s, s2s incoming and outgoing, component)."""

from __future__ import annotations

from suricate.protocol import component, s2s
from suricate.protocol.c2s import TRANSITIONS
from suricate.protocol.fsm import mermaid


def c2s_mermaid() -> str:
    return mermaid(TRANSITIONS)


if __name__ == "__main__":
    print(f"c2s:\n{c2s_mermaid()}\n")
    print(f"s2s incoming:\n{mermaid(s2s.IN_TRANSITIONS)}\n")
    print(f"s2s outgoing:\n{mermaid(s2s.OUT_TRANSITIONS)}\n")
    print(f"component:\n{mermaid(component.TRANSITIONS)}")
