"""``[outgoing_pools.rdbms.default.connection] tls.*`` with the pgsql driver, as a MongooseIM
6.4 operator writes it: the connections are encrypted, or refused, never silently plain.

The PostgreSQL on this machine has no TLS, so a small TLS front stands before it on loopback:
it answers the client's SSLRequest with 'S' (PostgreSQL protocol, "SSL Session Encryption"),
does the TLS handshake with a test certificate and relays the plaintext to the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.config import parse_config
from suricate.config.spec import ConfigError
from suricate.net.certs import ensure_self_signed
from suricate.storage import Storage, StorageUnavailable, create_storage
from tests.storage.conftest import PgDatabase, pg_database  # noqa: F401

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # length 8, the SSLRequest code


class TlsFront:
    def __init__(self, db: PgDatabase, context: ssl.SSLContext) -> None:
        self.db, self.context = db, context
        self.tls_sessions = 0
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(8) != SSL_REQUEST:
                writer.close()  # a plain client: this front speaks TLS only
                return
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
            self.tls_sessions += 1
            up_reader, up_writer = await asyncio.open_connection(self.db.host, self.db.port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            writer.close()  # a client that refused our certificate

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TlsFront]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()


def storage_of(tmp: Path, db: PgDatabase, port: int, tls: str) -> Storage:
    """The storage a server would open for this [outgoing_pools.rdbms.default] table."""
    cfg = parse_config(f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"

[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "localhost"
port = {port}
database = "{db.name}"
username = "{db.user}"
password = ""
{tls}
""", tmp)
    return create_storage(cfg["outgoing_pools"]["rdbms"]["default"]["connection"], tmp)


async def test_tls_to_postgresql(tmp_path: Path, pg_database: PgDatabase) -> None:  # noqa: F811
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    stranger, _ = ensure_self_signed(tmp_path / "other", ["localhost"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.certfile, cert.keyfile)
    async with TlsFront(pg_database, context).running() as front:
        # Required, the chain checked against our CA and the name against host ("https").
        storage = storage_of(tmp_path, pg_database, front.port, f"""
tls.required = true
tls.cacertfile = "{cert.certfile}"
tls.server_name_indication.protocol = "https"
""")
        await storage.open()
        try:
            assert not await storage.user_exists("localhost", "alice")
        finally:
            await storage.close()
        assert front.tls_sessions >= 1

        # A server whose certificate the configured CA did not sign: no connection.
        storage = storage_of(tmp_path, pg_database, front.port, f"""
tls.required = true
tls.cacertfile = "{stranger.certfile}"
""")
        with pytest.raises(StorageUnavailable, match="certificate verify failed"):
            await storage.open()

    # The real server offers no TLS: required refuses it, not required uses plain TCP
    # (6.4's tls.required = false, epgsql's ssl = true).
    storage = storage_of(tmp_path, pg_database, pg_database.port,
                         'tls.required = true\ntls.verify_mode = "none"')
    with pytest.raises(StorageUnavailable, match="rejected SSL upgrade"):
        await storage.open()
    storage = storage_of(tmp_path, pg_database, pg_database.port,
                         'tls.required = false\ntls.verify_mode = "none"')
    await storage.open()
    await storage.close()


@pytest.mark.parametrize(("connection", "expected"), [
    ('driver = "mysql"\ntls.required = true',
     "outgoing_pools.rdbms.default.connection.tls: TLS to MySQL/MariaDB is not available in "
     "this version of Suricate: the connection would be plain text; remove tls (pgsql has it)"),
    ('driver = "pgsql"\ntls.verify_mode = "selfsigned_peer"',
     'outgoing_pools.rdbms.default.connection.tls.verify_mode: "selfsigned_peer" is not '
     "available in this version of Suricate for the database: give its certificate as "
     'cacertfile with verify_mode = "peer"'),
    ('driver = "pgsql"\ntls.server_name_indication.host = "db.internal"',
     "outgoing_pools.rdbms.default.connection.tls.server_name_indication.host: not available "
     "in this version of Suricate for the database: the name sent and checked is "
     "connection.host"),
])
def test_database_tls_it_cannot_do_is_refused(tmp_path: Path, connection: str,
                                              expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"

[outgoing_pools.rdbms.default.connection]
host = "db"
database = "app"
username = "app"
password = "x"
{connection}
""", tmp_path)
    assert [str(p) for p in err.value.problems] == [expected]
