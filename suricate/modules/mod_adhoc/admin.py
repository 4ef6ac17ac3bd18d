"""mod_adhoc's own commands: ``ping`` (server and accounts), and the XEP-0133 Service
Administration commands that the GraphQL admin API also offers (account add and remove, session
ends, user counts, last login, announcements), for the admins of ``access_admin``.

Each administration command is one form (§3 of XEP-0133: execute gives the form, complete
submits it) or, for the counts, a result straight away. They act on the domain the command was
sent to; an account of another domain is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from suricate.auth.service import TooManyUsers
from suricate.core.c2s import C2S
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_adhoc import forms as F
from suricate.modules.mod_adhoc.command import Command, CommandSession, Reply, note
from suricate.modules.mod_last import ModLast
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.modules.mod_adhoc import ModAdhoc

ADMIN = "http://jabber.org/protocol/admin"
PING = "ping"

Values = dict[str, list[str]]


def commands(module: ModAdhoc) -> list[Command]:
    server = module.server

    def anyone(frm: JID, to: JID) -> bool:
        return True

    async def ping(session: CommandSession, action: str, values: Values | None) -> Reply:
        return note("info", "Pong")

    def admin(name: str, label: str, build: Callable[[JID], Element] | None,
              finish: Callable[[JID, Values], Awaitable[Reply]]) -> Command:
        """A XEP-0133 command: the form ``build`` makes, then ``finish`` with the answers
        (or ``finish`` at once when there is no form)."""

        async def step(session: CommandSession, action: str, values: Values | None) -> Reply:
            if build is None or action == "complete":
                return await finish(session.target, values or {})
            if action == "execute":
                return Reply("executing", build(session.target), actions=("complete",),
                             default="complete")
            raise StanzaError("bad-request", f"{action} is not possible now")

        return Command(f"{ADMIN}#{name}", label, "local", step, module.is_admin)

    # -- the accounts of the domain ----------------------------------------------------------
    def account(domain: JID, text: str) -> JID:
        try:
            jid = JID.parse(text)
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed", f"{text!r} is not a JID") from None
        if jid.local is None or jid.resource is not None:
            raise StanzaError("jid-malformed", f"{text!r} is not an account's bare JID")
        if jid.domain != domain.domain:
            raise StanzaError("not-allowed", f"{jid} is not an account of {domain.domain}")
        return jid

    def accounts(domain: JID, values: Values) -> list[JID]:
        texts = [v.strip() for v in values.get("accountjids", []) if v.strip()]
        if not texts:
            raise StanzaError("bad-request", "accountjids: give at least one account")
        return [account(domain, t) for t in texts]

    def add_user_form(domain: JID) -> Element:
        x = F.form(ADMIN, "Adding a User", "Fill out this form to add a user.")
        F.field(x, "accountjid", "jid-single", "The Jabber ID for the account to be added",
                required=True)
        F.field(x, "password", "text-private", "The password for this account", required=True)
        F.field(x, "password-verify", "text-private", "Retype password", required=True)
        return x

    async def add_user(domain: JID, values: Values) -> Reply:
        jid = account(domain, F.single(values, "accountjid"))
        password = (values.get("password") or [""])[0]
        if not password:
            raise StanzaError("not-acceptable", "password: an empty password is refused")
        if "password-verify" in values and (values["password-verify"] or [""])[0] != password:
            raise StanzaError("not-acceptable", "password-verify: the passwords differ")
        try:
            created = await server.auth.register(jid, password)
        except TooManyUsers:
            raise StanzaError("resource-constraint",
                              f"{domain.domain} has reached auth.max_users_per_domain") from None
        if not created:
            raise StanzaError("conflict", f"{jid} already exists")
        return note("info", f"User {jid} added")

    def accounts_form(title: str, label: str) -> Callable[[JID], Element]:
        def build(domain: JID) -> Element:
            x = F.form(ADMIN, title)
            F.field(x, "accountjids", "jid-multi", label, required=True)
            return x
        return build

    async def delete_user(domain: JID, values: Values) -> Reply:
        jids = accounts(domain, values)
        missing = [str(j) for j in jids if not await server.auth.user_exists(j)]
        if missing:
            raise StanzaError("item-not-found", f"no account {', '.join(missing)}")
        for jid in jids:
            # The removal ends the account's sessions on every node (Server.account_removed).
            await server.auth.remove(jid)
        return note("info", f"Deleted {', '.join(str(j) for j in jids)}")

    async def end_user_session(domain: JID, values: Values) -> Reply:
        ended = 0
        for jid in accounts(domain, values):
            ended += await server.end_account_sessions(jid, "policy-violation",
                                                       "session ended by the administrator")
        return note("info", f"{ended} session(s) ended")

    def lastlogin_form(domain: JID) -> Element:
        x = F.form(ADMIN, "Getting a User's Last Login Time")
        F.field(x, "accountjid", "jid-single", "The Jabber ID of the user", required=True)
        return x

    async def lastlogin(domain: JID, values: Values) -> Reply:
        jid = account(domain, F.single(values, "accountjid"))
        last = server.modules.get("mod_last")
        if not isinstance(last, ModLast):
            raise StanzaError("service-unavailable", "last login needs mod_last")
        if not await server.auth.user_exists(jid):
            raise StanzaError("item-not-found", f"no account {jid}")
        assert jid.local is not None
        if any(isinstance(s, C2S) for s in server.sessions.resources(jid)) \
                or await server.cluster.nodes_of(jid):  # a session on another node
            when = "online now"
        else:
            found = await last.store.get_last(jid.domain, jid.local)
            when = "never" if found is None else _iso(found[0])
        x = F.form(ADMIN, kind="result")
        F.field(x, "accountjid", "jid-single", "The Jabber ID of the user", [str(jid)])
        # mod_last keeps when the account was last seen (its last logout, XEP-0012).
        F.field(x, "lastlogin", "text-single", "The last login time", [when])
        return Reply("completed", x)

    async def registered_num(domain: JID, values: Values) -> Reply:
        count = await server.storage.count_users(domain.domain)
        return _count(domain, "registeredusersnum", "The number of registered users", count)

    async def online_num(domain: JID, values: Values) -> Reply:
        online = {s.jid.bare for s in server.sessions
                  if isinstance(s, C2S) and s.jid is not None and s.jid.domain == domain.domain}
        return _count(domain, "onlineusersnum", "The number of online users", len(online))

    def announce_form(domain: JID) -> Element:
        x = F.form(ADMIN, "Making an Announcement",
                   "Fill out this form to make an announcement to all active users.")
        F.field(x, "subject", "text-single", "Subject")
        F.field(x, "announcement", "text-multi", "Announcement", required=True)
        return x

    async def announce(domain: JID, values: Values) -> Reply:
        body = "\n".join(values.get("announcement", [])).strip()
        if not body:
            raise StanzaError("not-acceptable", "announcement: the text is empty")
        subject = F.single(values, "subject")
        sent = 0
        for session in list(server.sessions):
            # §4.23: to every online user of the domain, as a headline from the server.
            if not isinstance(session, C2S) or session.jid is None \
                    or session.jid.domain != domain.domain:
                continue
            message = Element("message", ns.CLIENT, {"from": domain.domain,
                                                     "to": str(session.jid), "type": "headline"})
            if subject:
                message.add("subject", text=subject)
            message.add("body", text=body)
            session.deliver(message)
            sent += 1
        return note("info", f"Announcement sent to {sent} session(s)")

    return [
        Command(PING, "Ping", "local", ping, anyone),
        Command(PING, "Ping", "sm", ping, anyone),
        admin("add-user", "Add User", add_user_form, add_user),
        admin("delete-user", "Delete User",
              accounts_form("Deleting a User", "The Jabber ID(s) to delete"), delete_user),
        admin("end-user-session", "End User Session",
              accounts_form("Ending a User Session", "The Jabber ID(s) whose sessions end"),
              end_user_session),
        admin("get-user-lastlogin", "Get User Last Login Time", lastlogin_form, lastlogin),
        admin("get-registered-users-num", "Get Number of Registered Users", None,
              registered_num),
        admin("get-online-users-num", "Get Number of Online Users", None, online_num),
        admin("announce", "Send Announcement to Online Users", announce_form, announce),
    ]


def _count(domain: JID, var: str, label: str, count: int) -> Reply:
    x = F.form(ADMIN, kind="result")
    F.field(x, var, "text-single", label, [str(count)])
    return Reply("completed", x)


def _iso(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
