"""What one BOSH round costs, in one process: a Suricate server (the tree on PYTHONPATH) and
one BOSH client (aiohttp), pinned to one core. A round is a held poll plus a request with three
messages to oneself (answered on the held one); the CPU of the process per round, 200 rounds
of warm-up then 5 measures of ``--rounds`` rounds. The client code is the same whatever the
tree, so the difference between two trees is the server's (docs/performance.md, "BOSH").

    PYTHONPATH=<tree> taskset -c 1 .venv/bin/python bench/bosh_cost.py --rounds 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: <tree> wins

from tests.web.conftest import web_server  # noqa: E402
from tests.web.test_bosh import BOSH, HTTPBIND  # noqa: E402
from tests.web.test_bosh_corners import available_session  # noqa: E402

BODY = "<body>Hello! This is a benchmark message of a typical chat size.</body>"


async def measure(rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as d:
        async with web_server(Path(d), handlers=BOSH) as server, \
                aiohttp.ClientSession() as http:
            c, jid = await available_session(http, server)
            msgs = "".join(f"<message xmlns='jabber:client' to='{jid}' type='chat' id='m{k}'>"
                           f"{BODY}</message>" for k in range(3))

            async def one() -> None:
                poll = asyncio.ensure_future(c.send())
                await asyncio.sleep(0)
                c.rid += 1
                sent = asyncio.ensure_future(c.post(
                    f"<body xmlns='{HTTPBIND}' rid='{c.rid}' sid='{c.sid}'>{msgs}</body>"))
                got = (await asyncio.wait_for(poll, 10)) + (await asyncio.wait_for(sent, 10))
                while got.count("</message>") < 3:
                    got += await asyncio.wait_for(c.send(), 10)

            for _ in range(200):
                await one()
            out = []
            for _ in range(5):
                t0 = time.process_time()
                for _ in range(rounds):
                    await one()
                out.append((time.process_time() - t0) / rounds * 1e6)
            return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=300)
    a = p.parse_args()
    out = asyncio.run(measure(a.rounds))
    print("µs of CPU per round:", " ".join(f"{x:.0f}" for x in out), f"(min {min(out):.0f})")


if __name__ == "__main__":
    main()
