"""A TCP relay that puts a database a few milliseconds away (tests only).

Production databases run on another host, 1 to 5 ms from the server; the tests' PostgreSQL is
on loopback (about 50 µs). Races between a database read and what a client sends at the same
time (docs/delivery.md, "A database a few milliseconds away") only show at the first
distance. The relay forwards to the real server and holds every chunk, in each direction, for
``delay`` seconds after it arrived: order is kept, throughput is not limited (a chunk that
arrives while an earlier one waits is not delayed further), so a query costs about
``2 * delay`` more, as over a network link.

In a test: ``async with latency_relay(0.002) as port:`` then point the pool's
``[outgoing_pools.rdbms.default.connection] port`` at it, or ``postgresql_behind_relay`` for
a database of its own behind it. For whole suites: ``SURICATE_TEST_SLOW_PG_MS=2 pytest ...``
puts every ``running_server`` (tests/e2e/harness.py) that has no pool of its own on such a
database (tests that restart a server expecting its SQLite file back then fail). Standalone:
``python -m tests.latency_relay --listen 25432 --delay-ms 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from tests.storage.conftest import PG_HOST, PG_PORT, pg_admin


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, chunk = await held.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    releasing = asyncio.create_task(release())
    try:
        while chunk := await reader.read(65536):
            held.put_nowait((loop.time() + delay, chunk))
    except OSError:
        pass
    finally:
        held.put_nowait((loop.time() + delay, b""))
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await releasing


class LatencyRelay:
    """Listens on a loopback port; each connection gets its own connection upstream."""

    def __init__(self, delay: float, upstream: tuple[str, int] = (PG_HOST, PG_PORT)) -> None:
        self.delay = delay
        self.upstream = upstream
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pump(reader, up_writer, self.delay),
                                 _pump(up_reader, writer, self.delay))
        except asyncio.CancelledError:
            pass  # stop(): the streams' callback would log a cancelled handler as an error
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def postgresql_behind_relay(delay: float) -> AsyncIterator[str]:
    """A new PostgreSQL database on 127.0.0.1:5432, dropped afterwards, reached through a
    relay adding ``delay`` seconds each way; yields the server's
    ``[outgoing_pools.rdbms.default]`` TOML. Raises what asyncpg raises when PostgreSQL is
    not there (the caller skips or fails)."""
    name = f"suricate_slow_{secrets.token_hex(5)}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        async with latency_relay(delay) as port:
            yield ("[outgoing_pools.rdbms.default.connection]\ndriver = \"pgsql\"\n"
                   f'host = "127.0.0.1"\nport = {port}\ndatabase = "{name}"\n'
                   'username = "postgres"\npassword = ""\n')
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def latency_relay(delay: float,
                        upstream: tuple[str, int] = (PG_HOST, PG_PORT)) -> AsyncIterator[int]:
    """A relay to ``upstream`` adding ``delay`` seconds each way; yields its port."""
    relay = LatencyRelay(delay, upstream)
    await relay.start()
    try:
        yield relay.port
    finally:
        await relay.stop()


async def _serve(port: int, delay: float) -> None:
    relay = LatencyRelay(delay)
    await relay.start(port)
    print(f"relaying 127.0.0.1:{relay.port} -> {PG_HOST}:{PG_PORT}, "
          f"{delay * 1000:g} ms each way", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=25432)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(_serve(args.listen, args.delay_ms / 1000))
