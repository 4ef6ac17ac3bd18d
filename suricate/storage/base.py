"""The storage interface every backend implements, its records and its errors.

Modules and auth methods only see `Storage`; which database sits behind it is a
configuration choice (DESIGN.md §2.8). All methods are coroutines so that a networked
backend (PostgreSQL) and an embedded one (SQLite) are interchangeable.

`server` is always the (prepared) domain the account lives on and `username`/`user` the
prepared localpart, so one database can hold several virtual hosts, like MongooseIM's
`server` column.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "DomainRecord",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "UserRecord",
]


class StorageError(Exception):
    """A storage operation failed; callers answer `internal-server-error`."""


class StorageUnavailable(StorageError):
    """The database cannot be reached (down, refused, locked too long).

    Callers answer `service-unavailable` / `temporary-auth-failure` rather than crash:
    the condition is expected to pass.
    """




@dataclass(frozen=True, slots=True)
class UserRecord:
    server: str
    username: str
    # Plaintext only when the operator configured the plain password format; else None.
    password: str | None
    # Serialized SCRAM record(s) (salt, iteration count, stored key, server key).
    pass_details: str | None
    # Unix time of creation, seconds.
    created_at: float




@dataclass(frozen=True, slots=True)
class DomainRecord:
    """A dynamic domain (MongooseIM's service_domain_db): added at run time under a host type."""

    domain: str
    host_type: str
    enabled: bool




class Storage(ABC):
    """Persistent state of accounts. One instance per server, shared by all modules."""

    # Its calls finish without suspending and need no asyncio task of their own (SQLite runs
    # inline on the loop thread): the c2s runs steps that only touch storage right away,
    # without a task. A driver whose library needs a current task (asyncpg's timeouts) must
    # leave this False.
    inline: ClassVar[bool] = False

    # -- life cycle -------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Safe to call twice or after a failed open()."""

    @abstractmethod
    async def schema_versions(self) -> list[int]:
        """Applied migration numbers, ascending (for `status` and tests)."""

    # -- users --------------------------------------------------------------------------

    @abstractmethod
    async def create_user(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        """Create an account; False if it already exists."""

    @abstractmethod
    async def get_user(self, server: str, username: str) -> UserRecord | None: ...

    @abstractmethod
    async def set_password(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        """Replace the credentials; False if the account does not exist."""

    @abstractmethod
    async def remove_user(self, server: str, username: str,
                          module_tables: Sequence[str] = ()) -> bool:
        """Delete the account and all its data (the rows of `module_tables`, the modules'
        ModuleStore.user_tables) atomically.

        Returns whether the account row existed; the data of a user without an account
        row (anonymous or external auth) is removed all the same.
        """

    @abstractmethod
    async def list_users(self, server: str, limit: int | None = None, offset: int = 0) -> list[str]:
        """Usernames of `server`, sorted."""

    @abstractmethod
    async def count_users(self, server: str) -> int: ...

    @abstractmethod
    async def user_exists(self, server: str, username: str) -> bool: ...

    # -- dynamic domains and domain admins --------------------------------------------------

    @abstractmethod
    async def list_domains(self) -> list[DomainRecord]:
        """Every stored domain, sorted."""

    @abstractmethod
    async def insert_domain(self, domain: str, host_type: str) -> bool:
        """Add an enabled domain; False if the domain exists already."""

    @abstractmethod
    async def delete_domain(self, domain: str, module_tables: Sequence[str] = ()) -> bool:
        """Remove the domain, its admin password and every account of it with their data
        (the rows of `module_tables`, keyed by server), atomically."""

    @abstractmethod
    async def set_domain_enabled(self, domain: str, enabled: bool) -> bool:
        """False if there is no such domain."""

    @abstractmethod
    async def set_domain_admin(self, domain: str, pass_details: str) -> None: ...

    @abstractmethod
    async def get_domain_admin(self, domain: str) -> str | None: ...

    @abstractmethod
    async def delete_domain_admin(self, domain: str) -> bool: ...
