"""SANS-IO SASL server mechanisms: results, context and the mechanism interface.

A mechanism object lives for one authentication attempt. The stream layer feeds it the
decoded client data and acts on what comes back:

    mech = create_mechanism("SCRAM-SHA-256", ctx)
    r = mech.step(initial_response)          # Challenge | NeedCredentials | Success | Failure
    if isinstance(r, NeedCredentials):
        r = mech.credentials(lookup(r.username))   # CredentialRecord | None
    ...

No I/O happens here: user lookups, logging and XML belong to the caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from suricate.jid import JID, InvalidJID, nameprep, nodeprep
from suricate.sasl.passwords import DEFAULT_ITERATIONS, HASH_NAMES

__all__ = [
    "CONDITIONS",
    "Challenge",
    "ChannelBindingSource",
    "CredentialRecord",
    "Failure",
    "Mechanism",
    "NeedCredentials",
    "Result",
    "SaslContext",
    "SaslStateError",
    "Success",
]

# RFC 6120 §6.5: the SASL failure conditions.
CONDITIONS = frozenset(
    {
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
    }
)


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Look `username` (a prepared localpart) up and call `Mechanism.credentials`."""

    username: str


@dataclass(frozen=True, slots=True)
class Success:
    username: str
    authzid: str | None = None
    additional_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    condition: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"not an RFC 6120 SASL condition: {self.condition}")


Result = Challenge | NeedCredentials | Success | Failure


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A users-table row: `password` for plain storage, `pass_details` for SCRAM storage."""

    password: str | None
    pass_details: str | None = None
    #: Logs in an anonymous account (MongooseIM 6.4's anonymous method with ``login_anon``):
    #: the name is no account's, and it lives as long as its sessions.
    anonymous: bool = False


class ChannelBindingSource(Protocol):
    """What the TLS layer offers for channel binding (RFC 5056, 5929, 9266)."""

    @property
    def tls_version(self) -> str:  # "TLSv1.2" / "TLSv1.3"
        ...

    def binding(self, cb_type: str) -> bytes | None:
        """Channel-binding data for 'tls-exporter', 'tls-server-end-point', 'tls-unique'."""
        ...


# Process-wide secret for fake SCRAM salts of unknown users; set once at import, never
# changed. Deployments that want salts stable across restarts pass `fake_salt_secret`.
_PROCESS_SECRET = secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class SaslContext:
    server: str
    channel_binding: ChannelBindingSource | None = None  # None without TLS
    advertised_mechanisms: Sequence[str] = ()  # for XEP-0474
    advertised_cb_types: Sequence[str] = ()  # XEP-0440 list, empty if not advertised
    scram_iterations: int = DEFAULT_ITERATIONS
    # XEP-0474: add the "h" attribute to server-first-message.
    ssdp: bool = True
    # "scram" or "plain" (MongooseIM password.format); with "plain" the fake exchange for an
    # unknown user spends the same PBKDF2 time as a real one (no timing oracle).
    password_format: str = "scram"
    # MongooseIM password.hash: what a stored record holds, so that PLAIN for an unknown user
    # spends the PBKDF2 a known one costs (passwords.waste_a_check).
    password_hashes: Sequence[str] = HASH_NAMES
    fake_salt_secret: bytes = field(default=_PROCESS_SECRET, repr=False)
    # SASL EXTERNAL (suricate.sasl.external): the usernames a verified client certificate
    # proves here, whether one was verified, and whether it vouches for any authzid.
    cert_usernames: Sequence[str] = ()
    cert_verified: bool = False
    cert_any_authzid: bool = False


class SaslStateError(RuntimeError):
    """The caller drove a mechanism out of order (our bug, not the peer's)."""


class Mechanism:
    """Base class: one instance per authentication attempt."""

    name: str

    def __init__(self, context: SaslContext) -> None:
        self.context = context

    def step(self, data: bytes) -> Result:
        raise NotImplementedError

    def credentials(self, record: CredentialRecord | None) -> Result:
        raise SaslStateError(f"{self.name} did not ask for credentials")


def prepare_authcid(authcid: str, server: str) -> str:
    """The localpart an authentication identity names. Raises InvalidJID.

    RFC 6120 §6.3.8: the authcid is a simple user name (the localpart); clients that send
    user@domain are accepted when the domain is ours.
    """
    if "@" in authcid:
        j = JID.parse(authcid)
        if j.local is None or j.resource is not None or j.domain != nameprep(server):
            raise InvalidJID("authcid names another domain")
        return j.local
    return nodeprep(authcid)


def authzid_ok(authzid: str, username: str, server: str) -> bool:
    """RFC 6120 §6.3.8: an authzid, if given, must be the user's own bare JID here."""
    if not authzid:
        return True
    try:
        j = JID.parse(authzid)
        return j == JID._prepared(username, nameprep(server), None)
    except InvalidJID:
        return False
