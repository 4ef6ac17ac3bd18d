"""docs/modules.md, the module API for operators, names every hook a module can use."""

from __future__ import annotations

from pathlib import Path

from suricate.core import hooks as H

DOC = Path(__file__).resolve().parents[2] / "docs" / "modules.md"


def test_every_hook_is_in_the_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    declared = {const: hook.name for const, hook in vars(H).items() if isinstance(hook, H.Hook)}
    assert declared
    missing = [const for const, name in declared.items()
               if f"| `{const}` | `{name}` |" not in text]
    assert not missing, f"add these hooks to the table of docs/modules.md: {missing}"
