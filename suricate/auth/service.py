"""Accounts and authentication methods (``[auth]``): ``rdbms``/``internal`` (both stored in the
configured database here) and ``anonymous`` (accounts that live as long as their session).

Passwords are stored as SCRAM keys (``password.format = "scram"``, the default): salt,
iterations, stored key and server key per configured hash, so the database never holds a
password (RFC 5802 §3). ``format = "plain"`` keeps the password itself, as in MongooseIM.

The service sits below the server core (DESIGN §1): what it needs from the server (the
``[auth]`` section, the storage, a way to run background work and to tell the rest of the
server that an account came or went) is handed to it by ``Server``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from suricate import sasl
from suricate.jid import JID
from suricate.sasl.passwords import make_scram_record, verify_password
from suricate.storage import Storage

log = logging.getLogger("suricate.auth")

STORED_METHODS = frozenset({"rdbms", "internal"})

#: Told about an account that was created or removed (the server folds its register_user /
#: remove_user hooks).
AccountEvent = Callable[[JID], Awaitable[None]]
#: Runs a coroutine in the background and keeps track of it (``Server.spawn``).
Spawn = Callable[[Coroutine[Any, Any, Any]], object]


class AuthService:
    def __init__(self, cfg: Mapping[str, Any], storage: Storage, spawn: Spawn,
                 registered: AccountEvent, removed: AccountEvent,
                 module_tables: Callable[[], Sequence[str]] = tuple) -> None:
        self.cfg = cfg
        self.storage = storage
        self._spawn = spawn
        self._registered = registered
        self._removed = removed
        # The enabled modules' account tables: removed with the account, in one transaction.
        self._module_tables = module_tables
        self.methods: list[str] = list(cfg["methods"])
        password = cfg["password"]
        self.password_format: str = password["format"]
        self.hashes: list[str] = list(password["hash"])
        self.scram_iterations: int = password["scram_iterations"]
        self.sasl_mechanisms: list[str] = list(cfg["sasl_mechanisms"])
        self.anonymous_opts: Mapping[str, Any] = cfg.get("anonymous") or {}
        self._anonymous: dict[JID, int] = {}

    # -- SASL ------------------------------------------------------------------------------
    def mechanisms(self, tls: bool, cb_types: list[str], listener: Mapping[str, Any]) -> list[str]:
        methods = set(self.methods)
        allowed = listener.get("allowed_auth_methods")
        if allowed:
            methods &= set(allowed)
        names = sasl.mechanism_names(self.sasl_mechanisms, tls, cb_types, self.password_format,
                                     self.hashes)
        if not methods & STORED_METHODS:
            names = [n for n in names if n == "ANONYMOUS"]
        anonymous_sasl = "anonymous" in methods and self.anonymous_opts.get(
            "protocol", "sasl_anon") in ("sasl_anon", "both")
        if not anonymous_sasl:
            names = [n for n in names if n != "ANONYMOUS"]
        return names

    async def credentials(self, username: str, domain: str) -> sasl.CredentialRecord | None:
        try:
            jid = JID(username, domain, None)
        except ValueError:
            return None
        record = await self.storage.get_user(jid.domain, jid.local or "")
        if record is None:
            return None
        return sasl.CredentialRecord(password=record.password, pass_details=record.pass_details)

    # -- accounts --------------------------------------------------------------------------
    def _password_fields(self, password: str) -> tuple[str | None, str | None]:
        if self.password_format == "plain":
            return password, None
        return None, make_scram_record(password, self.hashes, self.scram_iterations)

    async def register(self, jid: JID, password: str) -> bool:
        """Create the account; False if it exists already."""
        assert jid.local is not None
        limit = self.cfg.get("max_users_per_domain")
        if limit is not None and await self.storage.count_users(jid.domain) >= limit:
            raise TooManyUsers(jid.domain)
        plain, details = self._password_fields(password)
        created = await self.storage.create_user(jid.domain, jid.local, plain, details)
        if created:
            await self._registered(jid)
            log.info("auth_register_user jid=%s", jid)
        return created

    async def set_password(self, jid: JID, password: str) -> bool:
        assert jid.local is not None
        plain, details = self._password_fields(password)
        return await self.storage.set_password(jid.domain, jid.local, plain, details)

    async def remove(self, jid: JID) -> bool:
        assert jid.local is not None
        removed = await self.storage.remove_user(jid.domain, jid.local, self._module_tables())
        if removed:
            await self._removed(jid)
            log.info("auth_unregister_user jid=%s", jid)
        return removed

    async def check_password(self, jid: JID, password: str) -> bool:
        assert jid.local is not None
        record = await self.storage.get_user(jid.domain, jid.local)
        if record is None:
            return False
        return verify_password(record.password, record.pass_details, password)

    async def user_exists(self, jid: JID) -> bool:
        if jid.bare in self._anonymous:
            return True
        assert jid.local is not None
        return await self.storage.user_exists(jid.domain, jid.local)

    # -- anonymous -------------------------------------------------------------------------
    def anonymous_login(self, jid: JID) -> None:
        self._anonymous[jid.bare] = self._anonymous.get(jid.bare, 0) + 1

    def anonymous_logout(self, jid: JID) -> None:
        count = self._anonymous.get(jid.bare, 0) - 1
        if count <= 0:
            self._anonymous.pop(jid.bare, None)
            # An anonymous account ends with its last session: its data goes with it.
            self._spawn(self.storage.remove_user(jid.domain, jid.local or "",
                                                self._module_tables()))
        else:
            self._anonymous[jid.bare] = count


class TooManyUsers(Exception):
    """``auth.max_users_per_domain`` is reached for this domain."""
