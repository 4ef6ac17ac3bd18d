"""mod_proxy65's relay on loopback: N bytestreams at once, each moving SIZE bytes from the
requester to the target through the proxy; prints the throughput, the server's CPU time per
relayed gigabyte and its RSS growth while relaying.

    PYTHONPATH=. .venv/bin/python bench/proxy65.py --streams 4 --mb 100

The server (mod_proxy65 only) and the clients share this process and its event loop, as in
the other in-process figures: the CPU time counts both sides, so it is an upper bound of the
server's."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import tempfile
import time
from pathlib import Path

from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from suricate.modules.mod_proxy65 import ModProxy65

CHUNK = 65536


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _socks(port: int, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00\x05\x01\x00\x03\x28" + key.encode() + b"\x00\x00")
    await reader.readexactly(2 + 47)
    return reader, writer


async def _stream(server: Server, port: int, index: int, size: int) -> None:
    proxy = server.modules["mod_proxy65"]
    assert isinstance(proxy, ModProxy65)
    key = hashlib.sha1(f"s{index}".encode()).hexdigest()
    target = await _socks(port, key)
    requester = await _socks(port, key)
    proxy.streamhost.activate(key, lambda relay: None)
    chunk = bytes(CHUNK)

    async def send() -> None:
        for _ in range(size // CHUNK):
            requester[1].write(chunk)
            await requester[1].drain()
        requester[1].write_eof()

    async def receive() -> int:
        got = 0
        while data := await target[0].read(1 << 20):
            got += len(data)
        return got

    _, got = await asyncio.gather(send(), receive())
    assert got == size // CHUNK * CHUNK, got
    for _, writer in (target, requester):
        writer.close()


async def main(streams: int, megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[auth]
methods = ["rdbms"]
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp}/bench.db"
[modules.mod_proxy65]
ip = "127.0.0.1"
port = 0
""", Path(tmp))
        server = Server(cfg, Path(tmp), MODULES)
        await server.start()
        try:
            proxy = server.modules["mod_proxy65"]
            assert isinstance(proxy, ModProxy65)
            size = megabytes * 1024 * 1024
            rss0 = _rss_kib()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            await asyncio.gather(*(_stream(server, proxy.port, i, size)
                                   for i in range(streams)))
            elapsed = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            total = streams * size
            print(f"streams={streams} size={megabytes} MiB each total={total >> 20} MiB")
            print(f"elapsed={elapsed:.2f} s throughput={total / elapsed / 1e6:.0f} MB/s")
            print(f"cpu={cpu:.2f} s ({cpu / (total / 1e9):.2f} s per GB, both sides)")
            print(f"rss_growth={(_rss_kib() - rss0) / 1024:.1f} MiB (max RSS "
                  f"{cpu1.ru_maxrss / 1024:.0f} MiB)")
        finally:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--mb", type=int, default=100, help="MiB per stream")
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.mb))
