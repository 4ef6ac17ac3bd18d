"""Generate the c2s state diagram (Mermaid) from ``TRANSITIONS``, for docs/architecture.md:
``python -m suricate.protocol.diagram``."""

from __future__ import annotations

from suricate.protocol.c2s import TRANSITIONS


def c2s_mermaid() -> str:
    lines = ["```mermaid", "stateDiagram-v2"]
    for state, targets in TRANSITIONS.items():
        for target in sorted(targets, key=lambda s: s.value):
            lines.append(f"    {state.value} --> {target.value}")
    lines.append("```")
    return "\n".join(lines)


if __name__ == "__main__":
    print(c2s_mermaid())
