"""The supervisor: ``suricate serve --workers N`` forks N workers and watches them.

- The database is migrated once, here, before the workers start (N processes applying the
  same migration at once would race).
- Every listener is bound with SO_REUSEPORT in every worker: the kernel spreads incoming
  connections over the workers.
- The workers are forked, not spawned: they start from the already loaded code and
  configuration (no re-import, no pickling), and nothing but this thread exists yet.
- Each worker is a node of the Redis design (``sm_backend = "redis"``, required): its sessions
  in Redis, stanzas to another worker's sessions through the same transport as between
  machines. A restarted worker is a new node; its predecessor's sessions are reaped.
- SIGTERM/SIGINT: each worker gets SIGTERM and shuts down as a single server does (streams end
  with system-shutdown, nothing accepted is lost); those still running after
  ``STOP_TIMEOUT`` are killed.
- A worker that exits with status 0 was asked to stop (the admin API's server stop): the
  whole server stops. A worker that dies otherwise (a crash, a signal, the OOM killer) is
  logged and started again: its clients were disconnected, the others' keep going. More than
  ``MAX_RESTARTS`` deaths within ``RESTART_WINDOW`` seconds stop everything (exit status 1):
  a worker that cannot live is not restarted forever.
- Under systemd (``Type=notify``) the supervisor says ``READY=1`` once every worker is
  serving and ``STOPPING=1`` when the stop begins; the workers say nothing (they are not the
  unit's main process). SIGHUP is passed on without ``RELOADING=1``: the supervisor does not
  hear when each worker is done.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate import __version__
from suricate.cluster.worker import WorkerSpec, worker_main
from suricate.net.tls import CertKey

if TYPE_CHECKING:
    from suricate.cli.sd_notify import Notifier

log = logging.getLogger("suricate.cluster")

STOP_TIMEOUT = 30.0
START_TIMEOUT = 60.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


class StartFailed(Exception):
    """A worker could not start (the message is the worker's)."""


def with_reuse_port(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with SO_REUSEPORT on every listener: N workers bind the same ports."""
    listen = {kind: [dict(opts, reuse_port=True) for opts in entries]
              for kind, entries in cfg["listen"].items()}
    return dict(cfg, listen=listen)


async def _prepare_storage(cfg: dict[str, Any], base_dir: Path) -> None:
    from suricate.core.server import Server

    server = Server(cfg, base_dir, {})
    await server.storage.open()  # applies pending migrations
    await server.storage.close()


class _Worker:
    __slots__ = ("spec", "process", "pipe", "ready")

    def __init__(self, spec: WorkerSpec, process: BaseProcess, pipe: Connection) -> None:
        self.spec = spec
        self.process = process
        self.pipe = pipe
        self.ready: tuple[str, str] | None = None


class Supervisor:
    def __init__(self, cfg: dict[str, Any], base_dir: Path, sni: dict[str, CertKey],
                 count: int, notifier: Notifier | None = None) -> None:
        self.cfg = with_reuse_port(cfg)
        self.notifier = notifier
        self.base_dir = base_dir
        self.sni = sni
        self.count = count
        self.workers: list[_Worker] = []
        self.stop_signalled = False
        self.deaths: list[float] = []
        self._ctx = multiprocessing.get_context("fork")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signalled = True

    def _on_hangup(self, signum: int, frame: Any) -> None:
        # SIGHUP: each worker reads its TLS certificates again (Server.reload_certificates).
        for worker in self.workers:
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGHUP)

    def _fork(self, index: int) -> _Worker:
        spec = WorkerSpec(index, self.count, self.cfg, self.base_dir, self.sni)
        ours, theirs = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=worker_main, args=(spec, theirs),
                                    name=f"suricate-w{index}", daemon=False)
        process.start()
        theirs.close()
        return _Worker(spec, process, ours)

    def run(self, t0: float) -> int:
        asyncio.run(_prepare_storage(self.cfg, self.base_dir))
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            self.workers = [self._fork(i) for i in range(self.count)]
            first = self._wait_started()
            if first is None:
                return self._stop_all(0)
            ports, hosts = first
            status = f"serving {hosts} on {ports} with {self.count} workers"
            print(f"suricate {__version__} {status} "
                  f"(started in {time.perf_counter() - t0:.3f} s)", flush=True)
            if self.notifier is not None:
                self.notifier.ready(status)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_started(self) -> tuple[str, str] | None:
        """Every worker's ready message; None if a signal came first; StartFailed."""
        deadline = time.monotonic() + START_TIMEOUT
        while not all(w.ready for w in self.workers):
            if self.stop_signalled:
                return None
            if time.monotonic() > deadline:
                self._stop_all(1, announce=False)
                raise StartFailed("the workers did not start in time")
            for worker in self.workers:
                if worker.ready:
                    continue
                message = self._read(worker)
                if message is not None and message[0] == "failed":
                    self._stop_all(1, announce=False)
                    raise StartFailed(message[1])
                if worker.ready is None and not worker.process.is_alive():
                    self._stop_all(1, announce=False)
                    raise StartFailed(f"worker {worker.spec.index} exited with status "
                                      f"{worker.process.exitcode}")
            wait([w.pipe for w in self.workers if not w.ready]
                 + [w.process.sentinel for w in self.workers], timeout=0.2)
        ready = self.workers[0].ready
        assert ready is not None
        return ready

    def _read(self, worker: _Worker) -> tuple[str, ...] | None:
        try:
            if not worker.pipe.poll():
                return None
            message: tuple[str, ...] = worker.pipe.recv()
        except (EOFError, OSError):
            return None
        if message[0] == "ready":
            worker.ready = (message[1], message[2])
        return message

    def _watch(self) -> int:
        while not self.stop_signalled:
            wait([w.process.sentinel for w in self.workers] + [w.pipe for w in self.workers],
                 timeout=0.5)
            for i, worker in enumerate(self.workers):
                self._read(worker)
                if worker.process.is_alive():
                    continue
                code = worker.process.exitcode
                worker.process.join()
                worker.pipe.close()
                if code == 0:
                    # Asked to stop (admin API): the whole server stops.
                    log.warning("cluster_worker_stopped worker=%d: stopping all", i)
                    return self._stop_all(0)
                now = time.monotonic()
                self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
                if len(self.deaths) > MAX_RESTARTS:
                    log.error("cluster_worker_died worker=%d status=%s: %d deaths in %g s, "
                              "stopping", i, code, len(self.deaths), RESTART_WINDOW)
                    return self._stop_all(1)
                log.error("cluster_worker_died worker=%d status=%s: restarting", i, code)
                self.workers[i] = self._fork(i)
        return self._stop_all(0)

    def _stop_all(self, code: int, announce: bool = True) -> int:
        if announce:
            if self.notifier is not None:
                self.notifier.stopping()
            print("suricate: shutting down", flush=True)
        for worker in self.workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("cluster_worker_kill worker=%d: still running after %g s",
                          worker.spec.index, STOP_TIMEOUT)
                worker.process.kill()
                worker.process.join()
        return code


def serve_workers(cfg: dict[str, Any], base_dir: Path, sni: dict[str, CertKey], count: int,
                  t0: float, notifier: Notifier | None = None) -> int:
    return Supervisor(cfg, base_dir, sni, count, notifier).run(t0)
