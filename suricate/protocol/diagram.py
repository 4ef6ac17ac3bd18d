"""Generate the c2s state diagram (Mermaid) from ``TRANSITIONS``, for docs/architecture.md:
``python -m suricate.protocol.diagram`` (the s2s and component ones: ``suricate.protocol.fsm``)."""

from __future__ import annotations

from suricate.protocol.c2s import TRANSITIONS
from suricate.protocol.fsm import mermaid


def c2s_mermaid() -> str:
    return mermaid(TRANSITIONS)


if __name__ == "__main__":
    print(c2s_mermaid())
