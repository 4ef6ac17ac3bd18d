"""The c2s negotiator without a socket or a server: elements in, actions out (RFC 6120 §6-§7,
XEP-0388, XEP-0386)."""

from __future__ import annotations

import base64
from typing import Any

from suricate import sasl
from suricate.jid import JID
from suricate.protocol import negotiation as N
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

CONTEXT = sasl.SaslContext(server="localhost", channel_binding=None,
                           advertised_mechanisms=["PLAIN"], advertised_cb_types=[],
                           scram_iterations=4096)


def offered(name: str) -> Any:
    return sasl.create_mechanism(name, CONTEXT) if name == "PLAIN" else None


def auth(mechanism: str, text: str) -> Element:
    return Element("auth", ns.SASL, {"mechanism": mechanism}, [text])


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_plain_login_asks_for_credentials_then_authenticates() -> None:
    negotiator = N.SaslNegotiator()
    actions = negotiator.auth(auth("PLAIN", plain("alice", "pw")), offered, tls_missing=False)
    assert actions == [N.Goto(S.WAIT_FOR_SASL_RESPONSE), N.NeedCredentials("alice")]
    [done] = negotiator.credentials(sasl.CredentialRecord(password="pw"))
    assert isinstance(done, N.Authenticated) and done.result.username == "alice"
    success, restart = negotiator.legacy_success(done.result)
    assert isinstance(success, N.Reply) and success.element.name == "success"
    assert restart == N.Goto(S.WAIT_FOR_STREAM)  # RFC 6120 §6.4.6: the stream restarts


def test_no_initial_response_gets_an_empty_challenge() -> None:
    negotiator = N.SaslNegotiator()
    goto, reply = negotiator.auth(auth("PLAIN", ""), offered, tls_missing=False)
    assert isinstance(reply, N.Reply)
    assert reply.element == Element("challenge", ns.SASL, {}, ["="])
    assert negotiator.accepts(Element("response", ns.SASL), "response")
    assert not negotiator.accepts(Element("response", ns.SASL2), "response")


def test_unknown_mechanism_and_too_many_failures() -> None:
    negotiator = N.SaslNegotiator()
    for _ in range(N.MAX_AUTH_FAILURES - 1):
        failed, reply = negotiator.auth(auth("X-UNKNOWN", "="), offered, tls_missing=False)
        assert failed == N.AuthFailed("invalid-mechanism", None)
        assert isinstance(reply, N.Reply) and reply.element.find("invalid-mechanism")
    *_, last = negotiator.auth(auth("X-UNKNOWN", "="), offered, tls_missing=False)
    assert isinstance(last, N.CloseStream) and last.error.condition == "policy-violation"


def test_wrong_password_fails_back_to_features() -> None:
    negotiator = N.SaslNegotiator()
    negotiator.auth(auth("PLAIN", plain("alice", "nope")), offered, tls_missing=False)
    actions = negotiator.credentials(sasl.CredentialRecord(password="pw"))
    assert actions[0] == N.AuthFailed("not-authorized", None)
    assert actions[-1] == N.Goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)


def test_encryption_required_is_not_an_attempt() -> None:
    negotiator = N.SaslNegotiator()
    [reply] = negotiator.auth(auth("PLAIN", plain("a", "b")), offered, tls_missing=True)
    assert isinstance(reply, N.Reply) and reply.element.find("encryption-required")
    assert negotiator.failures == 0


def test_sasl2_failure_and_success_are_in_the_sasl2_namespace() -> None:
    negotiator = N.SaslNegotiator()
    request = Element("authenticate", ns.SASL2, {"mechanism": "PLAIN"})
    request.add("initial-response", text=plain("alice", "pw"))
    request.add("user-agent", attrs={"id": "d4565fa7"}).add("software", text="Conversations")
    assert N.user_agent(request) == N.UserAgent("d4565fa7", "Conversations", None)
    negotiator.authenticate(request, offered, tls_missing=False)
    [done] = negotiator.credentials(sasl.CredentialRecord(password="pw"))
    assert isinstance(done, N.Authenticated)
    assert negotiator.finish() is request
    success = N.sasl2_success(done.result, JID.parse("alice@localhost"), None, [])
    assert success.xmlns == ns.SASL2
    assert success.find_text("authorization-identifier", ns.SASL2) == "alice@localhost"


def test_bind_requests() -> None:
    user = JID.parse("alice@localhost")
    iq = Element("iq", ns.CLIENT, {"type": "set", "id": "b1"})
    iq.add("bind", ns.BIND).add("resource", text="phone")
    assert N.bind_request(iq, user) == JID.parse("alice@localhost/phone")
    reply = N.bind_result(iq, JID.parse("alice@localhost/phone"))
    assert reply.attrs == {"type": "result", "id": "b1"}
    get = Element("iq", ns.CLIENT, {"type": "get"})
    get.add("bind", ns.BIND)
    error = N.bind_request(get, user)
    assert isinstance(error, StanzaError) and error.condition == "bad-request"
    bind2 = Element("bind", ns.BIND2)
    bind2.add("tag", text="phone")
    resource = N.bind2_resource(bind2, user).resource
    assert resource is not None and resource.startswith("phone.")
