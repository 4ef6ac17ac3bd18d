"""mod_auth_token's token format (docs/auth.md, "Token format")."""

from __future__ import annotations

import calendar
import hashlib
import hmac

import pytest

from suricate.modules.mod_auth_token.token import Token, TokenError, parse, serialize

KEY = b"k" * 32


def test_fields_as_documented() -> None:
    unix = calendar.timegm((2026, 1, 1, 0, 0, 0))
    raw = serialize(Token("refresh", "alice@localhost", unix, 6), KEY)
    kind, jid, expires, seq, mac = raw.split(b"\0")
    assert (kind, jid, seq) == (b"refresh", b"alice@localhost", b"6")
    # Erlang's gregorian seconds: 2026-01-01 is 63934444800 (1970 is 62167219200).
    assert expires == b"63934444800"
    body = raw.rpartition(b"\0")[0]
    assert mac == hmac.new(KEY, body, hashlib.sha384).hexdigest().encode()
    assert len(mac) == 96
    assert parse(raw, KEY) == Token("refresh", "alice@localhost", unix, 6)
    access = serialize(Token("access", "alice@localhost", unix), KEY)
    assert access.count(b"\0") == 3 and parse(access, KEY).seq_no is None


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace(b"alice", b"alicf"),
    lambda t: t[:-1] + (b"0" if t[-1:] != b"0" else b"1"),
    lambda t: t.replace(b"refresh", b"access"),
    lambda t: b"",
    lambda t: t.rpartition(b"\0")[0],
])
def test_any_change_is_refused(mangle: object) -> None:
    raw = serialize(Token("refresh", "alice@localhost", 2_000_000_000, 1), KEY)
    with pytest.raises(TokenError):
        parse(mangle(raw), KEY)  # type: ignore[operator]
    with pytest.raises(TokenError):
        parse(raw, b"another key")
