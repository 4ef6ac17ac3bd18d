"""The cost of instrumentation on the message hot path: the same server, the same load,
without ``[instrumentation]`` (no-op calls) and with the Prometheus handler (and optionally
the log handler at a level that is off).

The server runs pinned to one core, bench/loadgen.py (raw asyncio clients, one-to-one chat
messages between pairs) to the other; runs alternate off/on so drift hits both equally.

    .venv/bin/python bench/instrumentation.py --pairs 50 --inflight 20 --seconds 5 --rounds 3

Prints one line per run and the median messages/s of each configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import c2s_listener, free_port, suricate_config, wait_port  # noqa: E402

PY = sys.executable
LOADGEN = ROOT / "bench" / "loadgen.py"

CONFIGS = {
    "off": "",
    "prometheus": "[instrumentation]\n[instrumentation.prometheus]\n",
    "prometheus+log": "[instrumentation]\n[instrumentation.prometheus]\n"
                      '[instrumentation.log]\nlevel = "debug"\n',
}


def config_text(work: Path, port: int, instrumentation: str) -> str:
    return suricate_config(
        work / "bench.db", [c2s_listener(port, "max_connections = 100000")],
        auth=['password.hash = ["sha256"]', "password.scram_iterations = 4096"],
        modules=("mod_presence", "mod_roster", "mod_disco", "mod_ping"),
        extra="[access]\nmax_user_sessions = [{acl = \"all\", value = 100}]\n\n"
              + instrumentation)


def provision(config: Path, work: Path, users: int) -> None:
    """Accounts u0..u(n-1) with password "pw", written through the server's own code."""
    code = (
        "import asyncio\nfrom pathlib import Path\n"
        "from suricate.config import load_config\nfrom suricate.core.server import Server\n"
        "from suricate.jid import JID\n"
        "async def main():\n"
        f"    s = Server(load_config(Path({str(config)!r})), Path({str(work)!r}), {{}})\n"
        "    await s.storage.open()\n"
        f"    for i in range({users}):\n"
        "        await s.auth.register(JID(f'u{i}', 'localhost', None), 'pw')\n"
        "    await s.storage.close()\n"
        "asyncio.run(main())\n")
    subprocess.run([PY, "-c", code], cwd=ROOT, check=True)


def pin(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if shutil.which("taskset") and os.cpu_count() \
        and os.cpu_count() > 1 else []  # type: ignore[operator]


def one_run(name: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(config_text(work, port, CONFIGS[name]))
    server = subprocess.Popen([*pin(args.server_core), PY, "-m", "suricate", "serve",
                               "--config", str(config)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 20, interval=0.05)
        out = subprocess.run(
            [*pin(args.gen_core), PY, str(LOADGEN), "messages", "--port", str(port),
             "--pairs", str(args.pairs), "--inflight", str(args.inflight),
             "--seconds", str(args.seconds)],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", default="off,prometheus,prometheus+log")
    p.add_argument("--server-core", default="0")
    p.add_argument("--gen-core", default="1")
    args = p.parse_args()
    names = args.configs.split(",")
    with tempfile.TemporaryDirectory(prefix="suricate-bench-") as tmp:
        work = Path(tmp)
        first = work / "provision.toml"
        first.write_text(config_text(work, free_port(), ""))
        provision(first, work, 2 * args.pairs)
        figures: dict[str, list[float]] = {n: [] for n in names}
        for round_ in range(args.rounds):
            for name in names:
                r = one_run(name, args, work)
                figures[name].append(r["msgs_per_s"])
                print(f"round {round_ + 1} {name:>15}: {r['msgs_per_s']:9.0f} msg/s  "
                      f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                      f"gen_cpu {r['gen_cpu']:.2f}", flush=True)
        base = statistics.median(figures[names[0]])
        for name in names:
            med = statistics.median(figures[name])
            print(f"median {name:>15}: {med:9.0f} msg/s ({100 * (med / base - 1):+.1f}% vs "
                  f"{names[0]})")


if __name__ == "__main__":
    main()
