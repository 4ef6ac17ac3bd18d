"""Password records in MongooseIM's SCRAM serialization, and password checks."""

from __future__ import annotations

import base64

import pytest

from suricate.sasl.passwords import (
    HASH_NAMES,
    SaslPrepError,
    ScramKeys,
    format_scram_record,
    keys_from_plain,
    make_scram_record,
    parse_scram_record,
    saslprep,
    verify_password,
)

RFC5802_SALT = base64.b64decode("QSXCR+Q6sek8bf92")


def test_keys_match_rfc5802_example() -> None:
    # RFC 5802 §5: user "user", password "pencil", SHA-1, i=4096; the server signature in the
    # example is reproduced in test_sasl_scram; here, the keys' shape and determinism.
    k = keys_from_plain("pencil", "sha", RFC5802_SALT, 4096)
    assert len(k.stored_key) == len(k.server_key) == 20
    assert k == keys_from_plain("pencil", "sha", RFC5802_SALT, 4096)
    assert k != keys_from_plain("pencil2", "sha", RFC5802_SALT, 4096)


def test_record_layout() -> None:
    rec = make_scram_record("padthai", HASH_NAMES, 4096)
    fields = rec.split(",")
    assert fields[0] == "==MULTI_SCRAM=="
    assert fields[1] == "4096"
    prefixes = [f[:10] for f in fields[2:]]
    assert prefixes == ["===SHA1===", "==SHA224==", "==SHA256==", "==SHA384==", "==SHA512=="]
    for f in fields[2:]:
        salt, stored, server = f[10:].split("|")
        assert len(base64.b64decode(salt)) == 16
        assert base64.b64decode(stored) and base64.b64decode(server)


def test_record_roundtrip_and_subset() -> None:
    rec = make_scram_record("padthai", ["sha256", "sha"], 1000)
    assert rec.split(",")[2].startswith("===SHA1===")  # fixed order whatever was asked
    keys = parse_scram_record(rec)
    assert set(keys) == {"sha", "sha256"}
    k = keys["sha256"]
    assert k.iterations == 1000 and len(k.stored_key) == 32
    assert keys_from_plain("padthai", "sha256", k.salt, 1000) == k
    assert keys["sha"].salt != k.salt  # a salt per hash, as MongooseIM
    assert format_scram_record(keys) == rec


def test_parse_mongooseim_written_record() -> None:
    # Built by hand the way MongooseIM serializes: prefix, salt|stored|server, base64.
    k = keys_from_plain("padthai", "sha224", b"0123456789abcdef", 4096)
    b = base64.b64encode
    rec = "==MULTI_SCRAM==,4096,==SHA224==" + "|".join(
        x.decode() for x in (b(k.salt), b(k.stored_key), b(k.server_key))
    )
    assert parse_scram_record(rec) == {"sha224": k}


def test_parse_legacy_record() -> None:
    k = keys_from_plain("misio", "sha", b"saltsaltsaltsalt", 4096)
    b = lambda x: base64.b64encode(x).decode()  # noqa: E731
    rec = f"==SCRAM==,{b(k.stored_key)},{b(k.server_key)},{b(k.salt)},4096"
    assert parse_scram_record(rec) == {"sha": k}
    assert verify_password(rec, None, "misio")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "==MULTI_SCRAM==,x,===SHA1===a|b|c",
        "==MULTI_SCRAM==,4096",
        "==MULTI_SCRAM==,4096,==MD5=====a|b|c",
        "==MULTI_SCRAM==,4096,===SHA1===!!|b|c",
        "==MULTI_SCRAM==,4096,===SHA1===AAAA|AAAA|AAAA",  # wrong key size
        "==MULTI_SCRAM==,0,===SHA1===AAAA|" + "A" * 27 + "=|AAAA",
    ],
)
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_scram_record(bad)


def test_format_needs_one_iteration_count() -> None:
    a = ScramKeys("sha", b"s", 1, b"x" * 20, b"y" * 20)
    c = ScramKeys("sha256", b"s", 2, b"x" * 32, b"y" * 32)
    with pytest.raises(ValueError):
        format_scram_record({"sha": a, "sha256": c})


def test_make_rejects_unknown_hash() -> None:
    with pytest.raises(ValueError):
        make_scram_record("x", ["md5"], 10)


def test_verify_scram_storage() -> None:
    rec = make_scram_record("correct horse", ["sha512"], 100)
    assert verify_password("", rec, "correct horse")
    assert verify_password(None, rec, "correct horse")
    assert not verify_password("", rec, "correct horsE")
    assert not verify_password("", "==MULTI_SCRAM==,broken", "correct horse")


def test_verify_plain_storage() -> None:
    assert verify_password("secret", None, "secret")
    assert not verify_password("secret", None, "Secret")
    assert not verify_password(None, None, "secret")
    assert not verify_password("", None, "")
    # SASLprep: non-ASCII space maps to SPACE, soft hyphen maps to nothing (RFC 4013 §2.1)
    assert verify_password("a b", None, "a\u00a0b")
    assert verify_password("ab", None, "a\u00adb")


def test_saslprep_rfc4013_examples() -> None:
    # RFC 4013 §3
    assert saslprep("I\u00adX") == "IX"
    assert saslprep("user") == "user"
    assert saslprep("USER") == "USER"
    assert saslprep("\u00aa") == "a"
    assert saslprep("\u2168") == "IX"
    with pytest.raises(SaslPrepError):
        saslprep("\u0007")
    with pytest.raises(SaslPrepError):
        saslprep("\u0627\u0031")
    # unicode passwords survive the round trip through SCRAM storage
    rec = make_scram_record("пароль\u2168", ["sha256"], 50)
    assert verify_password("", rec, "пароль\u2168")
    assert verify_password("", rec, "парольIX")
    with pytest.raises(SaslPrepError):
        make_scram_record("bad\u0000", ["sha"], 10)
