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
    "ASK_STATES",
    "DomainRecord",
    "SUBSCRIPTION_STATES",
    "OfflineMessage",
    "RosterItem",
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


# RFC 6121 §2.1.2.5: the four subscription states a roster item can be in.
SUBSCRIPTION_STATES: frozenset[str] = frozenset({"none", "to", "from", "both"})
# Pending requests: 'out' = we asked the contact (RFC 6121 §2.1.2.2 ask='subscribe'),
# 'in' = the contact asked us and we have not answered yet (not sent to clients, but the
# server must remember it, RFC 6121 §3.1.3), 'both' = each side asked the other.
ASK_STATES: frozenset[str] = frozenset({"none", "out", "in", "both"})


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
class RosterItem:
    jid: str  # bare JID of the contact
    name: str | None = None
    subscription: str = "none"
    ask: str = "none"
    groups: tuple[str, ...] = ()
    # RFC 6121 §3.4: the user pre-approved a subscription request from this contact.
    approved: bool = False
    # The status text that came with a pending inbound subscription request, so it can be
    # shown to the user when they come online (RFC 6121 §3.1.3).
    ask_message: str | None = None

    def __post_init__(self) -> None:
        # Reject nonsense at construction rather than as an opaque database CHECK failure.
        if self.subscription not in SUBSCRIPTION_STATES:
            raise ValueError(f"invalid roster subscription {self.subscription!r}")
        if self.ask not in ASK_STATES:
            raise ValueError(f"invalid roster ask {self.ask!r}")


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    timestamp: float  # Unix time the message was stored (XEP-0203 delay stamp)
    from_jid: str
    to_jid: str
    packet: str  # the stanza, serialized XML
    expire: float | None = None  # Unix time after which it must not be delivered (XEP-0079)


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """A dynamic domain (MongooseIM's service_domain_db): added at run time under a host type."""

    domain: str
    host_type: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class FastToken:
    """One XEP-0484 token slot: the seed the token is derived from (never the token)."""

    seed: str
    expire: float  # Unix time
    mechanism: str  # the HT-* mechanism the token is bound to (XEP-0484 §3.4)
    count: int | None = None  # highest replay counter accepted so far


@dataclass(frozen=True, slots=True)
class FastTokenSlots:
    current: FastToken | None
    new: FastToken | None


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
        """Delete the account and all its data (roster, offline, ...) atomically.

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

    # -- roster (RFC 6121) ----------------------------------------------------------------

    @abstractmethod
    async def get_roster(self, server: str, user: str) -> list[RosterItem]:
        """All items, sorted by JID."""

    @abstractmethod
    async def get_roster_item(self, server: str, user: str, jid: str) -> RosterItem | None: ...

    @abstractmethod
    async def put_roster_item(self, server: str, user: str, item: RosterItem) -> None:
        """Insert or replace the item (groups included)."""

    @abstractmethod
    async def delete_roster_item(self, server: str, user: str, jid: str) -> bool: ...

    @abstractmethod
    async def get_roster_version(self, server: str, user: str) -> str | None: ...

    @abstractmethod
    async def set_roster_version(self, server: str, user: str, version: str) -> None: ...

    # -- offline messages (XEP-0160) ------------------------------------------------------

    @abstractmethod
    async def store_offline(self, server: str, user: str, msg: OfflineMessage) -> None: ...

    @abstractmethod
    async def count_offline(self, server: str, user: str) -> int: ...

    @abstractmethod
    async def pop_offline(
        self, server: str, user: str, now: float | None = None
    ) -> list[OfflineMessage]:
        """Remove and return the user's messages in arrival order, atomically.

        Messages whose `expire` is before `now` (default: the current time) are deleted
        but not returned (XEP-0079: an expired message is not delivered).
        """

    @abstractmethod
    async def remove_expired_offline(self, now: float) -> int:
        """Delete messages of every user whose `expire` is before `now`; return how many."""

    # -- last activity (XEP-0012) ---------------------------------------------------------

    @abstractmethod
    async def set_last(self, server: str, user: str, timestamp: int, status: str) -> None: ...

    @abstractmethod
    async def get_last(self, server: str, user: str) -> tuple[int, str] | None: ...

    # -- vCard (XEP-0054) -----------------------------------------------------------------

    @abstractmethod
    async def set_vcard(self, server: str, user: str, xml: str) -> None: ...

    @abstractmethod
    async def get_vcard(self, server: str, user: str) -> str | None: ...

    # -- blocking (XEP-0191) --------------------------------------------------------------

    @abstractmethod
    async def get_blocklist(self, server: str, user: str) -> list[str]:
        """Blocked JIDs, sorted."""

    @abstractmethod
    async def block(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Add `jids`; return those that were not blocked before, in request order."""

    @abstractmethod
    async def unblock(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Remove `jids`; return those that were blocked, in request order."""

    @abstractmethod
    async def unblock_all(self, server: str, user: str) -> list[str]:
        """Empty the blocklist; return what it held, sorted."""

    # -- dynamic domains and domain admins --------------------------------------------------

    @abstractmethod
    async def list_domains(self) -> list[DomainRecord]:
        """Every stored domain, sorted."""

    @abstractmethod
    async def insert_domain(self, domain: str, host_type: str) -> bool:
        """Add an enabled domain; False if the domain exists already."""

    @abstractmethod
    async def delete_domain(self, domain: str) -> bool:
        """Remove the domain, its admin password and every account of it with their data."""

    @abstractmethod
    async def set_domain_enabled(self, domain: str, enabled: bool) -> bool:
        """False if there is no such domain."""

    @abstractmethod
    async def set_domain_admin(self, domain: str, pass_details: str) -> None: ...

    @abstractmethod
    async def get_domain_admin(self, domain: str) -> str | None: ...

    @abstractmethod
    async def delete_domain_admin(self, domain: str) -> bool: ...

    # -- administration queries ------------------------------------------------------------

    @abstractmethod
    async def list_fast_tokens(self, server: str, user: str) -> list[tuple[str, FastToken]]:
        """Every live token slot of an account as (user agent id, token), for the admin API."""

    @abstractmethod
    async def revoke_fast_tokens(self, server: str, user: str) -> int:
        """Forget every FAST token of an account; return how many clients had some."""

    @abstractmethod
    async def count_active_users(self, server: str, since: int) -> int:
        """Accounts of `server` whose last activity (XEP-0012) is at or after `since`."""

    @abstractmethod
    async def remove_old_offline(self, server: str, before: float) -> int:
        """Delete offline messages of `server` stored before `before`; return how many."""

    # -- FAST tokens (XEP-0484) ---------------------------------------------------------------

    @abstractmethod
    async def get_fast_tokens(self, server: str, user: str, agent_id: str
                              ) -> FastTokenSlots | None:
        """Both slots of the user's client `agent_id`, None if it has none."""

    @abstractmethod
    async def store_fast_token(self, server: str, user: str, agent_id: str,
                               token: FastToken) -> None:
        """Put `token` in the 'new' slot, replacing an unused one (XEP-0484 §3.5)."""

    @abstractmethod
    async def use_fast_token(self, server: str, user: str, agent_id: str, slot: str,
                             seed: str, count: int | None) -> bool:
        """Record a successful login with the token of `slot` ('new' or 'current') whose
        seed is `seed`, atomically: a 'new' token moves to 'current' (XEP-0484 §5), and a
        `count` must exceed the one last accepted (XEP-0484 §3.4 replay protection).
        False when the slot no longer holds that token or the count was seen already."""

    @abstractmethod
    async def remove_fast_tokens(self, server: str, user: str, agent_id: str) -> None:
        """Invalidate both slots (XEP-0484 §3.6)."""
