"""Password records, compatible with MongooseIM 6.4's users table.

They live with the SASL mechanisms because the mechanisms verify against them (PLAIN checks a
row, SCRAM reads its keys); ``suricate.auth`` uses them to make records (DESIGN §1: sasl/ is
below auth/).

Two storage formats (MongooseIM `password.format`):
- plain: the `password` column holds the password itself, `pass_details` is NULL;
- scram: `password` is empty and `pass_details` holds the serialized SCRAM keys
  ("SCRAM serialization" in MongooseIM's developer guide)::

    ==MULTI_SCRAM==,<iterations>,===SHA1===<salt>|<stored key>|<server key>,==SHA224==...

  with one base64 salt per hash, the hash sections always in the order sha, sha224, sha256,
  sha384, sha512, and each prefix exactly ten characters long. The older single-hash form
  ``==SCRAM==,<stored key>,<server key>,<salt>,<iterations>`` (SHA-1) is still read.

Password normalization: RFC 5802 §2.2 / §5.1 requires SASLprep (RFC 4013) on the password
before Hi(). We apply SASLprep (with "query" semantics: unassigned code points allowed, so a
Unicode update never locks anyone out). MongooseIM applies stringprep's Resourceprep instead;
for every password Resourceprep accepts, both give the same string (same B.1 mapping, NFKC and
prohibited tables; SASLprep additionally maps non-ASCII spaces, which Resourceprep forbids), so
records are interchangeable. We do not use PRECIS OpaqueString (RFC 8265): it normalizes with
NFC rather than NFKC, so it would disagree with SCRAM clients that follow RFC 5802.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stringprep
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "HASH_NAMES",
    "ScramKeys",
    "SaslPrepError",
    "format_scram_record",
    "hashlib_name",
    "is_scram_record",
    "keys_from_plain",
    "keys_from_salted",
    "make_scram_record",
    "parse_scram_record",
    "salted_password",
    "saslprep",
    "verify_password",
    "waste_a_check",
]

DEFAULT_ITERATIONS = 10_000  # MongooseIM `password.scram_iterations` default
SALT_LENGTH = 16  # as MongooseIM

# MongooseIM hash name -> (hashlib name, serialization prefix). Order is the serialization order.
_HASHES: dict[str, tuple[str, str]] = {
    "sha": ("sha1", "===SHA1==="),
    "sha224": ("sha224", "==SHA224=="),
    "sha256": ("sha256", "==SHA256=="),
    "sha384": ("sha384", "==SHA384=="),
    "sha512": ("sha512", "==SHA512=="),
}
HASH_NAMES: tuple[str, ...] = tuple(_HASHES)
_PREFIX_TO_HASH = {prefix: name for name, (_, prefix) in _HASHES.items()}
_MULTI_PREFIX = "==MULTI_SCRAM==,"
_LEGACY_PREFIX = "==SCRAM==,"


class SaslPrepError(ValueError):
    """The string contains characters SASLprep (RFC 4013) prohibits."""


# Bytes of a stored key, by MongooseIM hash name (checked for every record a login reads).
_DIGEST_SIZES = {name: hashlib.new(h).digest_size for name, (h, _) in _HASHES.items()}


def hashlib_name(hash_name: str) -> str:
    """hashlib name for a MongooseIM hash name ('sha' -> 'sha1'). Raises KeyError."""
    return _HASHES[hash_name][0]


# --- SASLprep (RFC 4013, a profile of stringprep RFC 3454) ---------------------------------

_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space (already mapped, kept for completeness)
    stringprep.in_table_c21_c22,  # control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(s: str) -> str:
    """SASLprep a string (RFC 4013 §2, query semantics). Raises SaslPrepError."""
    if s.isascii():
        # ASCII fast path: only controls are prohibited, nothing is mapped or normalized.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
            raise SaslPrepError("control character")
        return s
    # RFC 4013 §2.1: non-ASCII space -> SPACE, "commonly mapped to nothing" -> removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in s if not stringprep.in_table_b1(c)
    )
    # RFC 4013 §2.2: NFKC, with the Unicode 3.2 tables stringprep is defined on.
    out = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    # RFC 4013 §2.3: prohibited output.
    for c in out:
        if any(table(c) for table in _PROHIBITED):
            raise SaslPrepError(f"prohibited character U+{ord(c):04X}")
    # RFC 4013 §2.4 / RFC 3454 §6: bidirectional rules.
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out):
            raise SaslPrepError("mixed bidirectional text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise SaslPrepError("RandALCat text must start and end with RandALCat")
    return out


# --- SCRAM keys (RFC 5802 §3) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What a server stores for one SCRAM hash (RFC 5802 §3). hash_name is MongooseIM's."""

    hash_name: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 §3). Hi is PBKDF2."""
    return hashlib.pbkdf2_hmac(
        hashlib_name(hash_name), saslprep(password).encode("utf-8"), salt, iterations
    )


def keys_from_salted(hash_name: str, salted: bytes, salt: bytes, iterations: int) -> ScramKeys:
    """StoredKey := H(HMAC(SaltedPassword, "Client Key")), ServerKey := HMAC(SP, "Server Key")."""
    hname = hashlib_name(hash_name)
    client_key = hmac.digest(salted, b"Client Key", hname)
    return ScramKeys(
        hash_name=hash_name,
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hname, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", hname),
    )


def keys_from_plain(password: str, hash_name: str, salt: bytes, iterations: int) -> ScramKeys:
    """Derive the stored SCRAM keys from a password. Raises SaslPrepError, KeyError."""
    return keys_from_salted(
        hash_name, salted_password(hash_name, password, salt, iterations), salt, iterations
    )


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def format_scram_record(keys: Mapping[str, ScramKeys]) -> str:
    """Serialize keys (all with the same iteration count) in MongooseIM's MULTI_SCRAM form."""
    if not keys:
        raise ValueError("no SCRAM keys to serialize")
    iterations = {k.iterations for k in keys.values()}
    if len(iterations) != 1:
        raise ValueError("all hashes of a record share one iteration count")
    parts = [_MULTI_PREFIX + str(iterations.pop())]
    for name, (_, prefix) in _HASHES.items():
        k = keys.get(name)
        if k is not None:
            parts.append(f"{prefix}{_b64(k.salt)}|{_b64(k.stored_key)}|{_b64(k.server_key)}")
    return ",".join(parts)


def make_scram_record(
    password: str, hashes: Sequence[str] = HASH_NAMES, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """Hash a password for storage (a fresh salt per hash, as MongooseIM does).

    Raises SaslPrepError for a password SASLprep prohibits, ValueError for unknown hashes.
    """
    unknown = [h for h in hashes if h not in _HASHES]
    if unknown or not hashes:
        raise ValueError(f"unknown or missing SCRAM hashes: {unknown}")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    keys = {h: keys_from_plain(password, h, os.urandom(SALT_LENGTH), iterations) for h in hashes}
    return format_scram_record(keys)


def is_scram_record(s: str | None) -> bool:
    return s is not None and s.startswith((_MULTI_PREFIX, _LEGACY_PREFIX))


def _unb64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def parse_scram_record(s: str) -> dict[str, ScramKeys]:
    """Parse a serialized record into keys by MongooseIM hash name. Raises ValueError."""
    try:
        if s.startswith(_MULTI_PREFIX):
            fields = s[len(_MULTI_PREFIX) :].split(",")
            iterations = int(fields[0])
            out: dict[str, ScramKeys] = {}
            for field in fields[1:]:
                name = _PREFIX_TO_HASH.get(field[:10])
                if name is None:
                    raise ValueError(f"unknown SCRAM hash section {field[:10]!r}")
                salt, stored, server = field[10:].split("|")
                out[name] = ScramKeys(
                    name, _unb64(salt), iterations, _unb64(stored), _unb64(server)
                )
        elif s.startswith(_LEGACY_PREFIX):
            stored, server, salt, it = s[len(_LEGACY_PREFIX) :].split(",")
            out = {"sha": ScramKeys("sha", _unb64(salt), int(it), _unb64(stored), _unb64(server))}
        else:
            raise ValueError("not a SCRAM record")
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"malformed SCRAM record: {e}") from None
    if not out:
        raise ValueError("malformed SCRAM record: no hash")
    for k in out.values():
        if k.iterations < 1 or len(k.stored_key) != _DIGEST_SIZES[k.hash_name]:
            raise ValueError("malformed SCRAM record: bad iteration count or key size")
    return out


def waste_a_check(hashes: Sequence[str], iterations: int) -> None:
    """Spend what ``verify_password`` spends on a SCRAM record of these ``hashes`` (its first
    hash's PBKDF2), for a user who has none: a login that fails at once for an unknown name
    and after a PBKDF2 for a known one tells which names exist (what SCRAM's fake salts
    for unknown users, RFC 5802 §5.1, hide; 10 000 iterations are 3 ms of SHA-1 here,
    measurable over a network)."""
    first = next((h for h in _HASHES if h in hashes), None)
    if first is not None:
        hashlib.pbkdf2_hmac(hashlib_name(first), b"", bytes(SALT_LENGTH), iterations)


def _prep_or_raw(s: str) -> bytes:
    try:
        return saslprep(s).encode("utf-8")
    except SaslPrepError:
        return s.encode("utf-8")


def verify_password(stored_plain: str | None, pass_details: str | None, password: str) -> bool:
    """Check a password against a users-table row (plain or SCRAM storage), in constant time.

    SCRAM storage: recompute StoredKey with the stored salt/iterations of the first hash in
    MongooseIM order and compare. Plain storage: compare the SASLprep'd forms (raw forms when
    SASLprep rejects one of them).
    """
    record = pass_details if pass_details else None
    if record is None and is_scram_record(stored_plain):
        record = stored_plain  # older ejabberd-style rows keep SCRAM in `password`
    if record is not None:
        try:
            keys = parse_scram_record(record)
        except ValueError:
            return False
        k = next(keys[h] for h in _HASHES if h in keys)
        try:
            candidate = keys_from_plain(password, k.hash_name, k.salt, k.iterations)
        except SaslPrepError:
            return False
        return hmac.compare_digest(candidate.stored_key, k.stored_key)
    if stored_plain is None or stored_plain == "":
        return False
    return hmac.compare_digest(_prep_or_raw(stored_plain), _prep_or_raw(password))
