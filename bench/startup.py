"""Start-up of a Suricate tree, phase by phase, seen from a client (loopback only).

    PYTHONPATH=. .venv/bin/python bench/startup.py --config FILE --host 127.0.0.2 --port 5222
    PYTHONPATH=. .venv/bin/python bench/startup.py --embedded   # the embedded default (5222)

Each run spawns ``python -m suricate serve`` (the embedded default in a fresh data folder with
``--embedded``; its certificate is made once, before the runs, as a second start finds it) and
times, from the spawn:

- ``accept``: the c2s port accepts a TCP connection (what ``bench/run.py`` times);
- ``features``: on that connection, the stream header answered with ``<stream:features/>``
  (the c2s engine serving);
- ``tls``: ``<starttls/>``, ``<proceed/>`` and the TLS handshake done (the first STARTTLS).

and the server's CPU at ``accept`` (``/proc/<pid>/task/*/schedstat``: all threads, in ns)
and at ``tls`` (``/proc/<pid>/stat``: with the threads that have ended, in 10 ms ticks). Medians over ``--runs`` runs. ``--tree`` times another checkout with the same probe
(byte-compiled first, as bench/run.py does). The embedded default's ports are fixed: run it in
a network namespace of its own when other servers may be listening (``ip netns exec``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def cpu_ms(pid: int) -> float:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e6


def cpu_ms_all(pid: int) -> float:
    """utime + stime of the whole process, finished threads included (clock ticks: 10 ms
    steps; the schedstat of ``cpu_ms`` loses a thread's time once it has ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def read_until(sock: socket.socket | ssl.SSLSocket, marker: bytes, deadline: float) -> bytes:
    data = b""
    while marker not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed before {marker!r}: {data[-200:]!r}")
        data += chunk
    return data


def one_run(cmd: list[str], cwd: Path, env: dict[str, str], host: str, port: int,
            timeout: float = 30.0) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = t0 + timeout
    try:
        while True:
            sock = socket.socket()
            if sock.connect_ex((host, port)) == 0:
                break
            sock.close()
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing on {host}:{port}")
            time.sleep(0.001)
        r = {"accept": time.monotonic() - t0, "cpu_accept": cpu_ms(proc.pid)}
        with sock:
            sock.sendall(HEADER)
            read_until(sock, b"</stream:features>", deadline)
            r["features"] = time.monotonic() - t0
            sock.sendall(STARTTLS)
            read_until(sock, b"<proceed", deadline)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                r["tls"] = time.monotonic() - t0
                r["cpu_tls"] = cpu_ms_all(proc.pid)
                tls.sendall(HEADER)
                read_until(tls, b"</stream:features>", deadline)
        return r
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="the configuration to start (STARTTLS c2s)")
    p.add_argument("--embedded", action="store_true", help="the embedded default (no --config)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout to start")
    p.add_argument("--cores", help="taskset -c for the server (e.g. 0)")
    args = p.parse_args()
    if args.embedded == bool(args.config):
        p.error("give either --config or --embedded")
    tree = args.tree.resolve()
    python = str(tree / ".venv" / "bin" / "python")
    subprocess.run([python, "-m", "compileall", "-q", "suricate"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=str(tree))
    work = Path(tempfile.mkdtemp(prefix="suricate-startup-"))
    cmd = [python, "-m", "suricate", "serve"]
    if args.config:
        cmd += ["--config", str(args.config.resolve())]
    if args.cores:
        cmd = ["taskset", "-c", args.cores, *cmd]
    try:
        if args.embedded:
            # The first start generates the certificate; the runs time the later ones.
            one_run(cmd, work, env, args.host, args.port)
        runs = [one_run(cmd, work, env, args.host, args.port) for _ in range(args.runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for key, unit in (("accept", "s"), ("features", "s"), ("tls", "s"),
                      ("cpu_accept", "ms"), ("cpu_tls", "ms")):
        values = sorted(r[key] for r in runs)
        fmt = "{:.3f}" if unit == "s" else "{:.1f}"
        print(f"{key:>10}: median {fmt.format(statistics.median(values))} {unit} "
              f"(min {fmt.format(values[0])}, max {fmt.format(values[-1])})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
