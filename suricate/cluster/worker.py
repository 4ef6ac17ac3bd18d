"""One worker process: a whole ``Server`` and a node of the cluster (``RedisNode``): its
sessions in Redis, stanzas to the other workers' sessions through the same transport as
between machines (``suricate.cluster.redis_sm``).

It tells the supervisor over a pipe when it serves (``("ready", ports, hosts)``) or why it
could not start (``("failed", message)``), then runs until SIGTERM/SIGINT (or the admin API's
server stop) and shuts down like a single server does. Exit status 0 means "asked to stop";
anything else is a crash the supervisor answers by starting the worker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suricate.net.tls import CertKey

if TYPE_CHECKING:
    from suricate.core.module import Module

log = logging.getLogger("suricate.cluster")

def with_own_ports(cfg: dict[str, Any], index: int,
                   registry: Mapping[str, type[Module]]) -> dict[str, Any]:
    """``cfg`` for worker ``index``: a module that listens on a port of its own (its class's
    ``own_port_option``, outside `[[listen]]`, so not shared with SO_REUSEPORT) on that port
    + index, announced so: what one connection starts must end in the same process (the two
    SOCKS5 connections of an XEP-0065 bytestream and the requester's activation). Port 0
    (the system's choice) stays 0."""
    modules = cfg.get("modules") or {}
    moved = {}
    for name, opts in modules.items():
        cls = registry.get(name)
        option = cls.own_port_option if cls is not None else None
        if option is not None and opts.get(option):
            moved[name] = dict(opts, **{option: opts[option] + index})
    return dict(cfg, modules={**modules, **moved}) if moved and index else cfg


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    count: int
    cfg: dict[str, Any]
    base_dir: Path
    sni: dict[str, CertKey]


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """The process entry point (forked by the supervisor)."""
    # The supervisor's handlers came with the fork; until the loop installs ours, a signal
    # acts as on any process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not a reason to die before the loop runs
    # Which worker says what: the index goes into every log line.
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        fmt = formatter._fmt if formatter is not None else None
        if formatter is not None and fmt and "%(message)s" in fmt:
            # The same class: under systemd, the journal's priority prefixes stay.
            handler.setFormatter(type(formatter)(
                fmt.replace("%(message)s", f"w{spec.index} %(message)s")))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(spec, pipe))


async def _serve(spec: WorkerSpec, pipe: Connection) -> None:
    from suricate.admin import HTTP_HANDLERS
    from suricate.cluster.membership import Membership
    from suricate.core.server import Server
    from suricate.modules import MODULES

    server = Server(with_own_ports(spec.cfg, spec.index, MODULES), spec.base_dir, MODULES,
                    sni_certs=spec.sni, http_handlers=HTTP_HANDLERS)
    node = Membership(server)
    try:
        await node.start()
    except Exception as exc:
        pipe.send(("failed", f"Redis (outgoing_pools.redis.default): {exc}"))
        raise SystemExit(1) from None
    try:
        await server.start()
    except OSError as exc:
        pipe.send(("failed", str(exc)))
        await node.stop()
        raise SystemExit(1) from None
    ports = ", ".join(f"{lst.kind}:{lst.port}"
                      for lst in [*server.listeners, *server.http_listeners])
    stop = server.stop_requested or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificates)  # from the supervisor
    # Ready once the signals are handled: the supervisor's SIGTERM right after its serving
    # line (and systemd's READY=1) is a graceful stop, not the default action's death.
    pipe.send(("ready", ports, ", ".join(sorted(server.hosts))))
    await stop.wait()
    await server.stop()
    await node.stop()
