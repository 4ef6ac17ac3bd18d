"""Two nodes against one: messages/s with the cluster (``sm_backend = "redis"``).

- **one**: one Suricate node (the default, embedded session table), pinned to core A;
- **two**: two nodes of one cluster (a private ``redis-server``, one shared SQLite file), node 1
  pinned to core A and node 2 to core B; exactly half of the messages cross nodes
  (``loadgen.py messages --port2``: each receiver is logged in on both nodes and its sender
  addresses the two resources in turn), each node holding as many senders as receivers.

The same pairs, in-flight window and duration for both. Two figures (the goal: >= 1.7):

- ``ratio``: two nodes' messages/s over one node's;
- ``cpu_ratio``: the CPU-bound projection, 2 x (one node's CPU us per message) / (the two
  nodes' CPU us per message, summed), CPU counted over the measured window only: what two
  saturated cores would give against one. On a shared machine, where the nodes wait for a
  core, it is the steadier of the two.

The generator and Redis run on the cores given by ``--gen-cores`` (by default every core: on
a 2-core machine they share the nodes' cores, which the report's ``gen_cpu`` shows; Redis's
CPU is not counted in the nodes').

    python bench/cluster.py [--pairs 200 --inflight 10 --seconds 10 --cores 0,1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, free_port, wait_port  # noqa: E402
from bench.run import LOADGEN, PY, Suricate, account_names  # noqa: E402
from suricate.net.certs import ensure_self_signed  # noqa: E402


class Node(Suricate):
    """A Suricate node of the cluster: its own config file, the shared database."""

    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.toml"

    def write_config(self, cert: Path, key: Path) -> None:
        super().write_config(cert, key)
        redis_port = self.extra.get("redis_port")
        if redis_port:
            path = self.config_path()
            path.write_text(path.read_text().replace(
                'loglevel = "error"', 'loglevel = "error"\nsm_backend = "redis"',
            ) + f"\n[outgoing_pools.redis.default.connection]\nport = {redis_port}\n")

    def logfile(self) -> Any:
        return open(self.workdir / f"{self.name}.out", "ab")  # noqa: SIM115

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        profile = self.extra.get("profile")
        if profile:
            # cProfile writes its statistics when the node returns from a clean stop (SIGTERM)
            cmd = [cmd[0], "-m", "cProfile", "-o", f"{profile}/{self.name}.prof", *cmd[1:]]
        return cmd, env


def start_redis(workdir: Path, cores: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", cores, "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    wait_port(port, 10)
    return proc, port


def run_messages(ports: list[int], a: argparse.Namespace,
                 pids: list[int]) -> dict[str, Any]:
    """The generator's result, plus the nodes' CPU seconds during the whole run (logins,
    warm-up and measured window: ``server_cpu_s``) and the cores they used."""
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    t0 = time.monotonic()
    result = _run_messages(ports, a, pids)
    result["server_cpu_s"] = sum(cpu_seconds(pid) for pid in pids) - cpu0
    result["server_cores"] = result["server_cpu_s"] / (time.monotonic() - t0)
    return result


def _run_messages(ports: list[int], a: argparse.Namespace,
                  pids: list[int]) -> dict[str, Any]:
    cmd = ["taskset", "-c", a.gen_cores, PY, str(LOADGEN), "messages", "--port", str(ports[0]),
           "--pairs", str(a.pairs), "--inflight", str(a.inflight), "--seconds", str(a.seconds),
           "--settle", "1"]
    for pid in pids:
        cmd += ["--server-pid", str(pid)]
    if len(ports) > 1:
        cmd += ["--port2", str(ports[1])]
        if a.same_node:
            cmd.append("--same-node")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--inflight", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cores", default="0,1", help="the two nodes' cores (the single node: first)")
    p.add_argument("--gen-cores", default=",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
                   help="cores of the load generator and Redis")
    p.add_argument("--workdir", default="",
                   help="where the nodes' files go (default: a new temporary directory)")
    p.add_argument("--profile", default="",
                   help="a directory: the two nodes run under cProfile and write "
                        "node1.prof / node2.prof there (the figures are then not comparable)")
    p.add_argument("--same-node", action="store_true",
                   help="two nodes, but each receiver on its sender's node: nothing crosses")
    a = p.parse_args()
    core_a, core_b = a.cores.split(",")
    if a.workdir:
        workdir = Path(a.workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="suricate-cluster-bench-"))
    certkey = ensure_self_signed(workdir / "certs", ["localhost"])[0]
    cert, key = Path(certkey.certfile), Path(certkey.keyfile)
    redis, redis_port = start_redis(workdir, a.gen_cores)
    one = Node("one", "127.0.0.1", free_port(), workdir, core_a, extra={"profile": a.profile})
    nodes = [Node(f"node{i + 1}", "127.0.0.1", free_port(), workdir, core,
                  extra={"redis_port": redis_port, "profile": a.profile}) for i, core in enumerate((core_a, core_b))]
    results: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    try:
        for spec in (one, *nodes):
            spec.write_config(cert, key)
        one.provision(account_names(3 * a.pairs, 0))  # a second receiver per pair
        for _ in range(a.repeat):
            one.start()
            try:
                # The same clients as the two nodes get (two receivers per pair unless
                # --same-node): each receiver's share of the messages, so the writes per
                # connection, match.
                ports = [one.port] if a.same_node else [one.port, one.port]
                results["one"].append(run_messages(ports, a, [one.pid]))
            finally:
                one.stop()
            for node in nodes:
                node.start()
            try:
                time.sleep(1.0)  # both nodes joined and see each other
                results["two"].append(run_messages([n.port for n in nodes], a,
                                                   [n.pid for n in nodes]))
            finally:
                for node in nodes:
                    node.stop()
            print(json.dumps({k: v[-1] for k, v in results.items()}), flush=True)
    finally:
        redis.send_signal(signal.SIGTERM)
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    one_rate = statistics.median(r["msgs_per_s"] for r in results["one"])
    two_rate = statistics.median(r["msgs_per_s"] for r in results["two"])
    one_us = statistics.median(r["server_cpu_us_per_msg"] for r in results["one"])
    two_us = statistics.median(r["server_cpu_us_per_msg"] for r in results["two"])
    print(json.dumps({"one_node_msgs_per_s": round(one_rate),
                      "two_nodes_msgs_per_s": round(two_rate),
                      "ratio": round(two_rate / one_rate, 2),
                      "ratios": [round(t["msgs_per_s"] / o["msgs_per_s"], 2)
                                 for o, t in zip(results["one"], results["two"], strict=True)],
                      "one_node_cpu_us_per_msg": round(one_us, 1),
                      "two_nodes_cpu_us_per_msg": round(two_us, 1),
                      "cpu_ratio": round(2 * one_us / two_us, 2),
                      "cpu_ratios": [round(2 * o["server_cpu_us_per_msg"]
                                           / t["server_cpu_us_per_msg"], 2)
                                     for o, t in zip(results["one"], results["two"],
                                                     strict=True)],
                      # each node's CPU per message of the cluster (node1, node2)
                      "per_node_cpu_us_per_msg": [round(statistics.median(
                          r["server_cpu_us_per_msg_each"][i] for r in results["two"]), 1)
                          for i in range(2)],
                      "crossed_fraction": round(statistics.median(
                          r["crossed_fraction"] for r in results["two"]), 3),
                      "two_nodes_p99_ms": statistics.median(r["p99_ms"] for r in results["two"]),
                      "gen_cpu_max": max(r["gen_cpu"] for r in results["two"]),
                      "one_node_server_cores": round(statistics.median(
                          r["server_cores"] for r in results["one"]), 2),
                      "two_nodes_server_cores": round(statistics.median(
                          r["server_cores"] for r in results["two"]), 2),
                      "pairs": a.pairs, "inflight": a.inflight, "seconds": a.seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
