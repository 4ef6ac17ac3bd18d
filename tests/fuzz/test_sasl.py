"""SASL mechanisms (RFC 4616, RFC 5802) driven the way the c2s drives them, with arbitrary
client data and out-of-order messages: every step returns a Challenge, NeedCredentials, Success
or Failure with an RFC 6120 §6.5 condition; a bad proof never succeeds."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from suricate import sasl
from suricate.sasl.passwords import make_scram_record
from suricate.sasl.scram_client import ScramClient

MECHANISMS = ["PLAIN", "ANONYMOUS", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
              "SCRAM-SHA-256-PLUS"]
CONTEXT = sasl.SaslContext(server="localhost", scram_iterations=64)
PASSWORD = "pencil"
_RECORD = make_scram_record(PASSWORD, iterations=64)


def _record() -> sasl.CredentialRecord:
    return sasl.CredentialRecord(None, _RECORD)


def _drive(name: str, messages: list[bytes], known_user: bool) -> list[sasl.Result]:
    """Feed ``messages`` as the c2s would: stop at Success or Failure, answer NeedCredentials."""
    mech = sasl.create_mechanism(name, CONTEXT)
    results: list[sasl.Result] = []
    for data in messages:
        result = mech.step(data)
        while isinstance(result, sasl.NeedCredentials):
            result = mech.credentials(_record() if known_user else None)
        results.append(result)
        if isinstance(result, sasl.Success | sasl.Failure):
            break
    return results


_scramish = st.builds(
    lambda parts: ",".join(parts).encode(),
    st.lists(st.one_of(st.sampled_from(["n", "y", "p=tls-exporter", "", "n=user", "r=abc",
                                        "c=biws", "p=" + base64.b64encode(b"x" * 32).decode(),
                                        "a=user@localhost", "m=ext", "n=us=2Cer", "n=bad=zz",
                                        "s=QSXCR+Q6sek8bf92", "i=4096", "v=x"]),
                       st.text(max_size=8)), max_size=8))


@given(st.sampled_from(MECHANISMS), st.lists(st.one_of(st.binary(max_size=200), _scramish),
                                             min_size=1, max_size=4), st.booleans())
def test_arbitrary_client_messages_end_in_a_defined_result(name: str, messages: list[bytes],
                                                           known_user: bool) -> None:
    for result in _drive(name, messages, known_user):
        assert isinstance(result, sasl.Challenge | sasl.Success | sasl.Failure)
        if isinstance(result, sasl.Failure):
            assert result.condition in sasl.CONDITIONS
        if isinstance(result, sasl.Success) and name.startswith("SCRAM"):
            raise AssertionError("SCRAM succeeded without a proof")


@given(st.sampled_from(["SCRAM-SHA-1", "SCRAM-SHA-256"]), st.binary(min_size=1, max_size=64),
       st.integers(0, 3))
def test_a_tampered_scram_final_message_never_succeeds(name: str, noise: bytes,
                                                       how: int) -> None:
    client = ScramClient(name.removeprefix("SCRAM-"), "user", PASSWORD)
    mech = sasl.create_mechanism(name, CONTEXT)
    assert isinstance(mech.step(client.first()), sasl.NeedCredentials)
    challenge = mech.credentials(_record())
    assert isinstance(challenge, sasl.Challenge)
    final = client.final(challenge.data)
    cut = final.rfind(b",p=")
    if how == 0:  # a bad proof of the right length
        proof = bytearray(base64.b64decode(final[cut + 3:]))
        proof[noise[0] % len(proof)] ^= 1 | noise[-1]
        final = final[:cut + 3] + base64.b64encode(bytes(proof))
    elif how == 1:  # bytes inserted anywhere
        at = noise[0] % len(final)
        final = final[:at] + noise + final[at:]
    elif how == 2:  # truncated
        final = final[:noise[0] % len(final)]
    else:  # the client-first message again, out of order
        final = client.first()
    result = mech.step(final)
    assert isinstance(result, sasl.Failure), result


def test_the_untampered_exchange_succeeds() -> None:
    client = ScramClient("SHA-256", "user", PASSWORD)
    mech = sasl.create_mechanism("SCRAM-SHA-256", CONTEXT)
    mech.step(client.first())
    challenge = mech.credentials(_record())
    assert isinstance(challenge, sasl.Challenge)
    result = mech.step(client.final(challenge.data))
    assert isinstance(result, sasl.Success) and result.username == "user"
    assert result.additional_data is not None and client.verify(result.additional_data)


def test_the_final_message_before_the_first_is_malformed() -> None:
    mech = sasl.create_mechanism("SCRAM-SHA-1", CONTEXT)
    result = mech.step(b"c=biws,r=abc,p=" + base64.b64encode(b"x" * 20))
    assert isinstance(result, sasl.Failure) and result.condition == "malformed-request"


def test_a_non_ascii_nonce_in_the_final_message_is_refused() -> None:
    # Found by fuzzing: the nonce comparison encoded the client's copy as ASCII and raised
    # UnicodeEncodeError out of the mechanism (the c2s then closed with internal-server-error).
    client = ScramClient("SHA-1", "user", PASSWORD)
    mech = sasl.create_mechanism("SCRAM-SHA-1", CONTEXT)
    mech.step(client.first())
    challenge = mech.credentials(_record())
    assert isinstance(challenge, sasl.Challenge)
    final = client.final(challenge.data).replace(b",r=", b",r=\xc2\x80", 1)
    result = mech.step(final)
    assert isinstance(result, sasl.Failure) and result.condition == "not-authorized"
