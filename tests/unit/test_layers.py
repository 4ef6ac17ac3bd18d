"""DESIGN §1: dependencies point downward. ``suricate/protocol`` is sans-IO: no asyncio, no
ssl, nothing from the layers that do I/O or hold the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).parents[2] / "suricate" / "protocol"
FORBIDDEN = ("asyncio", "ssl", "suricate.core", "suricate.net", "suricate.modules")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(PROTOCOL.glob("*.py")), ids=lambda p: p.name)
def test_protocol_is_sans_io(path: Path) -> None:
    bad = {name for name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
