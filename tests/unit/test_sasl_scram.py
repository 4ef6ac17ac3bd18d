"""SCRAM-SHA-*(-PLUS) server mechanisms driven as pure objects (RFC 5802, 7677, XEP-0474)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest

from suricate.sasl import (
    Challenge,
    CredentialRecord,
    Failure,
    NeedCredentials,
    SaslContext,
    SaslStateError,
    Success,
    create_mechanism,
    ssdp_hash,
)
from suricate.sasl.passwords import format_scram_record, keys_from_plain, make_scram_record
from suricate.sasl.scram_client import ScramClient, ScramClientError

SERVER = "example.org"


@dataclass
class FakeTLS:
    tls_version: str = "TLSv1.3"
    data: dict[str, bytes] = field(
        default_factory=lambda: {
            "tls-exporter": b"E" * 32,
            "tls-server-end-point": b"S" * 32,
            "tls-unique": b"U" * 12,
        }
    )

    def binding(self, cb_type: str) -> bytes | None:
        return self.data.get(cb_type)


def record_with(password: str, hash_name: str, salt_b64: str, iterations: int) -> CredentialRecord:
    keys = keys_from_plain(password, hash_name, base64.b64decode(salt_b64), iterations)
    return CredentialRecord("", format_scram_record({hash_name: keys}))


def run(
    mech_name: str,
    ctx: SaslContext,
    client: ScramClient,
    record: CredentialRecord | None,
    **kw: str,
) -> Success | Failure:
    mech = create_mechanism(mech_name, ctx, **kw)
    r = mech.step(client.first())
    if isinstance(r, Failure):
        return r
    assert isinstance(r, NeedCredentials)
    r = mech.credentials(record)
    assert isinstance(r, Challenge)
    r = mech.step(client.final(r.data))
    assert isinstance(r, Success | Failure)
    return r


# --- the RFC examples, byte for byte ----------------------------------------------------------


def test_rfc5802_example_sha1() -> None:
    # RFC 5802 §5
    mech = create_mechanism("SCRAM-SHA-1", SaslContext(SERVER), server_nonce="3rfcNHYJY1ZVvWVs7j")
    assert mech.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL") == NeedCredentials("user")
    r = mech.credentials(record_with("pencil", "sha", "QSXCR+Q6sek8bf92", 4096))
    assert r == Challenge(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    r = mech.step(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert r == Success("user", None, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


def test_rfc7677_example_sha256() -> None:
    # RFC 7677 §3
    mech = create_mechanism(
        "SCRAM-SHA-256", SaslContext(SERVER), server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    assert mech.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == NeedCredentials("user")
    r = mech.credentials(record_with("pencil", "sha256", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096))
    assert r == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    r = mech.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert r == Success("user", None, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_xep0474_example() -> None:
    # XEP-0474 §5.3: SCRAM-SHA-1-PLUS over tls-exporter with the "h" attribute and an extra
    # client-final extension "x".
    ctx = SaslContext(
        "example.org",
        channel_binding=FakeTLS(data={"tls-exporter": b"THIS IS FAKE CB DATA"}),
        advertised_mechanisms=["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"],
        advertised_cb_types=["tls-server-end-point", "tls-exporter"],
    )
    mech = create_mechanism(
        "SCRAM-SHA-1-PLUS", ctx, server_nonce="a09117a6-ac50-4f2f-93f1-93799c2bddf6"
    )
    cnonce = "12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6"
    assert mech.step(f"p=tls-exporter,,n=user,r={cnonce}".encode()) == NeedCredentials("user")
    r = mech.credentials(record_with("pencil", "sha", "QSXCR+Q6sek8bf92", 4096))
    assert r == Challenge(
        f"r={cnonce}a09117a6-ac50-4f2f-93f1-93799c2bddf6,s=QSXCR+Q6sek8bf92,i=4096,"
        "h=G6k/rBLDqgOhRRaCuuatSDFkJ08=".encode()
    )
    r = mech.step(
        f"c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB,"
        f"r={cnonce}a09117a6-ac50-4f2f-93f1-93799c2bddf6,"
        "x=19C6532F-1CF4-4A27-A18D-DC9CEA41BBB3,p=M/SIDjT+dfcxUh89jZEypRvFxB4=".encode()
    )
    assert r == Success("user", None, b"v=MQrMPvv7yv4x4Cq4W4Ih25EqS2c=")


def test_ssdp_hash_without_cb_list() -> None:
    import hashlib

    h = ssdp_hash("sha256", ["SCRAM-SHA-256", "PLAIN", "SCRAM-SHA-1"], [])
    expected = hashlib.sha256(b"PLAIN\x1eSCRAM-SHA-1\x1eSCRAM-SHA-256").digest()
    assert h == base64.b64encode(expected).decode()


# --- with the client helper -----------------------------------------------------------------


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"])
def test_every_hash_with_scram_storage(hash_name: str) -> None:
    rec = CredentialRecord(
        "", make_scram_record("s3cret", ["sha", "sha224", "sha256", "sha384", "sha512"], 64)
    )
    client = ScramClient(hash_name, "juliet", "s3cret")
    r = run(client.mechanism, SaslContext(SERVER, scram_iterations=64), client, rec)
    assert isinstance(r, Success) and r.username == "juliet"
    assert r.additional_data is not None and client.verify(r.additional_data)


def test_plain_storage_derives_keys_with_stable_salt() -> None:
    ctx = SaslContext(SERVER, scram_iterations=64, password_format="plain")
    rec = CredentialRecord("s3cret", None)
    client = ScramClient("SHA-256", "juliet", "s3cret")
    r = run(client.mechanism, ctx, client, rec)
    assert isinstance(r, Success) and r.additional_data and client.verify(r.additional_data)
    again = ScramClient("SHA-256", "juliet", "s3cret")
    run(again.mechanism, ctx, again, rec)
    assert again.salt == client.salt and client.iterations == 64


def test_wrong_password() -> None:
    rec = CredentialRecord("", make_scram_record("s3cret", ["sha256"], 64))
    client = ScramClient("SHA-256", "juliet", "wrong")
    assert run(client.mechanism, SaslContext(SERVER), client, rec) == Failure(
        "not-authorized", "invalid-proof"
    )


def test_unknown_user_fails_at_proof_with_stable_fake_salt() -> None:
    ctx = SaslContext(SERVER, scram_iterations=4096)
    c1 = ScramClient("SHA-256", "nobody", "x")
    assert run(c1.mechanism, ctx, c1, None) == Failure("not-authorized", "invalid-proof")
    c2 = ScramClient("SHA-256", "nobody", "x")
    run(c2.mechanism, ctx, c2, None)
    assert c1.salt == c2.salt and c1.iterations == 4096  # looks like a real, stable account
    c3 = ScramClient("SHA-256", "somebody", "x")
    run(c3.mechanism, ctx, c3, None)
    assert c3.salt != c1.salt


def test_stored_hash_missing_fails_at_proof() -> None:
    rec = CredentialRecord("", make_scram_record("s3cret", ["sha512"], 64))
    client = ScramClient("SHA-1", "juliet", "s3cret")
    assert run(client.mechanism, SaslContext(SERVER), client, rec) == Failure(
        "not-authorized", "invalid-proof"
    )


def test_username_is_prepared_and_authzid_checked() -> None:
    rec = CredentialRecord("", make_scram_record("pw", ["sha256"], 64))
    c = ScramClient("SHA-256", "Juliet", "pw", authzid="juliet@example.org")
    r = run(c.mechanism, SaslContext(SERVER), c, rec)
    assert isinstance(r, Success) and (r.username, r.authzid) == ("juliet", "juliet@example.org")
    c = ScramClient("SHA-256", "juliet", "pw", authzid="romeo@example.org")
    assert run(c.mechanism, SaslContext(SERVER), c, rec) == Failure("invalid-authzid")


def test_ssdp_attribute_sent_and_checkable() -> None:
    mechs = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"]
    ctx = SaslContext(
        SERVER, FakeTLS(), advertised_mechanisms=mechs, advertised_cb_types=["tls-exporter"]
    )
    rec = CredentialRecord("", make_scram_record("pw", ["sha256"], 64))
    c = ScramClient("SHA-256", "juliet", "pw")
    assert isinstance(run(c.mechanism, ctx, c, rec), Success)
    assert c.ssdp_hash == ssdp_hash("SHA-256", mechs, ["tls-exporter"])


# --- channel binding --------------------------------------------------------------------------


def plus_ctx(tls: FakeTLS | None = None, cb_types: tuple[str, ...] = ()) -> SaslContext:
    return SaslContext(
        SERVER,
        channel_binding=tls or FakeTLS(),
        advertised_mechanisms=["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
        advertised_cb_types=cb_types,
        scram_iterations=64,
    )


REC = CredentialRecord("pw", None)


@pytest.mark.parametrize(
    ("version", "cb_type"),
    [
        ("TLSv1.3", "tls-exporter"),
        ("TLSv1.3", "tls-server-end-point"),
        ("TLSv1.2", "tls-unique"),
        ("TLSv1.2", "tls-server-end-point"),
    ],
)
def test_plus_success(version: str, cb_type: str) -> None:
    tls = FakeTLS(tls_version=version)
    client = ScramClient("SHA-256", "juliet", "pw", cb_type, tls.data[cb_type])
    assert client.mechanism == "SCRAM-SHA-256-PLUS"
    r = run(client.mechanism, plus_ctx(tls), client, REC)
    assert isinstance(r, Success) and r.additional_data and client.verify(r.additional_data)


def test_plus_tampered_cb_data() -> None:
    client = ScramClient("SHA-256", "juliet", "pw", "tls-exporter", b"X" * 32)
    assert run(client.mechanism, plus_ctx(), client, REC) == Failure(
        "not-authorized", "channel-bindings-dont-match"
    )


def test_tls_unique_refused_on_tls13() -> None:
    client = ScramClient("SHA-256", "juliet", "pw", "tls-unique", b"U" * 12)
    assert run(client.mechanism, plus_ctx(), client, REC) == Failure(
        "not-authorized", "unsupported-channel-binding-type"
    )


def test_tls_exporter_not_offered_on_tls12() -> None:
    tls = FakeTLS(tls_version="TLSv1.2")
    client = ScramClient("SHA-256", "juliet", "pw", "tls-exporter", b"E" * 32)
    r = run(client.mechanism, plus_ctx(tls), client, REC)
    assert isinstance(r, Failure) and r.condition == "not-authorized"


def test_cb_type_not_advertised() -> None:
    client = ScramClient("SHA-256", "juliet", "pw", "tls-server-end-point", b"S" * 32)
    r = run(client.mechanism, plus_ctx(cb_types=("tls-exporter",)), client, REC)
    assert r == Failure("not-authorized", "unsupported-channel-binding-type")


def test_cb_type_unavailable_from_tls_layer() -> None:
    tls = FakeTLS(data={"tls-server-end-point": b"S"})
    client = ScramClient("SHA-256", "juliet", "pw", "tls-exporter", b"E" * 32)
    r = run(client.mechanism, plus_ctx(tls), client, REC)
    assert r == Failure("not-authorized", "unsupported-channel-binding-type")


def test_plus_without_tls() -> None:
    client = ScramClient("SHA-256", "juliet", "pw", "tls-exporter", b"E" * 32)
    r = run(client.mechanism, SaslContext(SERVER), client, REC)
    assert r == Failure("not-authorized", "channel-binding-not-supported")


def test_y_flag_downgrade_refused() -> None:
    # RFC 5802 §6: the client can bind but saw no -PLUS; we did advertise one over TLS.
    client = ScramClient("SHA-256", "juliet", "pw", cb_flag="y")
    r = run("SCRAM-SHA-256", plus_ctx(), client, REC)
    assert r == Failure("not-authorized", "server-does-support-channel-binding")


def test_y_flag_accepted_when_no_plus_offered() -> None:
    ctx = SaslContext(SERVER, FakeTLS(), advertised_mechanisms=["SCRAM-SHA-256"])
    client = ScramClient("SHA-256", "juliet", "pw", cb_flag="y")
    assert isinstance(run("SCRAM-SHA-256", ctx, client, REC), Success)
    ctx = SaslContext(SERVER, None, advertised_mechanisms=["SCRAM-SHA-256-PLUS"])
    client = ScramClient("SHA-256", "juliet", "pw", cb_flag="y")
    assert isinstance(run("SCRAM-SHA-256", ctx, client, REC), Success)


def test_p_flag_on_non_plus_and_n_on_plus() -> None:
    mech = create_mechanism("SCRAM-SHA-256", plus_ctx())
    r = mech.step(b"p=tls-exporter,,n=juliet,r=abc")
    assert isinstance(r, Failure) and r.condition == "malformed-request"
    mech = create_mechanism("SCRAM-SHA-256-PLUS", plus_ctx())
    r = mech.step(b"n,,n=juliet,r=abc")
    assert isinstance(r, Failure) and r.condition == "malformed-request"


def test_cb_data_swapped_between_flags() -> None:
    # c= must carry the same gs2 header as client-first: 'n' then 'y,,' in c= fails.
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER, scram_iterations=64))
    client = ScramClient("SHA-256", "juliet", "pw")
    mech.step(client.first())
    r = mech.credentials(REC)
    assert isinstance(r, Challenge)
    final = client.final(r.data).replace(b"c=biws", b"c=eSws")
    assert mech.step(final) == Failure("not-authorized", "channel-bindings-dont-match")


# --- malformed messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        b"\xff\xfe",
        b"n,,",
        b"x,,n=user,r=abc",
        b"n,b=foo,n=user,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user",
        b"n,,n=us=2Xer,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a\x01b",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,r=abc,1=bad",
        b"p=tls exporter,,n=user,r=abc",
        b"n,a=,n=user,r=abc",
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER))
    r = mech.step(first)
    assert isinstance(r, Failure) and r.condition == "malformed-request", r


def test_invalid_username() -> None:
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER))
    assert mech.step(b"n,,n=a b,r=abc") == Failure("not-authorized", "invalid-username-encoding")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda f: f.split(b",p=")[0],  # no proof
        lambda f: f.replace(b"c=biws,", b""),  # no channel binding
        lambda f: f.replace(b"c=biws", b"c=b!ws"),  # bad base64
        lambda f: f[: f.index(b",p=") + 3] + b"AAAA",  # proof of the wrong length
        lambda f: f[: f.index(b",p=") + 3] + b"%%%%",
        lambda f: b"\xff" + f,
    ],
)
def test_malformed_client_final(mangle: object) -> None:
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER, scram_iterations=64))
    client = ScramClient("SHA-256", "juliet", "pw")
    mech.step(client.first())
    r = mech.credentials(REC)
    assert isinstance(r, Challenge)
    final = mangle(client.final(r.data))  # type: ignore[operator]
    r2 = mech.step(final)
    assert isinstance(r2, Failure) and r2.condition == "malformed-request", r2


def test_nonce_mismatch() -> None:
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER, scram_iterations=64))
    client = ScramClient("SHA-256", "juliet", "pw", nonce="clientnonce")
    mech.step(client.first())
    r = mech.credentials(REC)
    assert isinstance(r, Challenge)
    final = client.final(r.data).replace(b"r=clientnonce", b"r=clientnoncX")
    assert mech.step(final) == Failure("not-authorized", "nonce mismatch")


def test_empty_initial_response_gets_empty_challenge() -> None:
    mech = create_mechanism("SCRAM-SHA-1", SaslContext(SERVER))
    assert mech.step(b"") == Challenge(b"")
    assert mech.step(b"n,,n=user,r=abc") == NeedCredentials("user")


def test_out_of_order_use_is_our_bug() -> None:
    mech = create_mechanism("SCRAM-SHA-1", SaslContext(SERVER))
    with pytest.raises(SaslStateError):
        mech.credentials(REC)
    mech.step(b"n,,n=user,r=abc")
    with pytest.raises(SaslStateError):
        mech.step(b"c=biws,r=abc,p=AAAA")
    failed = create_mechanism("SCRAM-SHA-1", SaslContext(SERVER))
    failed.step(b"garbage")
    with pytest.raises(SaslStateError):
        failed.step(b"n,,n=user,r=abc")


def test_client_rejects_foreign_nonce() -> None:
    client = ScramClient("SHA-1", "user", "pencil", nonce="abc")
    with pytest.raises(ScramClientError):
        client.final(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096")
    assert not client.verify(b"v=AAAA")


def test_non_ascii_username_and_authzid() -> None:
    rec = CredentialRecord("pässwörd", None)
    c = ScramClient("SHA-256", "Jüliet", "pässwörd", authzid="jüliet@example.org")
    r = run(c.mechanism, SaslContext(SERVER, scram_iterations=64), c, rec)
    assert isinstance(r, Success) and r.username == "jüliet"
    assert r.additional_data is not None and c.verify(r.additional_data)


def test_escaped_saslname() -> None:
    mech = create_mechanism("SCRAM-SHA-256", SaslContext(SERVER))
    # '=2C' is ',' which a localpart may hold; '=3D' is '='.
    assert mech.step(b"n,,n=a=2Cb=3Dc,r=abc") == NeedCredentials("a,b=c")
