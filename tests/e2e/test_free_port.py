"""The harness's ``free_port`` across processes: two test processes (the two xdist workers,
or another session on the machine) are never handed the same port while the first may not
have bound it yet (a server of each then fails with "address already in use")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRAW = """
import json, sys
from pathlib import Path
import tests.e2e.harness as harness
harness._LEDGER = Path(sys.argv[1])
harness._below_ephemeral = lambda: range(int(sys.argv[2]), int(sys.argv[2]) + 400)
print(json.dumps([harness.free_port() for _ in range(100)]))
"""


def _draws(ledger: Path, low: int) -> set[int]:
    out = subprocess.run([sys.executable, "-c", DRAW, str(ledger), str(low)],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2], check=True).stdout
    return set(json.loads(out))


def test_two_processes_never_draw_the_same_port(tmp_path: Path) -> None:
    # 100 draws each from the same 400 ports, none bound: drawn independently, ~25 in
    # common; the ledger hands each port to one process only.
    ledger = tmp_path / "ports"
    first, second = _draws(ledger, 21000), _draws(ledger, 21000)
    assert len(first) == len(second) == 100
    assert not first & second
