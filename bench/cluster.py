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

With ``--rates R1,R2,...`` (open loop, ``loadgen.py messages --rate``): the CPU per message at
equal load per node instead of at whatever rate a closed loop reaches. For each R, in turn:
one node with ``--pairs`` pairs at R messages/s; two nodes with 2 x pairs at 2R, half of the
messages crossing; the same two nodes with ``--same-node`` at 2R (nothing crosses). Each node
then holds the same clients (see ``rate_round``) and handles about R messages/s in every
run, so 2 x (cross - same), ``per_crossing_us``, is what crossing costs per crossing message
at that load (CPU per message: the nodes' CPU summed over the messages delivered). The
nodes' user and system CPU are reported separately, and ``kept: false`` when the rate was
not delivered (the generator or the nodes fell behind). docs/cluster.md, "2026-12-05".

    python bench/cluster.py --rates 5000,10000,15000 --pairs 100 --seconds 4 --repeat 2
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


def run_rate(ports: list[int], a: argparse.Namespace, pids: list[int], pairs: int, rate: float,
             same_node: bool) -> dict[str, Any]:
    """One open-loop run (``loadgen.py messages --rate``) and its figures per message."""
    cmd = ["taskset", "-c", a.gen_cores, PY, str(LOADGEN), "messages", "--port", str(ports[0]),
           "--pairs", str(pairs), "--rate", str(rate), "--seconds", str(a.seconds),
           "--settle", "1", "--warmup", "1.5"]
    for pid in pids:
        cmd += ["--server-pid", str(pid)]
    if len(ports) > 1:
        cmd += ["--port2", str(ports[1])]
        if same_node:
            cmd.append("--same-node")
    if not a.py_spy:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        stdout = out.stdout
    else:
        stdout = _run_profiled(cmd, a, pids[0],
                               f"{'one' if len(pids) == 1 else 'same' if same_node else 'cross'}"
                               f"-{int(rate)}")
    r: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    # CPU per message: the nodes' summed CPU over the messages delivered (with two nodes
    # also the mean over the nodes of each node's CPU over the messages it handles, half)
    return {"rate": rate, "msgs_per_s": round(r["msgs_per_s"]), "kept": r["kept"],
            "crossed": round(r["crossed_fraction"], 3),
            "us_per_msg": round(r.get("server_cpu_us_per_msg", 0.0), 2),
            "user_us": round(sum(r.get("server_user_us_per_msg_each", [0.0])), 2),
            "sys_us": round(sum(r.get("server_sys_us_per_msg_each", [0.0])), 2),
            "cores_each": [round(c, 2) for c in r.get("server_cores_each", [])],
            "sleeps_per_msg": round(sum(r.get("server_sleeps_per_msg_each", [0.0])), 3),
            "p50_ms": round(r["p50_ms"], 2), "p99_ms": round(r["p99_ms"], 2),
            "gen_cpu": round(r["gen_cpu"], 2), "tick_p99_ms": round(r["tick_p99_ms"], 2),
            "backlog": [r["backlog_start"], r["backlog_end"]]}


def _run_profiled(cmd: list[str], a: argparse.Namespace, pid: int, name: str) -> str:
    """The generator's run with ``py-spy record`` on the (first) node over the measured
    window only (the generator says on stderr when it starts): raw (collapsed) stacks in
    ``<py_spy>/<name>.txt``. The CPU figures of such a run include py-spy's pauses."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    spy = None
    for line in proc.stderr:
        if line.strip() == "measuring":
            spy = subprocess.Popen(
                [str(Path(PY).parent / "py-spy"), "record", "-r", "250", "-f", "raw",
                 "--nonblocking", "-d", str(max(1, int(a.seconds))), "-p", str(pid),
                 "-o", f"{a.py_spy}/{name}.txt"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            break
    stdout, stderr = proc.communicate(timeout=600)
    if spy is not None:
        spy.wait(60)
    if proc.returncode != 0:
        raise RuntimeError(stderr[-2000:])
    return stdout


def rate_round(a: argparse.Namespace, one: Node, nodes: list[Node],
               rates: list[float]) -> list[dict[str, Any]]:
    """One round: the single node and the cluster both running (the idle one costs nothing
    measurable), then for each rate R: one node at R, two nodes crossing at 2R, two nodes
    same-node at 2R. One node has ``pairs`` pairs (pairs senders, 2 x pairs receivers); the
    cluster 2 x pairs, so each node holds the same clients at the same rates in all three."""
    out = []
    one.start()
    for node in nodes:
        node.start()
    try:
        time.sleep(1.0)  # both nodes joined and see each other
        for rate in rates:
            row: dict[str, Any] = {"rate_per_node": rate}
            row["one"] = run_rate([one.port, one.port], a, [one.pid], a.pairs, rate, False)
            time.sleep(0.5)
            ports, pids = [n.port for n in nodes], [n.pid for n in nodes]
            row["cross"] = run_rate(ports, a, pids, 2 * a.pairs, 2 * rate, False)
            time.sleep(0.5)
            row["same"] = run_rate(ports, a, pids, 2 * a.pairs, 2 * rate, True)
            time.sleep(0.5)
            # half of the messages cross: a crossing message costs twice the difference more
            row["per_crossing_us"] = round(2 * (row["cross"]["us_per_msg"]
                                                - row["same"]["us_per_msg"]), 2)
            # the projection at this load: 2 x one node's CPU per message over the two
            # nodes' summed (what two saturated cores give against one, if the cost per
            # message stayed as at this load)
            row["cpu_ratio"] = round(2 * row["one"]["us_per_msg"]
                                     / row["cross"]["us_per_msg"], 2)
            print(json.dumps(row), flush=True)
            out.append(row)
    finally:
        for spec in (one, *nodes):
            spec.stop()
    return out


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
    p.add_argument("--rates", default="",
                   help="open loop: comma-separated messages/s per node (one node at R, two "
                        "nodes at 2R crossing and --same-node); see the module's docstring")
    p.add_argument("--py-spy", default="",
                   help="with --rates: a directory; py-spy (in the venv) records the first "
                        "node of each run over its measured window, raw, at 250 Hz")
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
        if a.rates:
            one.provision(account_names(6 * a.pairs, 0))  # 2 x pairs, 2 receivers each
            rates = [float(r) for r in a.rates.split(",")]
            rows = [row for _ in range(a.repeat) for row in rate_round(a, one, nodes, rates)]
            print(json.dumps(rate_summary(rows)), flush=True)
            return 0
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


def rate_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rate, the medians over the rounds: CPU us per message each node handles."""
    out: dict[str, Any] = {}
    for rate in sorted({r["rate_per_node"] for r in rows}):
        these = [r for r in rows if r["rate_per_node"] == rate]
        med = {k: round(statistics.median(r[k]["us_per_msg"] for r in these), 2)
               for k in ("one", "cross", "same")}
        out[str(int(rate))] = {
            **{f"{k}_us": v for k, v in med.items()},
            "per_crossing_us": round(2 * (med["cross"] - med["same"]), 2),
            "cpu_ratio": round(2 * med["one"] / med["cross"], 2),
            "all_kept": all(r[k]["kept"] for r in these for k in ("one", "cross", "same"))}
    return out


if __name__ == "__main__":
    sys.exit(main())
