"""SCRAM-SHA-* and SCRAM-SHA-*-PLUS server mechanisms (RFC 5802, RFC 7677).

Exchange (RFC 5802 §5, §7):

    C: gs2-header client-first-message-bare       n,,n=user,r=<cnonce>
    S: server-first-message                       r=<cnonce><snonce>,s=<salt>,i=<iter>[,h=..]
    C: client-final-message                       c=<b64 gs2-header+cb-data>,r=<nonce>,p=<proof>
    S: server-final-message (in <success/>)       v=<server signature>

Channel binding (RFC 5802 §6): 'n' = client does not do channel binding; 'y' = client does but
thinks we do not (refused when we advertised -PLUS mechanisms over TLS: a downgrade);
'p=<type>' only with -PLUS, for a type this TLS connection supports (channel_binding.py).

XEP-0474 (SSDP, 0.4+): server-first-message carries "h", the hash of the advertised mechanism
list and of the XEP-0440 channel-binding types, so the client can detect list tampering.

Unknown users (RFC 5802 §5.1): we answer with a salt derived from the username and a server
secret, so the exchange looks the same as for a real user and fails at the proof step.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from suricate.jid import InvalidJID
from suricate.sasl.base import (
    Challenge,
    CredentialRecord,
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    SaslContext,
    SaslStateError,
    Success,
    authzid_ok,
    prepare_authcid,
)
from suricate.sasl.channel_binding import channel_binding_types
from suricate.sasl.passwords import (
    SaslPrepError,
    ScramKeys,
    hashlib_name,
    is_scram_record,
    keys_from_plain,
    parse_scram_record,
)

__all__ = [
    "SCRAM_HASHES",
    "Scram",
    "escape_saslname",
    "scram_mechanism_name",
    "ssdp_hash",
    "unescape_saslname",
]

# SASL hash name (as in the mechanism name) -> MongooseIM hash name.
SCRAM_HASHES: dict[str, str] = {
    "SHA-1": "sha",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}

_NONCE_BYTES = 18  # 24 base64url characters of server nonce


def scram_mechanism_name(hash_name: str, plus: bool = False) -> str:
    """'sha256' or 'SHA-256' -> 'SCRAM-SHA-256' (+ '-PLUS')."""
    sasl = next((k for k, v in SCRAM_HASHES.items() if hash_name in (k, v)), None)
    if sasl is None:
        raise ValueError(f"unknown SCRAM hash {hash_name!r}")
    return f"SCRAM-{sasl}{'-PLUS' if plus else ''}"


# Asked by every exchange (one mechanism object per login): worked out once per hash.
_mechanism_name = functools.lru_cache(maxsize=32)(scram_mechanism_name)


@functools.lru_cache(maxsize=16)
def _digest_size(hashlib_hash: str) -> int:
    return hashlib.new(hashlib_hash).digest_size


@functools.lru_cache(maxsize=1024)
def _record_keys(details: str) -> Mapping[str, ScramKeys]:
    """``parse_scram_record``, kept by record: an account logging in again (a phone
    reconnecting) does not decode its keys again. Keyed by the record's text, so a changed
    password is a new entry; read-only, the callers share it."""
    return MappingProxyType(parse_scram_record(details))


def escape_saslname(name: str) -> str:
    """RFC 5802 §5.1: ',' -> '=2C', '=' -> '=3D'."""
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_saslname(value: str) -> str:
    """Inverse of escape_saslname; any other '=' sequence is invalid (RFC 5802 §5.1)."""
    if "=" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "=":
            seq = value[i : i + 3]
            if seq == "=2C":
                out.append(",")
            elif seq == "=3D":
                out.append("=")
            else:
                raise ValueError("invalid '=' escape in saslname")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def ssdp_hash(hash_name: str, mechanisms: Sequence[str], cb_types: Sequence[str]) -> str:
    """XEP-0474 §5.1: base64 H(sorted mechanisms joined by 0x1E [0x1F sorted cb types ...]).
    A listener offers the same few lists to every client: computed once per list."""
    return _ssdp_hash(hash_name, tuple(mechanisms), tuple(cb_types))


@functools.lru_cache(maxsize=256)
def _ssdp_hash(hash_name: str, mechanisms: tuple[str, ...], cb_types: tuple[str, ...]) -> str:
    def octet_sorted(items: Sequence[str]) -> list[str]:
        # "i;octet" collation (RFC 4790 §9.3): compare the UTF-8 octets.
        return sorted(items, key=lambda s: s.encode("utf-8"))

    s = "\x1e".join(octet_sorted(mechanisms))
    if cb_types:  # only when XEP-0440 was used to advertise channel-binding types
        s += "\x1f" + "\x1e".join(octet_sorted(cb_types))
    digest = hashlib.new(_hashlib_name(hash_name), s.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def _hashlib_name(hash_name: str) -> str:
    return hashlib_name(SCRAM_HASHES.get(hash_name, hash_name))


def _is_printable_nonce(nonce: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ','). For ASCII, str.isprintable is
    # %x20-7E: the space is excluded apart (one pass in C rather than a generator).
    return (bool(nonce) and nonce.isascii() and nonce.isprintable() and " " not in nonce
            and "," not in nonce)


def _is_extension(attr: str) -> bool:
    # RFC 5802 §7: attr-val = ALPHA "=" value
    return len(attr) >= 2 and attr[1] == "=" and attr[0].isascii() and attr[0].isalpha()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


class _Refused(Exception):
    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition)
        self.failure = Failure(condition, text)


class Scram(Mechanism):
    """One SCRAM exchange. `hash_name` is MongooseIM's ('sha', 'sha256', ...)."""

    def __init__(
        self,
        context: SaslContext,
        hash_name: str,
        plus: bool = False,
        *,
        server_nonce: str | None = None,
    ) -> None:
        super().__init__(context)
        self.hash_name = hash_name
        self.plus = plus
        self.name = _mechanism_name(hash_name, plus)
        self._hashlib = hashlib_name(hash_name)
        self._digest_size = _digest_size(self._hashlib)
        if server_nonce is not None and not _is_printable_nonce(server_nonce):
            raise ValueError("server nonce must be printable without ','")
        self._snonce = server_nonce or secrets.token_urlsafe(_NONCE_BYTES)
        self._state = "start"
        self._username = ""
        self._authzid: str | None = None
        self._client_first_bare = ""
        self._cb_expected = b""
        self._nonce = ""
        self._server_first = ""
        self._keys: ScramKeys | None = None
        self._fake = False

    # --- driving ---------------------------------------------------------------------------

    def step(self, data: bytes) -> Result:
        state = self._state
        if state == "start" and not data:
            # RFC 6120 §6.4.2: no initial response -> empty challenge.
            self._state = "challenged"
            return Challenge(b"")
        if state in ("start", "challenged"):
            handler = self._client_first
        elif state == "wait_final":
            handler = self._client_final
        else:
            raise SaslStateError(f"{self.name} step in state {state}")
        self._state = "failed"
        try:
            return handler(data)
        except _Refused as e:
            return e.failure

    def credentials(self, record: CredentialRecord | None) -> Result:
        if self._state != "need_credentials":
            raise SaslStateError(f"{self.name} credentials in state {self._state}")
        self._keys, self._fake = self._keys_for(record)
        attrs = [f"r={self._nonce}", f"s={_b64(self._keys.salt)}", f"i={self._keys.iterations}"]
        ctx = self.context
        if ctx.ssdp and ctx.advertised_mechanisms:
            # XEP-0474 §5.1: optional attribute "h" after the mandatory ones (RFC 5802 §7).
            h = ssdp_hash(self.hash_name, ctx.advertised_mechanisms, ctx.advertised_cb_types)
            attrs.append(f"h={h}")
        self._server_first = ",".join(attrs)
        self._state = "wait_final"
        return Challenge(self._server_first.encode("ascii"))

    # --- client-first-message --------------------------------------------------------------

    def _client_first(self, data: bytes) -> Result:
        msg = self._decode(data)
        # RFC 5802 §7: client-first-message = gs2-header client-first-message-bare,
        # gs2-header = gs2-cbind-flag "," [authzid] ","
        parts = msg.split(",", 2)
        if len(parts) != 3:
            raise _Refused("malformed-request", "bad gs2-header")
        flag, authz_field, bare = parts
        gs2_header = f"{flag},{authz_field},"
        if authz_field == "":
            authzid = ""
        elif authz_field.startswith("a=") and len(authz_field) > 2:
            authzid = self._saslname(authz_field[2:])
        else:
            raise _Refused("malformed-request", "bad authzid")

        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            # RFC 5802 §5.1: a mandatory extension we do not know -> fail.
            raise _Refused("malformed-request", "extensions-not-supported")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise _Refused("malformed-request", "expected n=...,r=...")
        raw_user = self._saslname(attrs[0][2:])
        cnonce = attrs[1][2:]
        if not raw_user or not _is_printable_nonce(cnonce):
            raise _Refused("malformed-request", "bad username or nonce")
        if not all(_is_extension(a) for a in attrs[2:]):
            raise _Refused("malformed-request", "bad extension")

        self._cb_expected = self._channel_binding(flag, gs2_header)

        try:
            username = prepare_authcid(raw_user, self.context.server)
        except InvalidJID:
            raise _Refused("not-authorized", "invalid-username-encoding") from None
        if not authzid_ok(authzid, username, self.context.server):
            raise _Refused("invalid-authzid")

        self._username = username
        self._authzid = authzid or None
        self._client_first_bare = bare
        self._nonce = cnonce + self._snonce
        self._state = "need_credentials"
        return NeedCredentials(username)

    def _channel_binding(self, flag: str, gs2_header: str) -> bytes:
        """Check the gs2-cbind-flag (RFC 5802 §6) and return the expected c= content."""
        ctx = self.context
        src = ctx.channel_binding
        header = gs2_header.encode("utf-8")
        if flag.startswith("p="):
            cb_type = flag[2:]
            # RFC 5802 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-")
            if not cb_type or not all(c.isascii() and (c.isalnum() or c in ".-") for c in cb_type):
                raise _Refused("malformed-request", "bad channel-binding name")
            if not self.plus:
                raise _Refused("malformed-request", "channel binding needs a -PLUS mechanism")
            if src is None:
                raise _Refused("not-authorized", "channel-binding-not-supported")
            offered = channel_binding_types(src.tls_version)
            # tls-unique is not offered on TLS 1.3 (RFC 9266 §3), whatever the library says.
            if cb_type not in offered or (
                ctx.advertised_cb_types and cb_type not in ctx.advertised_cb_types
            ):
                raise _Refused("not-authorized", "unsupported-channel-binding-type")
            cb_data = src.binding(cb_type)
            if cb_data is None:
                raise _Refused("not-authorized", "unsupported-channel-binding-type")
            return header + cb_data
        if self.plus:
            raise _Refused("malformed-request", "-PLUS mechanism without channel binding")
        if flag == "y":
            # RFC 5802 §6: the client could bind but saw no -PLUS; if we offered one over TLS,
            # someone stripped it.
            if src is not None and any(m.endswith("-PLUS") for m in ctx.advertised_mechanisms):
                raise _Refused("not-authorized", "server-does-support-channel-binding")
            return header
        if flag == "n":
            return header
        raise _Refused("malformed-request", "bad gs2-cbind-flag")

    # --- client-final-message --------------------------------------------------------------

    def _client_final(self, data: bytes) -> Result:
        msg = self._decode(data)
        # RFC 5802 §7: client-final-message = client-final-message-without-proof "," proof,
        # without-proof = channel-binding "," nonce ["," extensions]
        cut = msg.rfind(",p=")
        if cut < 0:
            raise _Refused("malformed-request", "missing proof")
        without_proof, proof_b64 = msg[:cut], msg[cut + 3 :]
        attrs = without_proof.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r="):
            raise _Refused("malformed-request", "expected c=...,r=...")
        if not all(_is_extension(a) for a in attrs[2:]):
            raise _Refused("malformed-request", "bad extension")
        cb = self._unb64(attrs[0][2:])
        proof = self._unb64(proof_b64)
        if len(proof) != self._digest_size:
            raise _Refused("malformed-request", "bad proof length")
        if not hmac.compare_digest(cb, self._cb_expected):
            raise _Refused("not-authorized", "channel-bindings-dont-match")
        # The client's copy may hold any UTF-8 (ours is printable ASCII): compare bytes.
        if not hmac.compare_digest(attrs[1][2:].encode("utf-8"), self._nonce.encode("utf-8")):
            raise _Refused("not-authorized", "nonce mismatch")

        keys = self._keys
        assert keys is not None
        # RFC 5802 §3: AuthMessage, ClientSignature, ClientKey := ClientProof XOR ClientSignature
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        am = auth_message.encode("utf-8")
        client_signature = hmac.digest(keys.stored_key, am, self._hashlib)
        client_key = _xor(proof, client_signature)
        stored = hashlib.new(self._hashlib, client_key).digest()
        if not hmac.compare_digest(stored, keys.stored_key) or self._fake:
            raise _Refused("not-authorized", "invalid-proof")
        server_signature = hmac.digest(keys.server_key, am, self._hashlib)
        self._state = "done"
        return Success(self._username, self._authzid, b"v=" + base64.b64encode(server_signature))

    # --- helpers ---------------------------------------------------------------------------

    def _keys_for(self, record: CredentialRecord | None) -> tuple[ScramKeys, bool]:
        """Stored keys for the user, or fake ones (and True) so the exchange fails late."""
        if record is not None:
            details = record.pass_details or (
                record.password if is_scram_record(record.password) else None
            )
            if details:
                try:
                    k = _record_keys(details).get(self.hash_name)
                except ValueError:
                    k = None
                if k is not None:
                    return k, False
            elif record.password:
                # Plain storage: derive the keys now, with a per-user stable salt.
                try:
                    return (
                        keys_from_plain(
                            record.password,
                            self.hash_name,
                            self._derived_salt(),
                            self.context.scram_iterations,
                        ),
                        False,
                    )
                except SaslPrepError:
                    pass
        salt = self._derived_salt()
        if self.context.password_format == "plain":
            hashlib.pbkdf2_hmac(self._hashlib, b"", salt, self.context.scram_iterations)
        fake = ScramKeys(
            self.hash_name,
            salt,
            self.context.scram_iterations,
            secrets.token_bytes(self._digest_size),
            secrets.token_bytes(self._digest_size),
        )
        return fake, True

    def _derived_salt(self) -> bytes:
        ctx = self.context
        label = f"{self.hash_name}\x00{ctx.server}\x00{self._username}".encode()
        return hmac.digest(ctx.fake_salt_secret, label, "sha256")[:16]

    @staticmethod
    def _decode(data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("malformed-request", "invalid-encoding") from None

    @staticmethod
    def _saslname(value: str) -> str:
        try:
            return unescape_saslname(value)
        except ValueError:
            raise _Refused("malformed-request", "invalid-username-encoding") from None

    @staticmethod
    def _unb64(value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("malformed-request", "invalid-encoding") from None
