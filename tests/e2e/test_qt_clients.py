"""Kaidan 0.8 (Debian 12's ``kaidan``, on QXmpp 1.4) and Psi+ 1.4 (Debian 12's ``psi-plus``,
its own library iris) on the embedded default: the exact stanzas they send, replayed over real
TLS, where the walk with the real clients found the server short of what the client expects
(docs/compliance.md, "Kaidan and Psi+")."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import RawClient, free_port, serving


@pytest.fixture
async def default(tmp_path: Path) -> AsyncIterator[Server]:
    """The embedded default's configuration on free ports."""
    cert, _ = ensure_self_signed(tmp_path / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    c2s_port, tls_port = free_port(), free_port()
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp_path / "suricate.db"),
                               http_port=free_port(), https_port=free_port(),
                               c2s_port=c2s_port, tls_port=tls_port)
    async with serving(tmp_path, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        yield server


def reply(iq_id: str) -> str:
    """A regexp for the whole answer to our IQ ``iq_id``."""
    return rf"<iq(?=[^>]*id=.{iq_id}.)[^>]*?(/>|>.*?</iq>)"


def kaidan_submit(form_type: str) -> str:
    """What Kaidan 0.8's "Register" button sends (QXmpp 1.4 ``QXmppRegistrationManager``):
    the form the server gave, values filled in, ``<required/>`` kept, and its type left at
    ``form`` rather than XEP-0004's ``submit``."""
    return (
        "<iq xmlns='jabber:client' id='qxmpp7' type='set'>"
        "<n1:query xmlns:n1='jabber:iq:register'>"
        f"<n2:x xmlns:n2='jabber:x:data' type='{form_type}'>"
        "<n2:title>Registration</n2:title>"
        "<n2:instructions>Choose a username and password to register with this server."
        "</n2:instructions>"
        "<n2:field type='hidden' var='FORM_TYPE'><n2:value>jabber:iq:register</n2:value>"
        "</n2:field>"
        "<n2:field type='text-single' label='Username' var='username'>"
        "<n2:value>kai</n2:value><n2:required/></n2:field>"
        "<n2:field type='text-private' label='Password' var='password'>"
        "<n2:value>kaipass1</n2:value><n2:required/></n2:field>"
        "</n2:x></n1:query></iq>")


async def test_kaidan_registers_with_the_form_it_was_given(default: Server) -> None:
    """Kaidan's onboarding ("Register a new account", "Create an account manually") fetched
    the XEP-0077 form and sent it back with type='form': the server read only a form of
    type 'submit', found no legacy fields either and answered not-acceptable ("Registration
    failed: a username and a password are required"). Prosody 0.12 reads the fields
    whatever the form's type; so does Suricate now, except a cancelled form."""
    raw = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await raw.open_stream()
    await raw.send("<iq xmlns='jabber:client' id='qxmpp4' type='get'>"
                   "<n1:query xmlns:n1='jabber:iq:register'/></iq>")
    assert "jabber:x:data" in await raw.expect(reply("qxmpp4"))
    # XEP-0004 §3.1: a cancelled submission registers nothing.
    await raw.send(kaidan_submit("cancel").replace("qxmpp7", "qxmpp6"))
    assert "not-acceptable" in await raw.expect(reply("qxmpp6"))
    assert not await default.user_exists(JID.parse("kai@localhost"))
    await raw.send(kaidan_submit("form"))
    assert 'type="result"' in (await raw.expect(reply("qxmpp7"))).replace("'", '"')
    assert await default.user_exists(JID.parse("kai@localhost"))
    await raw.close()


async def test_psi_plus_asks_the_password_after_the_features(default: Server) -> None:
    """Psi+ 1.4 with no saved password opens the stream, gets the SASL features and only
    then asks the person for the password ("Please enter your password"): MongooseIM's 5 s
    state_timeout closed the stream while they typed, iris logged "stream was cleaned up
    while waiting for password input", reconnected and asked again, for good. The default's
    c2s listeners give each step 60 s (Prosody 0.12: 300 s before authentication)."""
    await default.auth.register(JID.parse("psi@localhost"), "psipass1")
    raw = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await raw.open_stream()  # up to the end of the features, SASL mechanisms and all
    await asyncio.sleep(5.5)  # the person types the password: longer than MongooseIM's 5 s
    token = base64.b64encode(b"\0psi\0psipass1").decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   f"{token}</auth>")
    await raw.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await raw.close()


async def test_psi_plus_finds_pep_on_the_server(default: Server) -> None:
    """Psi+ 1.4 (iris ServerInfoManager) asks the disco#info of its server's domain, not of
    the account, and turns PEP on only if an identity pubsub/pep is there (XEP-0163's
    earlier place for it): without one its Avatar, Mood, Activity and GeoLocation menus
    stayed disabled. The account's bare JID keeps its pubsub/pep too (XEP-0163 §6.1)."""
    await default.auth.register(JID.parse("psi@localhost"), "psipass1")
    raw = await RawClient.open(default.tls_port, tls=True)  # type: ignore[attr-defined]
    await raw.open_stream()
    token = base64.b64encode(b"\0psi\0psipass1").decode()
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   f"{token}</auth>")
    await raw.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await raw.open_stream()
    await raw.send("<iq xmlns='jabber:client' type='set' id='aab9a'>"
                   "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>Psi+</resource>"
                   "</bind></iq>")
    await raw.expect(reply("aab9a"))
    for iq_id, to in (("aabfa", "localhost"), ("own", "psi@localhost")):
        await raw.send(f"<iq xmlns='jabber:client' to='{to}' type='get' id='{iq_id}'>"
                       "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        info = (await raw.expect(reply(iq_id))).replace("'", '"')
        assert info.count('<identity category="pubsub" type="pep"') == 1, (to, info)
    await raw.close()
