"""XEP-0077 with a real client: slixmpp's xep_0077 registers in-band before logging in,
changes its password, cancels its account; the server's limits refuse what they should."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from slixmpp.exceptions import IqError

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    ALL_MODULES,
    Client,
    RawClient,
    connect,
    disconnect,
    running_server,
)


class Registrant(Client):
    """Registers ``username``/``password`` when the server offers in-band registration, then
    logs in with them (slixmpp goes on to SASL after the register feature)."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0077")
        self.form: Any = None
        self.outcome: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        self.add_event_handler("register", self._register)

    async def _register(self, form: Any) -> None:
        self.form = form
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send()
        except IqError as err:
            self.outcome.set_result(err.iq["error"]["condition"])
        else:
            self.outcome.set_result("registered")


async def register_in_band(server: Server, jid: str, password: str) -> tuple[str, Registrant]:
    """Run the registration; returns its outcome and the client (logged in on success)."""
    client = Registrant(jid, password)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    outcome = await asyncio.wait_for(client.outcome, 10)
    if outcome == "registered":
        await asyncio.wait_for(client.session_started, 10)
    return outcome, client


async def login_fails(server: Server, jid: str, password: str) -> bool:
    try:
        client = await connect(server, jid, password)
    except (PermissionError, ConnectionError):
        return True
    await disconnect(client)
    return False


def stream_error_of(client: Client) -> asyncio.Future[str]:
    """The condition of the next stream error the client receives."""
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_error(error: Any) -> None:
        if not fut.done():
            fut.set_result(error["condition"])

    client.add_event_handler("stream_error", on_error)
    return fut


async def test_register_in_band_then_log_in(server: Server) -> None:
    outcome, client = await register_in_band(server, "newbie@localhost/pc", "s3cret-enough")
    assert outcome == "registered"
    assert client.form["register"]["instructions"]
    assert {"username", "password"} <= client.form["register"]["fields"]
    assert await server.auth.check_password(JID.parse("newbie@localhost"), "s3cret-enough")
    await disconnect(client)


async def test_existing_username_is_a_conflict(server: Server) -> None:
    await server.auth.register(JID.parse("taken@localhost"), "pw")
    outcome, client = await register_in_band(server, "taken@localhost/pc", "other")
    assert outcome == "conflict"
    await disconnect(client)


async def test_second_registration_from_the_same_address_must_wait(server: Server) -> None:
    # [general] registration_timeout defaults to 600 s: one account per address per period.
    outcome, first = await register_in_band(server, "one@localhost/pc", "pw-one")
    assert outcome == "registered"
    outcome, second = await register_in_band(server, "two@localhost/pc", "pw-two")
    assert outcome == "resource-constraint"
    assert not await server.user_exists(JID.parse("two@localhost"))
    await disconnect(first, second)


async def test_change_password_in_band(server: Server) -> None:
    await server.auth.register(JID.parse("carol@localhost"), "old-pw")
    carol = await connect(server, "carol@localhost/pc", "old-pw",
                          plugins=("xep_0004", "xep_0066", "xep_0077"))
    await carol.plugin["xep_0077"].change_password("new-pw")
    await disconnect(carol)
    assert await login_fails(server, "carol@localhost/pc", "old-pw")
    again = await connect(server, "carol@localhost/pc", "new-pw")
    await disconnect(again)


async def test_cancel_registration_ends_sessions_and_account(server: Server) -> None:
    await server.auth.register(JID.parse("dave@localhost"), "pw")
    dave = await connect(server, "dave@localhost/pc", "pw",
                         plugins=("xep_0004", "xep_0066", "xep_0077"))
    other = await connect(server, "dave@localhost/phone", "pw")
    errors = [stream_error_of(client) for client in (dave, other)]
    result = await dave.plugin["xep_0077"].cancel_registration()
    assert result["type"] == "result"
    # XEP-0077 §3.2: every session of the account ends with a not-authorized stream error.
    for error in errors:
        assert await asyncio.wait_for(error, 5) == "not-authorized"
    assert not await server.user_exists(JID.parse("dave@localhost"))
    assert await login_fails(server, "dave@localhost/pc", "pw")


async def test_access_rule_denies_registration(tmp_path: Path) -> None:
    modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m != "mod_register")
    modules += '\n[modules.mod_register]\naccess = "nobody_registers"\n'
    extra = '[access]\nnobody_registers = [{acl = "all", value = "deny"}]\n'
    async with running_server(tmp_path, extra=extra, modules=modules) as srv:
        outcome, client = await register_in_band(srv, "eve@localhost/pc", "pw")
        assert outcome == "forbidden"
        await disconnect(client)
        assert not await srv.user_exists(JID.parse("eve@localhost"))
        assert await login_fails(srv, "eve@localhost/pc", "pw")


async def test_registration_is_not_offered_before_tls(server: Server) -> None:
    raw = await RawClient.open(server.c2s_port)  # type: ignore[attr-defined]
    await raw.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    features = await raw.expect(r"<stream:features.*?</stream:features>")
    assert "starttls" in features
    assert "iq-register" not in features
    await raw.send("<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                   "<username>mallory</username><password>pw</password></query></iq>")
    answer = await raw.expect(r"<iq[^>]*id=\"r1\".*?</iq>")
    assert "not-authorized" in answer
    assert "<password>" not in answer  # never echoed
    await raw.close()
    assert not await server.user_exists(JID.parse("mallory@localhost"))


class FormRegistrant(Registrant):
    """Registers as Dino does: from the XEP-0004 form alone, the legacy fields ignored
    (Dino's xep-0077 module reads only the <x xmlns='jabber:x:data'/> of the answer and
    submits it)."""

    async def _register(self, form: Any) -> None:
        self.form = form
        offered = form["register"]["form"]
        submit = self.plugin["xep_0004"].make_form(ftype="submit")
        for var in offered.get_fields():
            value = {"username": self.boundjid.user, "password": self.password}.get(
                var, offered.get_fields()[var]["value"])
            submit.add_field(var=var, value=value)
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"].append(submit)
        try:
            await iq.send()
        except IqError as err:
            self.outcome.set_result(err.iq["error"]["condition"])
        else:
            self.outcome.set_result("registered")


async def test_register_from_the_data_form_alone(server: Server) -> None:
    # XEP-0077 §4: the registration fields also as a data form (FORM_TYPE jabber:iq:register),
    # which is all Dino and Gajim read; the legacy fields stay for Conversations and slixmpp.
    client = FormRegistrant("dino@localhost/pc", "s3cret-enough")
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
    assert await asyncio.wait_for(client.outcome, 10) == "registered"
    await asyncio.wait_for(client.session_started, 10)
    fields = client.form["register"]["form"].get_fields()
    assert fields["FORM_TYPE"]["type"] == "hidden"
    assert fields["FORM_TYPE"]["value"] == ["jabber:iq:register"]  # slixmpp: a list
    assert fields["username"]["required"] and fields["password"]["required"]
    assert fields["password"]["type"] == "text-private"
    assert {"username", "password"} <= client.form["register"]["fields"]
    assert await server.auth.check_password(JID.parse("dino@localhost"), "s3cret-enough")
    await disconnect(client)


async def test_accounts_managed_elsewhere_are_not_changed_in_band(tmp_path: Path) -> None:
    # A method that holds no accounts here (dummy; ldap, jwt alike): a logged-in user's
    # password change (XEP-0077 §3.3) and cancellation (§3.2) are not-allowed, not
    # registration-required (the account exists: its owner is logged in).
    dummy = "[auth.dummy]\nbase_time = 0\nvariance = 0\n"
    async with running_server(tmp_path, auth_extra='methods = ["dummy"]', extra=dummy) as srv:
        user = await connect(srv, "frank@localhost/pc", "any",
                             plugins=("xep_0004", "xep_0066", "xep_0077"))
        for request in (user.plugin["xep_0077"].change_password("new-pw"),
                        user.plugin["xep_0077"].cancel_registration()):
            try:
                await request
            except IqError as err:
                assert err.iq["error"]["condition"] == "not-allowed"
            else:
                raise AssertionError("accepted")
        await disconnect(user)
