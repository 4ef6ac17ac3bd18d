"""The side-by-side benchmark still works: bench/run.py against Suricate alone, tiny sizes.

Not a performance test: nothing here asserts a timing, only that every figure was produced.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_bench_runner_smoke(tmp_path: Path) -> None:
    pytest.importorskip("OpenSSL")
    if subprocess.run(["which", "taskset"], capture_output=True).returncode != 0:
        pytest.skip("taskset not available")
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "suricate", "--smoke",
           "--workdir", str(tmp_path / "work"), "--port", str(free_port("127.0.0.2")),
           "--server-cores", "0", "--gen-cores", "0-1", "--json", str(out),
           "--only", "startup,logins,messages,rss,roster,muc"]  # websocket: the test below
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["suricate"]
    assert results["startup_s"] > 0
    assert results["logins_per_s"] > 0
    assert results["roster_items"] == 5
    for key in ("msg_5x1_plain", "msg_4x2_plain", "msg_5x1_tls", "msg_4x2_tls"):
        assert results[key]["msgs_per_s"] > 0, key
        assert results[key]["p50_ms"] > 0, key
    for key in ("rss_plain_kib", "rss_tls_kib"):  # a per-connection delta: may be noise-small
        assert isinstance(results[key], float) and math.isfinite(results[key]), key
    assert results["muc_delivered_per_s"] > 0  # bench/muc.py through the runner
    assert "| SCRAM-SHA-256 logins/s over STARTTLS |" in proc.stdout


@pytest.mark.timeout(60)
def test_websocket_figures_smoke(tmp_path: Path) -> None:
    """``--only websocket``: bench/loadgen.py --ws (RFC 6455 upgrade, RFC 7395 framing, SCRAM)
    against Suricate's mod_websockets over ws:// and wss://, and RSS per idle ws connection."""
    pytest.importorskip("OpenSSL")
    if subprocess.run(["which", "taskset"], capture_output=True).returncode != 0:
        pytest.skip("taskset not available")
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "suricate", "--smoke",
           "--only", "websocket", "--workdir", str(tmp_path / "work"),
           "--port", str(free_port("127.0.0.2")), "--server-cores", "0", "--gen-cores", "0-1",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["suricate"]
    for key in ("ws_4x2_plain", "ws_4x2_tls"):
        assert results[key]["msgs_per_s"] > 0, key
        assert all(run["lost_connections"] == 0 for run in results[key]["runs"]), key
    assert isinstance(results["rss_ws_kib"], float) and math.isfinite(results["rss_ws_kib"])
    assert "| WebSocket: messages/s, 4x2 pairs x in flight, wss:// |" in proc.stdout


@pytest.mark.timeout(60)
def test_bosh_figures_smoke(tmp_path: Path) -> None:
    """``--only bosh``: bench/loadgen.py --bosh (session creation, SCRAM, restart, bind; one
    request held and one to send on) against Suricate's mod_bosh, and RSS per idle session."""
    if subprocess.run(["which", "taskset"], capture_output=True).returncode != 0:
        pytest.skip("taskset not available")
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "suricate", "--smoke",
           "--only", "bosh", "--workdir", str(tmp_path / "work"),
           "--port", str(free_port("127.0.0.2")), "--server-cores", "0", "--gen-cores", "0-1",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["suricate"]
    runs = results["bosh_2x2"]["runs"]
    assert results["bosh_2x2"]["msgs_per_s"] > 0
    assert all(run["lost_connections"] == 0 and run["bosh_requests_per_msg"] > 0 for run in runs)
    assert isinstance(results["rss_bosh_kib"], float) and math.isfinite(results["rss_bosh_kib"])
    assert "| BOSH: messages/s, 2x2 pairs x in flight |" in proc.stdout


@pytest.mark.timeout(60)
def test_realistic_login_hold_smoke(tmp_path: Path) -> None:
    """``--only rss_real``: the embedded default's modules, connections that log in as
    Conversations does (bench/loadgen.py realistic_login: every step must be answered, the
    caps query too, or the generator fails)."""
    pytest.importorskip("OpenSSL")
    if subprocess.run(["which", "taskset"], capture_output=True).returncode != 0:
        pytest.skip("taskset not available")
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "suricate_default",
           "--smoke", "--only", "rss_real", "--workdir", str(tmp_path / "work"),
           "--port", str(free_port("127.0.0.10")), "--server-cores", "0",
           "--gen-cores", "0-1", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stderr[-3000:]
    value = json.loads(out.read_text())["suricate_default"]["rss_real_kib"]
    assert isinstance(value, float) and math.isfinite(value)


def test_login_cpu_smoke() -> None:
    """bench/login_cpu.py (the c2s negotiation's CPU per login, in process) runs its logins."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "login_cpu.py"), "--logins", "20",
                          "--rounds", "1"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "server CPU per login by phase" in out.stdout and "bind" in out.stdout
