"""mod_register: XEP-0077 before authentication (form, account creation and its limits) and
after (registration info, password change, cancellation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_register import ModRegister, password_entropy, timeout_group
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server

MODULES = """
[access]
no_admins = [{acl = "admins", value = "deny"}, {acl = "all", value = "allow"}]

[acl]
admins = [{user = "admin"}]

[modules.mod_register]
access = "no_admins"
password_strength = 20
ip_access = [{address = "10.0.0.0/8", policy = "deny"}, {address = "0.0.0.0/0", policy = "allow"}]
registration_watchers = ["watcher@localhost"]
welcome_message = {subject = "Welcome", body = "Glad you are here."}

[modules.mod_offline]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, MODULES) as srv:
        register(srv).registration_timeout = None  # most tests register several times
        await srv.auth.register(JID.parse("watcher@localhost"), "watcher-pw")
        yield srv


def register(server: Server) -> ModRegister:
    module = server.modules["mod_register"]
    assert isinstance(module, ModRegister)
    return module


class Conn:
    def __init__(self, ip: str) -> None:
        self.peer = (ip, 40000)


class Unauthenticated:
    """A client stream before authentication, as the c2s_preauth_* hooks see it."""

    def __init__(self, ip: str = "127.0.0.1", tls_offered: bool = False,
                 encrypted: bool = False) -> None:
        self.domain = "localhost"
        self.conn = Conn(ip)
        self.tls_config: Any = object() if tls_offered else None
        self.is_tls = encrypted
        self.sent: list[Element] = []
        self.deadline: float | None = None  # what extend_state_deadline asked for

    def send(self, element: Element) -> None:
        self.sent.append(element)

    def extend_state_deadline(self, seconds: float) -> None:
        self.deadline = seconds


async def preauth(server: Server, stream: Unauthenticated, type_: str,
                  query: Element) -> Element:
    iq = Element("iq", ns.CLIENT, {"type": type_, "id": "r1"}, [query])
    handled = await server.hooks.fold_async(H.C2S_PREAUTH_IQ, False, stream, iq)
    assert handled is True
    return stream.sent.pop()


def query(username: str | None = None, password: str | None = None,
          *extra: str) -> Element:
    q = Element("query", ns.REGISTER)
    if username is not None:
        q.add("username", text=username)
    if password is not None:
        q.add("password", text=password)
    for name in extra:
        q.add(name)
    return q


GOOD = "correct horse battery"


async def test_form_before_authentication(server: Server) -> None:
    stream = Unauthenticated()
    reply = await preauth(server, stream, "get", query())
    assert reply.attrs["type"] == "result"
    form = reply.find("query", ns.REGISTER)
    assert form is not None
    assert [c.name for c in form.elements()] == ["instructions", "username", "password", "x"]
    # A person fills it in: more than the listener's state_timeout to send it back.
    assert stream.deadline is not None and stream.deadline >= 60


async def test_register_creates_account_welcomes_and_notifies(server: Server) -> None:
    watcher = FakeSession(server, "watcher@localhost/desk")
    reply = await preauth(server, Unauthenticated(), "set", query("Newbie", GOOD))
    assert reply.attrs["type"] == "result"
    jid = JID.parse("newbie@localhost")  # the username is prepared (lowercased)
    assert await server.auth.check_password(jid, GOOD)
    await server.drain(5)
    # The welcome message waits offline for the new account.
    assert await server.modules["mod_offline"].store.count_offline("localhost", "newbie") == 1
    note = watcher.received.get_nowait()
    body = note.find_text("body") or ""
    assert "newbie@localhost" in body and "127.0.0.1" in body and GOOD not in body


@pytest.mark.parametrize(("q", "condition"), [
    (query("taken", GOOD), "conflict"),
    (query("bob", ""), "not-acceptable"),  # §3.1: an empty password is missing information
    (query("bob", None), "not-acceptable"),
    (query(None, GOOD), "not-acceptable"),
    (query("bob@home", GOOD), "jid-malformed"),
    (query("bob", "abc"), "not-acceptable"),  # too weak for password_strength = 20
    (query("admin", GOOD), "forbidden"),  # the access rule
    (query(None, None, "remove"), "unexpected-request"),
])
async def test_refusals(server: Server, q: Element, condition: str) -> None:
    await server.auth.register(JID.parse("taken@localhost"), "pw")
    reply = await preauth(server, Unauthenticated(), "set", q)
    assert error_condition(reply) == condition
    assert reply.find("query", ns.REGISTER) is None  # no echo of the password
    assert not await server.user_exists(JID.parse("bob@localhost"))


@pytest.mark.parametrize("ip", ["10.1.2.3", "::ffff:10.1.2.3"])
async def test_ip_access_deny(server: Server, ip: str) -> None:
    # An IPv4 client seen through a dual-stack socket or PROXY header is still 10.1.2.3.
    reply = await preauth(server, Unauthenticated(ip=ip), "set", query("bob", GOOD))
    assert error_condition(reply) == "forbidden"
    # The form is no secret, but a client that may not register gets no longer deadline.
    stream = Unauthenticated(ip=ip)
    assert (await preauth(server, stream, "get", query())).attrs["type"] == "result"
    assert stream.deadline is None


async def test_no_registration_before_tls_on_a_tls_listener(server: Server) -> None:
    clear = Unauthenticated(tls_offered=True)
    features = server.hooks.fold(H.C2S_PREAUTH_FEATURES, [], clear)
    assert features == []
    reply = await preauth(server, clear, "set", query("bob", GOOD))
    assert error_condition(reply) == "not-authorized"
    secure = Unauthenticated(tls_offered=True, encrypted=True)
    features = server.hooks.fold(H.C2S_PREAUTH_FEATURES, [], secure)
    assert features == [Element("register", ns.REGISTER_FEATURE)]
    reply = await preauth(server, secure, "set", query("bob", GOOD))
    assert reply.attrs["type"] == "result"


async def test_registration_timeout_per_address(server: Server) -> None:
    register(server).registration_timeout = 600
    reply = await preauth(server, Unauthenticated(), "set", query("one", GOOD))
    assert reply.attrs["type"] == "result"
    reply = await preauth(server, Unauthenticated(), "set", query("two", GOOD))
    assert error_condition(reply) == "resource-constraint"
    err = reply.find("error")
    assert err is not None and err.attrs["type"] == "wait"
    reply = await preauth(server, Unauthenticated(ip="192.0.2.7"), "set", query("two", GOOD))
    assert reply.attrs["type"] == "result"


async def test_registration_timeout_counts_an_ipv6_slash_64_as_one_address(
        server: Server) -> None:
    # A host picks any address of its /64 (RFC 8981): rotating them does not buy a new slot,
    # and the watchers are still told the address the client used.
    register(server).registration_timeout = 600
    reply = await preauth(server, Unauthenticated(ip="2001:db8:1:2::a"), "set",
                          query("one", GOOD))
    assert reply.attrs["type"] == "result"
    reply = await preauth(server, Unauthenticated(ip="2001:db8:1:2:ffff:1:2:3"), "set",
                          query("two", GOOD))
    assert error_condition(reply) == "resource-constraint"
    # The next /64 is another site.
    reply = await preauth(server, Unauthenticated(ip="2001:db8:1:3::a"), "set",
                          query("two", GOOD))
    assert reply.attrs["type"] == "result"
    # IPv4 addresses stay one by one.
    assert timeout_group("192.0.2.7") == "192.0.2.7"
    assert timeout_group("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"


async def test_failed_registration_does_not_use_the_period(server: Server) -> None:
    register(server).registration_timeout = 600
    await server.auth.register(JID.parse("taken@localhost"), "pw")
    reply = await preauth(server, Unauthenticated(), "set", query("taken", GOOD))
    assert error_condition(reply) == "conflict"
    reply = await preauth(server, Unauthenticated(), "set", query("fresh", GOOD))
    assert reply.attrs["type"] == "result"


async def test_other_preauth_iqs_are_left_alone(server: Server) -> None:
    iq = Element("iq", ns.CLIENT, {"type": "get", "id": "x"},
                 [Element("query", "jabber:iq:version")])
    assert await server.hooks.fold_async(H.C2S_PREAUTH_IQ, False, Unauthenticated(), iq) is False


# -- after authentication -------------------------------------------------------------------------
class Session(FakeSession):
    def __init__(self, server: Server, jid: str, encrypted: bool = True) -> None:
        super().__init__(server, jid)
        self.tls_config: Any = object()
        self.is_tls = encrypted


@pytest.fixture
async def alice(server: Server) -> Session:
    await server.auth.register(JID.parse("alice@localhost"), "old-password-1")
    return Session(server, "alice@localhost/phone")


async def test_registered_info(server: Server, alice: Session) -> None:
    reply = await alice.iq("get", query())
    q = reply.find("query", ns.REGISTER)
    assert q is not None
    assert q.find("registered", ns.REGISTER) is not None
    assert q.find_text("username", ns.REGISTER) == "alice"
    assert q.find("password", ns.REGISTER) is None


@pytest.mark.parametrize("to", [None, "localhost"])
async def test_change_password(server: Server, alice: Session, to: str | None) -> None:
    reply = await alice.iq("set", query("alice", GOOD), to=to)
    assert reply.attrs["type"] == "result"
    assert await server.auth.check_password(JID.parse("alice@localhost"), GOOD)


@pytest.mark.parametrize(("q", "condition"), [
    (query("bob", GOOD), "not-allowed"),
    (query(None, GOOD), "bad-request"),
    (query("alice", ""), "not-acceptable"),  # §3.3: the existing password stays
    (query("alice", "abc"), "not-acceptable"),
])
async def test_password_change_refusals(server: Server, alice: Session, q: Element,
                                        condition: str) -> None:
    reply = await alice.iq("set", q)
    assert error_condition(reply) == condition
    assert reply.find("query", ns.REGISTER) is None
    assert await server.auth.check_password(JID.parse("alice@localhost"), "old-password-1")


async def test_password_change_needs_an_encrypted_stream(server: Server) -> None:
    await server.auth.register(JID.parse("carol@localhost"), "old-password-1")
    carol = Session(server, "carol@localhost/pc", encrypted=False)
    reply = await carol.iq("set", query("carol", GOOD))
    assert error_condition(reply) == "not-authorized"


async def test_someone_else_cannot_act_on_the_account(server: Server, alice: Session) -> None:
    await server.auth.register(JID.parse("bob@localhost"), "pw")
    bob = Session(server, "bob@localhost/pc")
    reply = await bob.iq("set", query(None, None, "remove"), to="alice@localhost")
    assert error_condition(reply) == "service-unavailable"
    assert await server.user_exists(JID.parse("alice@localhost"))


async def test_cancel_removes_account_then_ends_sessions(server: Server, alice: Session,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    ended: list[tuple[str, str, str, str]] = []

    async def end_account_sessions(bare: JID, condition: str, reason: str,
                                   spare: JID | None = None) -> int:
        ended.append((str(bare), condition, reason, str(spare)))
        return 0

    monkeypatch.setattr(server, "end_account_sessions", end_account_sessions)
    # The result reaches the session (a session already ended would not get it) ...
    reply = await alice.iq("set", query(None, None, "remove"))
    assert reply.attrs["type"] == "result"
    await server.drain(5)
    # ... then §3.2: not-authorized for the session that asked, ended by mod_register after
    # its answer; the account's other sessions (on every node of a cluster) by the removal.
    assert [e.condition for e in alice.errors] == ["not-authorized"]
    assert ended == [("alice@localhost", "not-authorized", "account removed",
                      "alice@localhost/phone")]
    assert not await server.user_exists(JID.parse("alice@localhost"))


async def test_cancel_with_more_than_remove_is_bad_request(server: Server, alice: Session) -> None:
    reply = await alice.iq("set", query("alice", None, "remove"))
    assert error_condition(reply) == "bad-request"
    assert await server.user_exists(JID.parse("alice@localhost"))


def test_password_entropy() -> None:
    assert password_entropy("") == 0
    assert password_entropy("aaaa") == pytest.approx(4 * 4.70, abs=0.01)
    assert password_entropy("aA1!") > password_entropy("aaaa")
    assert password_entropy("pässwörd") > password_entropy("password")


def test_a_watcher_that_is_no_jid_stops_start_up() -> None:
    # DESIGN §2.6: a wrong value stops start-up with its TOML path, rather than a log line at
    # every registration (the watcher would never be told).
    from suricate.config import ConfigError, parse_config

    toml = ('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'
            '[modules.mod_register]\nregistration_watchers = ["admin@localhost", "a@b@c"]\n')
    with pytest.raises(ConfigError, match=r"modules.mod_register.registration_watchers\[1\]"):
        parse_config(toml, Path("."))
