"""bench/cluster.py --rates still works (tiny sizes): not a performance test, nothing here
asserts a timing, only that every figure was produced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_cluster_open_loop_smoke(tmp_path: Path) -> None:
    """bench/cluster.py --rates (loadgen.py messages --rate): one node at R, two nodes at 2R
    crossing and same-node, each delivering the rate, with the CPU split user/system."""
    for tool in ("taskset", "redis-server"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.skip(f"{tool} not available")
    cmd = [sys.executable, str(ROOT / "bench" / "cluster.py"), "--rates", "200", "--pairs", "3",
           "--seconds", "1", "--repeat", "1", "--workdir", str(tmp_path / "work")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=85)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row, summary = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert row["one"]["rate"] == 200 and row["cross"]["rate"] == row["same"]["rate"] == 400
    assert abs(row["cross"]["crossed"] - 0.5) < 0.05 and row["same"]["crossed"] == 0.0
    for run in ("one", "cross", "same"):
        assert row[run]["msgs_per_s"] > 0, run
        assert row[run]["user_us"] > 0 and row[run]["sys_us"] >= 0, run
        assert abs(row[run]["us_per_msg"] - row[run]["user_us"] - row[run]["sys_us"]) < 0.1
    assert set(summary["200"]) >= {"one_us", "cross_us", "same_us", "per_crossing_us"}
