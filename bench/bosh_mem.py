"""Where the memory of an idle BOSH session goes, in process: a Suricate server (the tree on
PYTHONPATH) with tracemalloc on, ``--count`` BOSH sessions logged in by ``bench/loadgen.py
hold --bosh`` (another process, as Converse.js keeps them: ``hold=1``, one request held), a
snapshot before and after, the difference per session grouped by where it was allocated
(the innermost frames in suricate, aiohttp, asyncio), and the live objects per session by type
(docs/performance.md, "BOSH").

    PYTHONPATH=<tree> .venv/bin/python bench/bosh_mem.py --count 500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: <tree> wins

from suricate.jid import JID  # noqa: E402
from tests.web.conftest import web_server  # noqa: E402
from tests.web.test_bosh import BOSH  # noqa: E402

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
OURS = ("/suricate/", "/aiohttp/", "/asyncio/", "/multidict/", "/yarl/")


def _where(tb: tracemalloc.Traceback, depth: int) -> str:
    """The ``depth`` innermost frames in the code we look at (suricate, aiohttp, asyncio)."""
    frames = [f for f in tb if any(p in f.filename for p in OURS)]
    if not frames:
        frames = list(tb)[:1]
    return " <- ".join(f"{f.filename.split('/site-packages/')[-1].split('/work/')[-1]}"
                       f":{f.lineno}" for f in frames[-depth:][::-1])


def _area(tb: tracemalloc.Traceback) -> str:
    """The module of the innermost frame in suricate or aiohttp (asyncio, other if none)."""
    for f in reversed(tb):  # innermost first
        name = f.filename
        if "/suricate/" in name:
            return "suricate/" + name.rsplit("/suricate/", 1)[1]
        if "/aiohttp/" in name:
            return "aiohttp"
    return "asyncio" if any("/asyncio/" in f.filename for f in tb) else "other"


def _types() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def hold(port: int, count: int, first: int) -> asyncio.subprocess.Process:
    gen = await asyncio.create_subprocess_exec(
        sys.executable, str(LOADGEN), "hold", "--port", str(port), "--count", str(count),
        "--first", str(first), "--settle", "1", "--max-hold", "300", "--bosh", "/http-bind",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert gen.stdout is not None
    line = await gen.stdout.readline()
    if json.loads(line)["held"] != count:
        raise RuntimeError(f"held: {line!r}")
    return gen


async def close(gen: asyncio.subprocess.Process) -> None:
    assert gen.stdin is not None
    gen.stdin.write(b"close\n")
    await gen.stdin.drain()
    await gen.wait()


async def measure(count: int, top: int, depth: int, settle: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        async with web_server(Path(d), handlers=BOSH,
                              modules_extra="[modules.mod_bosh]\n") as server:
            for i in range(count + 1):
                await server.auth.register(JID(f"u{i}", "localhost", None), "pw")
            port = server.http_port  # type: ignore[attr-defined]
            # one session first: what the first HTTP client loads is not per session
            await close(await hold(port, 1, count))
            await asyncio.sleep(0.5)
            gc.collect()
            tracemalloc.start(25)
            types0 = _types()
            snap0 = tracemalloc.take_snapshot()
            gen = await hold(port, count, 0)
            # idle as in bench/run.py's RSS figure (settle 5 s): two hibernation sweeps
            await asyncio.sleep(settle)
            gc.collect()
            snap1 = tracemalloc.take_snapshot()
            types1 = _types()
            await close(gen)
            tracemalloc.stop()
    total = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    print(f"traced growth per session: {total / count / 1024:.2f} KiB ({count} sessions)")
    diff = snap1.compare_to(snap0, "traceback")
    areas: collections.Counter[str] = collections.Counter()
    for stat in diff:
        areas[_area(stat.traceback)] += stat.size_diff
    print("\nbytes per session by area (innermost frame in suricate or aiohttp):")
    for area, size in areas.most_common():
        if abs(size) >= count * 50:
            print(f"{size / count:8.0f} B  {area}")
    groups: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for stat in diff:
        g = groups[_where(stat.traceback, depth)]
        g[0] += stat.size_diff
        g[1] += stat.count_diff
    print(f"\nbytes per session by where (innermost {depth} frames), top {top}:")
    for where, (size, n) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{size / count:8.0f} B {n / count:6.2f} blocks  {where}")
    print("\nlive objects per session by type (growth >= 0.5 per session):")
    for name, n in sorted(((k, types1[k] - types0[k]) for k in types1), key=lambda kv: -kv[1]):
        if n >= count / 2:
            print(f"{n / count:6.2f}  {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds idle after the logins before the snapshot")
    a = p.parse_args()
    asyncio.run(measure(a.count, a.top, a.depth, a.settle))


if __name__ == "__main__":
    main()
