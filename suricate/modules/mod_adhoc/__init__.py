"""mod_adhoc: XEP-0050 Ad-Hoc Commands on the served domains and on accounts, with the ``ping``
command and the XEP-0133 Service Administration commands that the GraphQL admin API also has.

Commands are registered by node (``register_command``): this module's own and other modules'
(see docs/adhoc.md). The module runs the XEP-0050 protocol around them: the command list as
disco#items of the ``http://jabber.org/protocol/commands`` node (§2.2), disco#info of each
command node, sessions (§3.4: ``sessionid``, the actions a stage allows, cancel, expiry),
notes and data forms. A command only computes its next stage.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.loader import References
from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Bool, Int, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.jid import JID
from suricate.modules.mod_adhoc import admin
from suricate.modules.mod_adhoc.command import (
    ACTIONS,
    COMMANDS,
    Command,
    CommandSession,
    Reply,
    Target,
)
from suricate.modules.mod_adhoc.forms import submitted
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_adhoc")

class ModAdhoc(Module):
    name = "mod_adhoc"
    options = Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "report_commands_node": Option(
                Bool(), False, "List the commands node in the disco#items of the server and "
                "of accounts (the commands work either way)."),
            "access_admin": Option(
                Str(), "none", "Access rule: who may run the XEP-0133 administration "
                "commands (Suricate's option; \"none\": nobody)."),
            "session_timeout": Option(
                Int(min=1, unit="seconds"), 600, "A command session left this long without "
                "a request is forgotten (Suricate's option)."),
        },
        doc="XEP-0050 Ad-Hoc Commands (ping, and the XEP-0133 administration commands).",
    )
    xeps = ("0050", "0133")
    iq_handlers = (("local", COMMANDS, "local_command"), ("sm", COMMANDS, "account_command"))
    features = (COMMANDS,)
    sm_features = (COMMANDS,)
    hooks = (
        (H.DISCO_NODE_INFO, "node_info", 50),
        (H.DISCO_NODE_ITEMS, "node_items", 50),
        (H.DISCO_LOCAL_ITEMS, "local_items", 50),
        (H.DISCO_SM_ITEMS, "sm_items", 50),
        (H.SESSION_CLOSED, "session_closed", 50),
    )

    #: Open sessions one requester may keep at once (each holds its command's state).
    MAX_SESSIONS = 10

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.access_defined(f"{path}.access_admin", opts.get("access_admin"))

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.commands: dict[tuple[Target, str], Command] = {}
        self.sessions: dict[tuple[JID, str], CommandSession] = {}

    async def start(self) -> None:
        for command in admin.commands(self):
            self.register_command(command)

    # -- the module API ----------------------------------------------------------------------
    def register_command(self, command: Command) -> None:
        """Offer ``command`` (another module calls this from its ``start``)."""
        key = (command.target, command.node)
        if key in self.commands:
            raise ValueError(f"ad-hoc command {command.node} registered twice")
        self.commands[key] = command

    def unregister_command(self, target: Target, node: str) -> None:
        self.commands.pop((target, node), None)
        for key in [k for k, s in self.sessions.items() if s.node == node]:
            del self.sessions[key]

    def is_admin(self, who: JID, target: JID) -> bool:
        """May ``who`` administer the domain ``target`` (access_admin, XEP-0133 §4)?"""
        rule = self.opts["access_admin"]
        return (rule != "none" and who.domain == target.domain
                and self.server.access_allows(rule, who))

    # -- discovery (XEP-0050 §2) -------------------------------------------------------------
    def _visible(self, frm: JID, to: JID) -> list[Command]:
        target: Target = "sm" if to.local else "local"
        if target == "sm" and frm.bare != to.bare:
            return []  # an account's commands are its own
        return sorted((c for (t, _), c in self.commands.items()
                       if t == target and c.allowed(frm, to)), key=lambda c: c.node)

    def node_items(self, acc: list[Element] | None, frm: JID, to: JID,
                   node: str) -> list[Element] | None:
        if node != COMMANDS or to.resource or not self.server.is_local_domain(to.domain):
            return acc
        # §2.2: the command list, only what this requester may run.
        return [*(acc or []), *(Element("item", ns.DISCO_ITEMS, {
            "jid": str(to), "node": c.node, "name": c.name}) for c in self._visible(frm, to))]

    def node_info(self, acc: list[Element] | None, frm: JID, to: JID,
                  node: str) -> list[Element] | None:
        if to.resource or not self.server.is_local_domain(to.domain):
            return acc
        if node == COMMANDS:
            # §2.3 says nothing of the commands node itself; XEP-0030 §3.3 lets it be a
            # hierarchy node.
            return [Element("identity", ns.DISCO_INFO, {
                "category": "hierarchy", "type": "branch", "name": "Commands"})]
        command = next((c for c in self._visible(frm, to) if c.node == node), None)
        if command is None:
            return acc
        # §2.3: a command node is automation/command-node with these two features.
        return [Element("identity", ns.DISCO_INFO, {"category": "automation",
                                                    "type": "command-node",
                                                    "name": command.name}),
                Element("feature", ns.DISCO_INFO, {"var": COMMANDS}),
                Element("feature", ns.DISCO_INFO, {"var": ns.DATA_FORMS})]

    def local_items(self, acc: list[Element], domain: str) -> list[Element]:
        if self.opts["report_commands_node"]:
            acc.append(Element("item", ns.DISCO_ITEMS, {"jid": domain, "node": COMMANDS,
                                                        "name": "Commands"}))
        return acc

    def sm_items(self, acc: list[Element], frm: JID, jid: JID) -> list[Element]:
        if self.opts["report_commands_node"] and frm.bare == jid.bare:
            acc.append(Element("item", ns.DISCO_ITEMS, {"jid": str(jid.bare), "node": COMMANDS,
                                                        "name": "Commands"}))
        return acc

    # -- execution (XEP-0050 §3) -------------------------------------------------------------
    async def local_command(self, iq: IqRequest) -> Element:
        return await self._run(iq, "local")

    async def account_command(self, iq: IqRequest) -> Element:
        if iq.frm.bare != iq.to.bare:
            # RFC 6121 §8.5.1 as for other account IQs: nothing to tell a stranger.
            raise StanzaError("service-unavailable")
        return await self._run(iq, "sm")

    async def _run(self, iq: IqRequest, target: Target) -> Element:
        if iq.type != "set" or iq.payload.name != "command":
            raise StanzaError("bad-request", "commands are executed with an IQ set (§3.1)")
        node = iq.payload.attrs.get("node", "")
        action = iq.payload.attrs.get("action", "execute")
        if action not in ACTIONS:
            raise _error("bad-request", "malformed-action", f"unknown action {action!r}")
        command = self.commands.get((target, node))
        if command is None:
            raise StanzaError("item-not-found", f"no command {node!r} here")
        if not command.allowed(iq.frm, iq.to):
            raise StanzaError("forbidden", "you may not run this command")
        self._expire()
        sessionid = iq.payload.attrs.get("sessionid")
        if sessionid is None:
            if action != "execute":
                raise _error("bad-request", "bad-sessionid", "no sessionid for this action")
            session = self._open(iq, node)
        else:
            found = self.sessions.get((iq.frm, sessionid))
            if found is None or found.node != node or found.target != iq.to:
                # §4.4: unknown or expired session (another requester's sessions are unknown
                # to this one: they are keyed by full JID).
                raise _error("bad-request", "bad-sessionid", "no such command session")
            session = found
            session.touched = time.monotonic()
        if action == "cancel":
            self.sessions.pop((session.requester, session.id), None)
            return _command_element(node, session.id, Reply("canceled"))
        if sessionid is not None:
            allowed = session.last.actions if session.last is not None else ()
            if action == "execute":
                action = (session.last.default if session.last and session.last.default
                          else "complete" if "complete" in allowed else "next")
            if action not in allowed:
                # §4.4 bad-action: the stage did not offer it.
                raise _error("bad-request", "bad-action", f"{action} is not possible now")
        previous = session.stage
        # The stage the step computes: one on for next, one back for prev.
        session.stage += 1 if action == "next" else -1 if action == "prev" else 0
        session.stage = max(session.stage, 0)
        try:
            reply = await command.step(session, action, submitted(iq.payload))
        except Exception:
            if sessionid is None:
                # The first stage failed: there is no session to come back to.
                self.sessions.pop((session.requester, session.id), None)
            session.stage = previous  # the requester may answer this stage again
            raise
        session.last = reply
        if reply.status != "executing":
            self.sessions.pop((session.requester, session.id), None)
        return _command_element(node, session.id, reply)

    def _open(self, iq: IqRequest, node: str) -> CommandSession:
        mine = [s for (who, _), s in self.sessions.items() if who == iq.frm]
        if len(mine) >= self.MAX_SESSIONS:
            raise StanzaError("resource-constraint",
                              f"at most {self.MAX_SESSIONS} command sessions at once")
        session = CommandSession(secrets.token_hex(8), node, iq.frm, iq.to)
        self.sessions[(iq.frm, session.id)] = session
        return session

    async def session_closed(self, acc: None, c2s: Any, reason: str) -> None:
        """The requester's command sessions end with its stream (they are its full JID's)."""
        if c2s.jid is not None:
            for key in [k for k in self.sessions if k[0] == c2s.jid]:
                del self.sessions[key]
        return acc

    def _expire(self) -> None:
        deadline = time.monotonic() - self.opts["session_timeout"]
        for key in [k for k, s in self.sessions.items() if s.touched < deadline]:
            del self.sessions[key]


def _error(condition: str, specific: str, text: str) -> StanzaError:
    """An error with its XEP-0050 §4.4 application-specific condition."""
    return StanzaError(condition, text, app_condition=Element(specific, COMMANDS))


def _command_element(node: str, sessionid: str, reply: Reply) -> Element:
    command = Element("command", COMMANDS, {"node": node, "sessionid": sessionid,
                                            "status": reply.status})
    if reply.status == "executing" and reply.actions:
        actions = command.add("actions")
        if reply.default:
            actions.attrs["execute"] = reply.default
        for action in reply.actions:
            actions.add(action)
    for kind, text in reply.notes:
        command.add("note", attrs={"type": kind}, text=text)
    if reply.form is not None:
        command.append(reply.form)
    return command


def adhoc_module(server: Server) -> ModAdhoc | None:
    """The running mod_adhoc, for a module that registers commands (None when disabled)."""
    module = server.modules.get("mod_adhoc")
    return module if isinstance(module, ModAdhoc) else None
