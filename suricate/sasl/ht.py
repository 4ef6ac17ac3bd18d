"""The Hashed Token SASL mechanisms, HT-* (draft-schmaus-kitten-sasl-ht-08, the version
XEP-0484 cites), used by FAST (XEP-0484) to log in with a server-issued token in one round trip.

Exchange (draft §3):

    C: authcid NUL initiator-hashed-token
       initiator-hashed-token = HMAC(token, "Initiator" || cb-data)
    S: <success> with additional data = HMAC(token, "Responder" || cb-data)

Names are ``HT-<hash>-<cb>`` (draft §2): the hash is the IANA "Named Information Hash
Algorithm" name in capitals (SHA-256, SHA-384, SHA-512, SHA3-256, SHA3-384, SHA3-512; note
SHA3-256, not MongooseIM's spelling HT-SHA-3-256), the channel binding is ENDP
(tls-server-end-point), UNIQ (tls-unique), EXPR (tls-exporter, RFC 9266) or NONE.

The mechanism is pure: it parses the client message and asks for the user's tokens
(``NeedCredentials``); the caller hands back the candidate tokens (``tokens``), which are
checked with constant-time comparisons (XEP-0484 §6, "Security Considerations").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from suricate.jid import InvalidJID
from suricate.sasl.base import (
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    SaslContext,
    SaslStateError,
    Success,
    prepare_authcid,
)

__all__ = [
    "HT_CHANNEL_BINDINGS",
    "HT_HASHES",
    "HashedToken",
    "TokenCandidate",
    "ht_initiator_message",
    "ht_mechanism_names",
    "ht_responder_message",
    "parse_ht_name",
]

# IANA hash name (as in the mechanism name) -> hashlib name.
HT_HASHES: dict[str, str] = {
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA3-256": "sha3_256",
    "SHA3-384": "sha3_384",
    "SHA3-512": "sha3_512",
}

# Channel-binding suffix -> RFC 5056 channel-binding type (None: no channel binding).
HT_CHANNEL_BINDINGS: dict[str, str | None] = {
    "EXPR": "tls-exporter",
    "ENDP": "tls-server-end-point",
    "UNIQ": "tls-unique",
    "NONE": None,
}

_MAX_AUTHCID = 1023


def parse_ht_name(name: str) -> tuple[str, str | None] | None:
    """``HT-SHA-256-EXPR`` -> (hashlib name, channel-binding type); None if not an HT name."""
    if not name.startswith("HT-"):
        return None
    body, _, cb = name[3:].rpartition("-")
    if body not in HT_HASHES or cb not in HT_CHANNEL_BINDINGS:
        return None
    return HT_HASHES[body], HT_CHANNEL_BINDINGS[cb]


def ht_mechanism_names(cb_types: Sequence[str]) -> list[str]:
    """The HT mechanisms usable on a connection offering ``cb_types`` (strongest binding
    first, then NONE), for the FAST inline feature."""
    out: list[str] = []
    for suffix, cb_type in HT_CHANNEL_BINDINGS.items():
        if cb_type is not None and cb_type not in cb_types:
            continue
        out.extend(f"HT-{h}-{suffix}" for h in HT_HASHES)
    return out


def ht_initiator_message(hash_name: str, token: bytes, cb_data: bytes) -> bytes:
    return hmac.new(token, b"Initiator" + cb_data, hash_name).digest()


def ht_responder_message(hash_name: str, token: bytes, cb_data: bytes) -> bytes:
    return hmac.new(token, b"Responder" + cb_data, hash_name).digest()


@dataclass(frozen=True, slots=True)
class TokenCandidate:
    """A token the user may be presenting: its secret and where it is kept (the caller's
    label, e.g. XEP-0484 §5's 'new' and 'current' slots)."""

    secret: bytes
    slot: str


class HashedToken(Mechanism):
    """One HT-* attempt."""

    def __init__(self, context: SaslContext, name: str) -> None:
        super().__init__(context)
        parsed = parse_ht_name(name)
        if parsed is None:
            raise ValueError(f"not a hashed-token mechanism: {name}")
        self.name = name
        self.hash_name, self.cb_type = parsed
        self.username = ""
        self.matched_slot: str | None = None
        self._proof = b""
        self._state = "start"

    def step(self, data: bytes) -> Result:
        if self._state != "start":
            raise SaslStateError(f"{self.name} step in state {self._state}")
        self._state = "failed"
        # draft §3: one message, no challenge; an empty response is a malformed request.
        authcid_bytes, sep, proof = data.partition(b"\x00")
        digest_size = hashlib.new(self.hash_name).digest_size
        if not sep or not authcid_bytes or len(authcid_bytes) > _MAX_AUTHCID \
                or len(proof) != digest_size:
            return Failure("malformed-request", "expected authcid NUL hashed token")
        try:
            self.username = prepare_authcid(authcid_bytes.decode("utf-8"), self.context.server)
        except (UnicodeDecodeError, InvalidJID):
            return Failure("not-authorized")
        self._proof = proof
        self._state = "need_tokens"
        return NeedCredentials(self.username)

    def channel_binding_data(self) -> bytes | None:
        """The cb-data this mechanism binds to, b"" for -NONE, None when the connection
        cannot provide it (no TLS, TLS 1.3 and tls-unique, handshake not finished: 0-RTT)."""
        if self.cb_type is None:
            return b""
        source = self.context.channel_binding
        if source is None:
            return None
        return source.binding(self.cb_type)

    def tokens(self, candidates: Sequence[TokenCandidate]) -> Result:
        """Check the client's proof against each candidate, every one of them, in constant
        time per comparison (so timing does not tell which slot matched)."""
        if self._state != "need_tokens":
            raise SaslStateError(f"{self.name} got tokens in state {self._state}")
        self._state = "done"
        cb_data = self.channel_binding_data()
        if cb_data is None:
            return Failure("not-authorized", "channel binding unavailable on this connection")
        matched: TokenCandidate | None = None
        for candidate in candidates:
            expected = ht_initiator_message(self.hash_name, candidate.secret, cb_data)
            if hmac.compare_digest(expected, self._proof) and matched is None:
                matched = candidate
        if matched is None:
            return Failure("not-authorized")
        self.matched_slot = matched.slot
        return Success(self.username, None,
                       ht_responder_message(self.hash_name, matched.secret, cb_data))
