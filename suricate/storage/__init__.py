"""Persistent storage behind one interface: SQLite (embedded default), PostgreSQL or
MySQL/MariaDB.

`create_storage` reads the table MongooseIM 6.4 calls
`[outgoing_pools.rdbms.default.connection]`:

    driver = "pgsql"   host, port (5432), database, username, password, workers (10), tls
    driver = "mysql"   host, port (3306), database, username, password, workers (10)
    driver = "sqlite"  database = file path, relative to the server's base directory
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Storage, StorageError, StorageUnavailable, UserRecord

__all__ = [
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "UserRecord",
    "create_storage",
]


def create_storage(connection: Mapping[str, Any], base_dir: Path) -> Storage:
    """Build (not open) the backend `connection` describes; call `await storage.open()`.

    Values are expected to be validated by the config spec already; a ValueError here is
    the last line of defence against a wrong driver or a missing database name.
    """
    driver = connection.get("driver")
    if driver == "sqlite":
        # Imported here, not at the top: a deployment only pays for the backend it uses.
        from .sqlite import SqliteStorage

        database = str(connection.get("database") or "suricate.db")
        if database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = Path(base_dir) / path
            database = str(path)
        return SqliteStorage(database)
    if driver in ("pgsql", "mysql"):
        for key in ("database", "username"):
            if not connection.get(key):
                raise ValueError(f"rdbms connection: driver {driver} needs '{key}'")
        password = connection.get("password")
        settings: dict[str, Any] = {
            "host": str(connection.get("host") or "localhost"),
            "database": str(connection["database"]),
            "username": str(connection["username"]),
            "password": None if password is None else str(password),
            "pool_size": int(connection.get("workers", 10)),
        }
        if driver == "pgsql":
            from .pgsql import PgsqlStorage

            return PgsqlStorage(port=int(connection.get("port") or 5432),
                                tls=connection.get("tls"), **settings)
        from .mysql import MysqlStorage

        return MysqlStorage(port=int(connection.get("port") or 3306), **settings)
    raise ValueError(
        f"rdbms connection: unsupported driver {driver!r} (expected sqlite, pgsql or mysql)")
