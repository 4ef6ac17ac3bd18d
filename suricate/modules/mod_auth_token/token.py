"""The tokens of MongooseIM's token-based reconnection (X-OAUTH), built and checked.

Format (MongooseIM's "Token-based reconnection" open extension, section "Token format";
``\\0`` is the byte 0)::

    access:   'access'  \\0 BARE_JID \\0 EXPIRES_AT \\0 MAC
    refresh:  'refresh' \\0 BARE_JID \\0 EXPIRES_AT \\0 SEQUENCE_NO \\0 MAC

exchanged base64-encoded (the token IQ's <access_token/> and <refresh_token/>; the X-OAUTH
<auth/> element carries the same base64 text, i.e. the SASL message is the token itself).

Where the documentation only shows examples, Suricate chooses:

* EXPIRES_AT: decimal seconds since 0000-01-01 00:00 UTC (Erlang's "gregorian seconds", which
  the documentation's example values are: 63621883764 is in 2016), i.e. Unix time +
  62167219200.
* MAC (the documentation's DATA): lowercase hex of HMAC-SHA-384 (the hash the mod_auth_token
  documentation names; 96 hex digits as in its examples) keyed with mod_keystore's
  ``token_secret``, over every field before it joined with ``\\0`` (the token minus
  ``\\0 MAC``). Comparison is constant-time.

Provision tokens ('provision' ...) are not issued nor accepted by Suricate.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["GREGORIAN_OFFSET", "Token", "TokenError", "parse", "serialize"]

#: Seconds from 0000-01-01 to 1970-01-01 (proleptic Gregorian calendar).
GREGORIAN_OFFSET = 62167219200


class TokenError(ValueError):
    """Not a well-formed token, or a MAC that does not match."""


@dataclass(frozen=True, slots=True)
class Token:
    type: str  # "access" or "refresh"
    jid: str  # bare JID
    expires_at: int  # Unix time
    seq_no: int | None = None  # refresh tokens only


def _body(token: Token) -> bytes:
    fields = [token.type, token.jid, str(token.expires_at + GREGORIAN_OFFSET)]
    if token.type == "refresh":
        fields.append(str(token.seq_no))
    return b"\x00".join(f.encode("utf-8") for f in fields)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha384).hexdigest().encode("ascii")


def serialize(token: Token, key: bytes) -> bytes:
    """The binary token (base64-encode it for the wire)."""
    if token.type not in ("access", "refresh") or (token.type == "refresh") != (
            token.seq_no is not None):
        raise ValueError(f"cannot serialize {token}")
    body = _body(token)
    return body + b"\x00" + _mac(key, body)


def parse(data: bytes, key: bytes) -> Token:
    """The token in ``data`` (binary), its MAC checked. Raises TokenError."""
    body, sep, mac = data.rpartition(b"\x00")
    if not sep:
        raise TokenError("no MAC")
    if not hmac.compare_digest(_mac(key, body), mac):
        raise TokenError("bad MAC")
    fields = body.split(b"\x00")
    try:
        kind = fields[0].decode("ascii")
        if kind == "access" and len(fields) == 3:
            seq = None
        elif kind == "refresh" and len(fields) == 4:
            seq = int(fields[3])
        else:
            raise TokenError(f"unknown token type or field count: {kind!r}")
        jid = fields[1].decode("utf-8")
        expires = int(fields[2]) - GREGORIAN_OFFSET
    except (UnicodeDecodeError, ValueError) as e:
        raise TokenError(str(e)) from e
    return Token(kind, jid, expires, seq)
