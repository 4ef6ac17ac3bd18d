"""PLAIN, ANONYMOUS, the mechanism registry and channel-binding helpers."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from suricate.sasl import (
    Challenge,
    CredentialRecord,
    Failure,
    NeedCredentials,
    SaslContext,
    SaslStateError,
    Success,
    UnknownMechanism,
    channel_binding_types,
    create_mechanism,
    mechanism_names,
    server_end_point_hash,
)
from suricate.sasl.passwords import make_scram_record

CTX = SaslContext("example.org")
PLAIN_REC = CredentialRecord("pencil", None)


def plain(data: bytes, record: CredentialRecord | None = PLAIN_REC) -> object:
    mech = create_mechanism("PLAIN", CTX)
    r = mech.step(data)
    if isinstance(r, NeedCredentials):
        return mech.credentials(record)
    return r


# --- PLAIN (RFC 4616) -------------------------------------------------------------------------


def test_plain_success() -> None:
    assert plain(b"\x00juliet\x00pencil") == Success("juliet", None, None)


def test_plain_scram_storage() -> None:
    rec = CredentialRecord("", make_scram_record("pencil", ["sha256"], 64))
    assert plain(b"\x00juliet\x00pencil", rec) == Success("juliet", None, None)
    assert plain(b"\x00juliet\x00pencil!", rec) == Failure("not-authorized")


def test_plain_username_prepared() -> None:
    mech = create_mechanism("PLAIN", CTX)
    assert mech.step(b"\x00JULIET\x00pencil") == NeedCredentials("juliet")
    mech = create_mechanism("PLAIN", CTX)
    assert mech.step(b"\x00juliet@Example.org\x00pencil") == NeedCredentials("juliet")


@pytest.mark.parametrize(
    ("authzid", "expected"),
    [
        (b"juliet@example.org", Success("juliet", "juliet@example.org", None)),
        (b"Juliet@EXAMPLE.org", Success("juliet", "Juliet@EXAMPLE.org", None)),
        (b"romeo@example.org", Failure("invalid-authzid")),
        (b"juliet@example.net", Failure("invalid-authzid")),
        (b"juliet@example.org/balcony", Failure("invalid-authzid")),
        (b"example.org", Failure("invalid-authzid")),
        (b"not a jid@", Failure("invalid-authzid")),
    ],
)
def test_plain_authzid(authzid: bytes, expected: object) -> None:
    assert plain(authzid + b"\x00juliet\x00pencil") == expected


def test_plain_failures() -> None:
    assert plain(b"\x00juliet\x00wrong") == Failure("not-authorized")
    assert plain(b"\x00juliet\x00pencil", None) == Failure("not-authorized")
    assert plain(b"\x00ju liet\x00pencil") == Failure("not-authorized")
    assert plain(b"\x00juliet@example.net\x00pencil") == Failure("not-authorized")


@pytest.mark.parametrize(
    "data",
    [
        b"juliet\x00pencil",
        b"\x00juliet\x00pen\x00cil",
        b"\x00\x00pencil",
        b"\x00juliet\x00",
        b"\x00juli\xffet\x00pencil",
        b"\x00" + b"j" * 2000 + b"\x00pencil",
    ],
)
def test_plain_malformed(data: bytes) -> None:
    r = plain(data)
    assert isinstance(r, Failure) and r.condition == "malformed-request"


def test_plain_without_initial_response() -> None:
    mech = create_mechanism("PLAIN", CTX)
    assert mech.step(b"") == Challenge(b"")
    assert mech.step(b"\x00juliet\x00pencil") == NeedCredentials("juliet")
    assert mech.credentials(PLAIN_REC) == Success("juliet", None, None)
    with pytest.raises(SaslStateError):
        mech.step(b"\x00juliet\x00pencil")


def test_plain_empty_after_empty_challenge() -> None:
    mech = create_mechanism("PLAIN", CTX)
    mech.step(b"")
    r = mech.step(b"")
    assert isinstance(r, Failure) and r.condition == "malformed-request"


# --- ANONYMOUS (RFC 4505) ---------------------------------------------------------------------


def test_anonymous() -> None:
    a = create_mechanism("ANONYMOUS", CTX).step(b"")
    b = create_mechanism("ANONYMOUS", CTX).step(b"sirhc@example.com")
    assert isinstance(a, Success) and isinstance(b, Success)
    assert a.username != b.username and len(a.username) == 32
    r = create_mechanism("ANONYMOUS", CTX).step(b"\xff")
    assert isinstance(r, Failure) and r.condition == "malformed-request"
    r = create_mechanism("ANONYMOUS", CTX).step(b"x" * 256)
    assert isinstance(r, Failure)


# --- registry ---------------------------------------------------------------------------------


def test_unknown_mechanism() -> None:
    with pytest.raises(UnknownMechanism):
        create_mechanism("DIGEST-MD5", CTX)


def test_failure_conditions_are_rfc6120() -> None:
    with pytest.raises(ValueError):
        Failure("bad-password")


ALL = [
    "scram_sha512_plus", "scram_sha512", "scram_sha384_plus", "scram_sha384",
    "scram_sha256_plus", "scram_sha256", "scram_sha224_plus", "scram_sha224",
    "scram_sha1_plus", "scram_sha1", "plain", "anonymous", "oauth", "external",
]  # fmt: skip


def test_mechanism_names_tls() -> None:
    assert mechanism_names(ALL, True, ["tls-exporter"]) == [
        "SCRAM-SHA-512-PLUS", "SCRAM-SHA-512", "SCRAM-SHA-384-PLUS", "SCRAM-SHA-384",
        "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-224-PLUS", "SCRAM-SHA-224",
        "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS", "EXTERNAL",
    ]  # fmt: skip


def test_mechanism_names_no_tls_or_no_cb() -> None:
    expected = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    cfg = ["scram_sha256_plus", "scram_sha256", "scram_sha1_plus", "scram_sha1", "plain"]
    assert mechanism_names(cfg, False, ["tls-exporter"]) == expected
    assert mechanism_names(cfg, True, []) == expected


def test_mechanism_names_scram_storage_hashes() -> None:
    got = mechanism_names(ALL, True, ["tls-exporter"], "scram", ["sha256"])
    assert got == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "ANONYMOUS", "EXTERNAL"]
    got = mechanism_names(ALL, False, [], "plain", ["sha256"])
    assert got[:2] == ["SCRAM-SHA-512", "SCRAM-SHA-384"]


def test_mechanism_names_unimplemented_and_unknown() -> None:
    got = mechanism_names(["external", "plain"], True, [], implemented_only=False)
    assert got == ["EXTERNAL", "PLAIN"]
    with pytest.raises(ValueError):
        mechanism_names(["cram_md5"], True, [])


# --- channel binding --------------------------------------------------------------------------


def test_channel_binding_types() -> None:
    assert channel_binding_types("TLSv1.3") == ["tls-exporter", "tls-server-end-point"]
    assert channel_binding_types("TLSv1.2") == ["tls-unique", "tls-server-end-point"]
    assert channel_binding_types("TLSv1.1") == ["tls-server-end-point"]


def make_cert(key: object, algo: hashes.HashAlgorithm | None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.org")])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    cert = builder.sign(key, algo)  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.DER)


def test_server_end_point_hash() -> None:
    # RFC 5929 §4.1: the certificate's signature hash; SHA-1 (and MD5) become SHA-256.
    key = ec.generate_private_key(ec.SECP256R1())
    der = make_cert(key, hashes.SHA384())
    assert server_end_point_hash(der) == hashlib.sha384(der).digest()
    der = make_cert(key, hashes.SHA256())
    assert server_end_point_hash(der) == hashlib.sha256(der).digest()
    # cryptography no longer signs with SHA-1: relabel an RSA/SHA-256 certificate as
    # sha1WithRSAEncryption (same OID length; the signature is not checked here).
    rsa_der = make_cert(rsa.generate_private_key(65537, 1024), hashes.SHA256())
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    assert rsa_der.count(sha256_rsa) == 2
    der = rsa_der.replace(sha256_rsa, bytes.fromhex("06092a864886f70d010105"))
    assert x509.load_der_x509_certificate(der).signature_hash_algorithm.name == "sha1"  # type: ignore[union-attr]
    assert server_end_point_hash(der) == hashlib.sha256(der).digest()


def test_server_end_point_hash_undefined_for_ed25519() -> None:
    der = make_cert(ed25519.Ed25519PrivateKey.generate(), None)
    with pytest.raises(ValueError):
        server_end_point_hash(der)
