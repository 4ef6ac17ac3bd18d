"""PLAIN logins over direct TLS, one after the other: the ldap method against a real slapd
(started as tests/auth/slapd.py does) next to rdbms (SQLite) on the same machine.

    .venv/bin/python bench/ldap_logins.py [N]

Each login is a new TCP + TLS connection, a stream header and SASL PLAIN; the figure is the
mean time per login, so the difference between the two lines is what the directory costs
(search + bind, in a worker thread).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suricate.core.server import Server  # noqa: E402
from suricate.jid import JID  # noqa: E402
from tests.auth.common import plain_outcome  # noqa: E402
from tests.auth.slapd import person, running_slapd  # noqa: E402
from tests.auth.test_ldap import ldap_toml  # noqa: E402
from tests.e2e.harness import running_server  # noqa: E402


async def measure(server: Server, label: str, n: int) -> None:
    started = time.perf_counter()
    for _ in range(n):
        assert await plain_outcome(server, "alice", "wonder land") == "success"
    elapsed = time.perf_counter() - started
    print(f"{label}: {n} logins in {elapsed:.2f} s = {elapsed / n * 1000:.1f} ms/login")


async def main(n: int) -> None:
    with running_slapd() as slapd:
        slapd.add(person("alice", "wonder land"))
        async with running_server(Path(tempfile.mkdtemp()), auth_extra='methods = ["ldap"]',
                                  extra=ldap_toml(slapd.port)) as server:
            await measure(server, "ldap (slapd)", n)
    async with running_server(Path(tempfile.mkdtemp())) as server:
        await server.auth.register(JID.parse("alice@localhost"), "wonder land")
        await measure(server, "rdbms (SQLite, SCRAM record, PLAIN)", n)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
