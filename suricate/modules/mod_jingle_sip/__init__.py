"""mod_jingle_sip: MongooseIM 6.4's Jingle <-> SIP bridge.

A client's Jingle IQ set (XEP-0166) to a JID that is not XMPP here (a domain this server does
not serve and no component or service holds: ``bob@sip.example``) is taken off the router and
becomes SIP (RFC 3261), sent to the SIP proxy; SIP requests arriving on ``listen_port`` become
Jingle for the account they are addressed to. MongooseIM's translation table:

| Jingle | SIP |
|---|---|
| session-initiate | INVITE with the SDP of the RTP description and ICE-UDP transport |
| session-accept | 200 OK with SDP (then the peer's ACK) |
| session-terminate, accepted call | BYE |
| session-terminate by the caller, unanswered | CANCEL |
| session-terminate by the callee, unanswered | 486 Busy Here |
| transport-info | INFO with the candidates as SDP |
| source-add / source-remove / source-update | re-INVITE with ``a=jingle-action`` |

and back: INVITE -> session-initiate to every available resource (480 when there is none),
answered 180 Ringing; 180/183 -> session-info <ringing/>; 200 -> session-accept (and our
ACK); 486 -> session-terminate <decline/>; 487 after our CANCEL -> nothing more; other 4xx-6xx
-> session-terminate <general-error/> with <sip-error code=.../>; BYE -> <success/>;
CANCEL -> <cancel/>; re-INVITE -> the ``a=jingle-action`` of its SDP, else transport-info;
INFO with SDP candidates -> transport-info. A proxy that cannot be reached (no TCP
connection, or no final response within 64*T1 over UDP) ends the call with
<connectivity-error/>.

The client gets the IQ result at once (the server answers for the SIP peer); a session that
is not known is item-not-found with <unknown-session/> (XEP-0166 §7.2), a malformed Jingle
element bad-request. MongooseIM's own ``existing-session-initiate`` (an IQ get to one's own
bare JID) sends an unanswered incoming session-initiate again to the asking resource.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from suricate.config.spec import Int, ListOf, OneOf, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.module import Module
from suricate.jid import JID
from suricate.modules.mod_jingle_sip.calls import Call, CallTable
from suricate.modules.mod_jingle_sip.jingle_sdp import (
    JINGLE,
    JINGLE_ERRORS,
    RTP_INFO,
    JingleError,
    jingle_element,
    jingle_to_sdp,
    reason_element,
    sdp_to_jingle,
    transport_info_sdp,
)
from suricate.modules.mod_jingle_sip.sdp import SdpError, parse_sdp
from suricate.modules.mod_jingle_sip.sip import (
    SipMessage,
    SipParseError,
    name_addr_uri,
    new_tag,
    response_to,
    tag_of,
)
from suricate.modules.mod_jingle_sip.ua import ServerTransaction, SipUA
from suricate.protocol.errors import StanzaError, error_reply
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_jingle_sip")

#: The Jingle actions translated to SIP (MongooseIM 6.4's list).
TRANSLATED = frozenset({"session-initiate", "session-accept", "session-terminate",
                        "transport-info", "source-add", "source-remove", "source-update"})
#: Every action of XEP-0166 §7.2 (and jingle.js's source-*): others are bad-request.
KNOWN_ACTIONS = TRANSLATED | {
    "content-accept", "content-add", "content-modify", "content-reject", "content-remove",
    "description-info", "security-info", "session-info", "transport-accept",
    "transport-reject", "transport-replace"}
#: XEP-0166 §7.4 reason conditions.
REASONS_JINGLE = frozenset({
    "alternative-session", "busy", "cancel", "connectivity-error", "decline", "expired",
    "failed-application", "failed-transport", "general-error", "gone",
    "incompatible-parameters", "media-error", "security-error", "success", "timeout",
    "unsupported-applications", "unsupported-transports"})
#: A callee's refusal -> the final response to the INVITE (MongooseIM: 486 for a decline).
_REFUSAL = {"unsupported-applications": 488, "unsupported-transports": 488,
            "incompatible-parameters": 488, "failed-application": 488, "media-error": 488,
            "security-error": 488}
ALLOW = "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS"

USER_PHONE = Section({
    "username": Option(Str(), doc="The XMPP account's user name (local part)."),
    "phone": Option(Str(), doc='Its phone number on the SIP side ("+48123456789").'),
})


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Any) -> None:
    seen: dict[str, int] = {}
    for i, entry in enumerate(out.get("username_to_phone") or []):
        for key in ("username", "phone"):
            value = f"{key}:{entry[key]}"
            if value in seen:
                ctx.error(f"{path}.username_to_phone[{i}].{key}",
                          f"{entry[key]!r} is already mapped in username_to_phone"
                          f"[{seen[value]}]")
            seen[value] = i


class ModJingleSip(Module):
    name = "mod_jingle_sip"
    xeps = ("0166", "0167", "0176", "0177", "0320")
    options = Section(
        {
            "proxy_host": Option(Str(), "localhost",
                                 "Name or IP address of the SIP proxy every SIP request goes to."),
            "proxy_port": Option(Int(min=1, max=65535), 5600, "Port of the SIP proxy."),
            "listen_port": Option(Int(min=0, max=65535), 5600,
                                  "Port on which SIP requests are received (UDP and TCP)."),
            "local_host": Option(Str(), "localhost",
                                 "Host written in our SIP URIs (Via, Contact)."),
            "sdp_origin": Option(Str(), "127.0.0.1",
                                 "Address of the o= and session c= lines of the SDP we write."),
            "transport": Option(OneOf(["udp", "tcp"]), "udp",
                                "SIP transport used to reach the proxy."),
            "username_to_phone": Option(
                ListOf(USER_PHONE), [],
                "Accounts that are phone numbers on the SIP side: the user name is "
                "replaced by the number in SIP URIs, and the number by the user name in the "
                "other direction.", example='[{username = "alice", phone = "+12025550123"}]'),
            "backend": Option(
                OneOf(["mnesia", "cets"]), "mnesia",
                "Where MongooseIM keeps the calls.", inert=True,
                inert_reason="Suricate keeps each call in the memory of the node whose SIP "
                "agent carries it"),
        },
        post=_post,
        doc="Jingle <-> SIP bridge: Jingle calls to SIP users become SIP calls through a SIP "
            "proxy, and SIP calls reach XMPP users as Jingle.",
    )
    hooks = (
        (H.USER_SEND_PACKET, "outgoing", 75),
        (H.SESSION_CLOSED, "session_closed", 50),
    )

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.calls = CallTable()
        pairs = opts.get("username_to_phone") or []
        self.to_phone = {p["username"]: p["phone"] for p in pairs}
        self.from_phone = {p["phone"]: p["username"] for p in pairs}
        self.origin = str(opts.get("sdp_origin", "127.0.0.1"))
        self._iq_ids: dict[str, str] = {}  # ids of the IQs we sent users -> sid
        self.ua = SipUA(
            listen_port=int(opts.get("listen_port", 5600)),
            local_host=str(opts.get("local_host", "localhost")),
            proxy_host=str(opts.get("proxy_host", "localhost")),
            proxy_port=int(opts.get("proxy_port", 5600)),
            transport=str(opts.get("transport", "udp")),
            on_request=self.sip_request, on_cancel=self.sip_cancel, on_ack=self.sip_ack,
            on_ack_timeout=self.sip_ack_timeout)

    async def start(self) -> None:
        await self.ua.start()

    async def stop(self) -> None:
        await self.ua.stop()

    # -- JIDs <-> SIP URIs ---------------------------------------------------------------------
    def sip_user(self, jid: JID) -> str:
        user = jid.local or ""
        return quote(self.to_phone.get(user, user), safe="-_.!~*'()&=+$,;?/")

    def sip_uri(self, jid: JID) -> str:
        return f"sip:{self.sip_user(jid)}@{jid.domain}"

    def jid_of(self, header: str | None) -> JID:
        """From/To of a SIP message -> a bare JID; a mapped phone number -> its user name."""
        uri = name_addr_uri(header or "")
        user = unquote(uri.user or "")
        user = self.from_phone.get(user, user)
        try:
            return JID.parse(f"{user}@{uri.host}" if user else uri.host)
        except ValueError as exc:
            raise SipParseError(f"not a JID: {user}@{uri.host}") from exc

    # -- the client side -----------------------------------------------------------------------
    def outgoing(self, stanza: Element | None, c2s: C2S) -> Element | None:
        """USER_SEND_PACKET: kept cheap, it sees every stanza: names and attributes first."""
        if stanza is None or stanza.name != "iq":
            return stanza
        kind = stanza.attrs.get("type")
        if kind in ("result", "error"):
            # A client's answer to an IQ we sent it for a SIP peer: nobody to forward it to.
            if stanza.attrs.get("id") in self._iq_ids:
                self._iq_ids.pop(stanza.attrs["id"], None)
                return None
            return stanza
        jingle = stanza.find("jingle", JINGLE)
        if jingle is None or c2s.jid is None:
            return stanza
        try:
            to = JID.parse(stanza.attrs.get("to", ""))
        except ValueError:
            return stanza
        action = jingle.attrs.get("action")
        if kind == "get" and to.bare == c2s.jid.bare and action == "existing-session-initiate":
            self._existing_session_initiate(stanza, jingle, c2s.jid)
            return None
        if kind != "set" or self._is_xmpp(to):
            return stanza
        try:
            self._from_client(stanza, jingle, c2s.jid, to)
        except StanzaError as err:
            self._route_reply(to, c2s.jid, error_reply(stanza, err))
        return None

    def _is_xmpp(self, jid: JID) -> bool:
        return self.server.is_local_domain(jid.domain) \
            or self.server.components.lookup(jid.domain) is not None

    def _route_reply(self, frm: JID, to: JID, reply: Element) -> None:
        reply.attrs["from"], reply.attrs["to"] = str(frm), str(to)
        self.server.router.route(frm, to, reply)

    def _result(self, stanza: Element, frm: JID, to: JID) -> None:
        reply = Element("iq", ns.CLIENT, {"type": "result", "id": stanza.attrs.get("id", "")})
        self._route_reply(frm, to, reply)

    def _from_client(self, stanza: Element, jingle: Element, user: JID, peer: JID) -> None:
        action = jingle.attrs.get("action")
        sid = jingle.attrs.get("sid")
        if not action or action not in KNOWN_ACTIONS:
            raise StanzaError("bad-request", f"unknown Jingle action {action!r}")
        if not sid:
            raise StanzaError("bad-request", "a Jingle element needs a sid (XEP-0166 §7.1)")
        if action == "session-initiate":
            if sid in self.calls:
                raise StanzaError("conflict", "this sid is already in use")
            self._initiate(jingle, user, peer, sid)
            self._result(stanza, peer, user)
            return
        call = self.calls.get(sid)
        if call is None or call.state == "ending" or user.bare != call.user.bare \
                or peer.bare != call.peer.bare:
            # "ending": the user terminated it, only its INVITE transaction is left
            raise StanzaError("item-not-found", "no such session",
                              app_condition=Element("unknown-session", JINGLE_ERRORS))
        if action == "session-accept":
            self._accept(call, jingle, user)
        elif action == "session-terminate":
            self._terminate(call, jingle, user)
        elif action == "transport-info":
            self._transport_info(call, jingle)
        elif action in ("source-add", "source-remove", "source-update"):
            self._reinvite(call, jingle, action)
        elif action != "session-info":
            # XEP-0166 §7.2: the SIP side has no counterpart for content-* and the others.
            raise StanzaError("feature-not-implemented",
                              f"{action} is not translated to SIP")
        # session-info (ringing, mute, hold: XEP-0167 §7) needs nothing from SIP: acknowledged.
        self._result(stanza, peer, user)

    # -- Jingle -> SIP -------------------------------------------------------------------------
    def _initiate(self, jingle: Element, user: JID, peer: JID, sid: str) -> None:
        try:
            translated = jingle_to_sdp(jingle, self.origin, "initiator")
        except (JingleError, ValueError) as exc:
            raise StanzaError("bad-request", str(exc)) from exc
        ua = self.ua
        # MongooseIM's Request-URI: the callee's user at the proxy; To names the callee.
        request_uri = f"sip:{self.sip_user(peer)}@{ua.proxy[0]}:{ua.proxy[1]}" \
                      f";transport={ua.transport}"
        call = Call(sid, "out", user, peer, f"<{self.sip_uri(user.bare)}>",
                    f"<{self.sip_uri(peer.bare)}>", new_tag(), remote_target=request_uri,
                    media_by_content=translated.media_by_content, local_sdp=translated.sdp)
        invite = self._in_dialog(call, "INVITE", request_uri, cseq=1)
        invite.headers.append(("Content-Type", "application/sdp"))
        invite.body = translated.sdp.encode()
        self.calls.add(call)
        self.server.spawn(self._send_invite(call, invite))

    async def _send_invite(self, call: Call, invite: SipMessage) -> None:
        call.invite_tx = await self.ua.request(
            invite, lambda resp: self._invite_response(call, resp),
            lambda why: self._invite_failed(call, why))

    def _in_dialog(self, call: Call, method: str, uri: str | None = None,
                   cseq: int | None = None) -> SipMessage:
        """A request of ``call``'s dialog (§12.2.1.1): From/To with the tags, Call-ID, the
        next CSeq, the remote target as Request-URI and the route set as Route."""
        msg = SipMessage(method=method, uri=uri or call.remote_target)
        remote = call.remote_uri + (f";tag={call.remote_tag}" if call.remote_tag else "")
        msg.headers.extend([
            ("Max-Forwards", "70"),
            ("From", f"{call.local_uri};tag={call.local_tag}"),
            ("To", remote),
            ("Call-ID", call.sid),
            ("CSeq", f"{cseq if cseq is not None else call.next_cseq()} {method}"),
        ])
        msg.headers.extend(("Route", route) for route in call.route_set)
        if method == "INVITE":  # §8.1.1.8: where the peer reaches us within the dialog
            msg.headers.append(("Contact", self._contact(call)))
        return msg

    def _contact(self, call: Call) -> str:
        return f"<{self.ua.contact_uri(name_addr_uri(call.local_uri).user or 'suricate')}>"

    def _accept(self, call: Call, jingle: Element, user: JID) -> None:
        if call.direction != "in" or call.state == "accepted" or call.invite_stx is None:
            raise StanzaError("unexpected-request", "this session cannot be accepted",
                              app_condition=Element("out-of-order", JINGLE_ERRORS))
        try:
            translated = jingle_to_sdp(jingle, self.origin, "responder")
        except (JingleError, ValueError) as exc:
            raise StanzaError("bad-request", str(exc)) from exc
        call.local_sdp = translated.sdp
        call.media_by_content.update(translated.media_by_content)
        ok = self._response(call, call.invite_stx.request, 200)
        ok.headers.append(("Content-Type", "application/sdp"))
        ok.body = translated.sdp.encode()
        call.invite_stx.respond(ok)
        call.state = "accepted"
        others = [r for r in call.rung if r != user]
        call.user, call.rung = user, [user]
        # The call goes on with this resource: the others stop ringing (as MongooseIM does).
        for other in others:
            self._send_jingle(call.peer, other, jingle_element(call.sid, "session-terminate", [
                reason_element("cancel", "answered by another resource")]))
        self._flush_info(call)

    def _response(self, call: Call, request: SipMessage, status: int) -> SipMessage:
        resp = response_to(request, status, call.local_tag)
        if 100 < status < 300:  # §12.1.1: a dialog-creating response has a Contact
            resp.headers.append(("Contact", self._contact(call)))
        if status == 405 or request.method == "OPTIONS":
            resp.headers.append(("Allow", ALLOW))
        return resp

    def _terminate(self, call: Call, jingle: Element, user: JID) -> None:
        reason_el = jingle.find("reason", JINGLE)
        condition = "success"
        if reason_el is not None:
            conditions = [e.name for e in reason_el.elements() if e.name in REASONS_JINGLE]
            condition = conditions[0] if conditions else "general-error"
        if call.state == "accepted":
            self._bye(call)
        elif call.direction == "out":
            call.state = "ending"
            if call.invite_tx is not None and call.invite_tx.provisional:
                self._cancel(call)
            else:
                call.cancel_pending = True  # §9.1: CANCEL waits for a provisional response
                return  # the call stays until its INVITE transaction ends
        elif call.invite_stx is not None:
            status = _REFUSAL.get(condition, 486)
            call.invite_stx.respond(self._response(call, call.invite_stx.request, status))
            for other in call.rung:
                if other != user:
                    self._send_jingle(call.peer, other, jingle_element(
                        call.sid, "session-terminate", [reason_element(condition)]))
        self.calls.remove(call)

    def _bye(self, call: Call) -> None:
        bye = self._in_dialog(call, "BYE")
        self.server.spawn(self.ua.request(
            bye, lambda resp: None, lambda why: log.info("sip_bye_failed sid=%s", call.sid)))

    def _cancel(self, call: Call) -> None:
        """§9.1: the INVITE's Request-URI, Call-ID, From, To, CSeq number and top Via
        (same branch), method CANCEL."""
        tx = call.invite_tx
        assert tx is not None
        invite = tx.request
        cancel = SipMessage(method="CANCEL", uri=invite.uri)
        for name in ("Max-Forwards", "From", "To", "Call-ID"):
            cancel.headers.append((name, invite.header(name) or ""))
        cancel.headers.append(("CSeq", f"{invite.cseq[0]} CANCEL"))
        cancel.headers.extend(("Route", r) for r in invite.header_values("Route"))
        self.server.spawn(self.ua.request(
            cancel, lambda resp: None,
            lambda why: log.info("sip_cancel_failed sid=%s", call.sid), branch=tx.branch))

    def _transport_info(self, call: Call, jingle: Element) -> None:
        try:
            body = transport_info_sdp(jingle, self.origin, call.media_by_content)
        except (JingleError, ValueError) as exc:
            raise StanzaError("bad-request", str(exc)) from exc
        call.pending_info.append(body)
        # A callee's candidates wait for its 200 (the INVITE's answer goes first); a
        # caller's go as soon as the callee's side opened an early dialog.
        if call.has_dialog and (call.direction == "out" or call.state == "accepted"):
            self._flush_info(call)

    def _flush_info(self, call: Call) -> None:
        """INFO needs a dialog (RFC 6086 §4.2.1: early or confirmed): candidates a client
        sent before the peer's first response wait for it."""
        bodies, call.pending_info = call.pending_info, []
        for body in bodies:
            info = self._in_dialog(call, "INFO")
            info.headers.append(("Content-Type", "application/sdp"))
            info.body = body.encode()
            self.server.spawn(self.ua.request(
                info, lambda resp: None,
                lambda why: log.info("sip_info_failed sid=%s", call.sid)))

    def _reinvite(self, call: Call, jingle: Element, action: str) -> None:
        if not call.has_dialog:
            raise StanzaError("unexpected-request", "no SIP dialog yet",
                              app_condition=Element("out-of-order", JINGLE_ERRORS))
        try:
            translated = jingle_to_sdp(jingle, self.origin, "initiator"
                                       if call.direction == "out" else "responder",
                                       [("jingle-action", action)])
        except (JingleError, ValueError) as exc:
            raise StanzaError("bad-request", str(exc)) from exc
        invite = self._in_dialog(call, "INVITE")
        invite.headers.append(("Content-Type", "application/sdp"))
        invite.body = translated.sdp.encode()

        def answered(resp: SipMessage) -> None:
            if resp.status is not None and 200 <= resp.status < 300:
                self.ua.send_ack(self._ack(call, resp))

        self.server.spawn(self.ua.request(
            invite, answered, lambda why: log.info("sip_reinvite_failed sid=%s", call.sid)))

    def _ack(self, call: Call, resp: SipMessage) -> SipMessage:
        """§13.2.2.4: the ACK of a 2xx, in the dialog, with the INVITE's CSeq number."""
        number, _ = resp.cseq
        return self._in_dialog(call, "ACK", cseq=number)

    # -- SIP responses to our INVITE -> Jingle -------------------------------------------------
    def _invite_response(self, call: Call, resp: SipMessage) -> None:
        status = resp.status or 0
        to_tag = tag_of(resp.header("To"))
        if to_tag and (call.remote_tag is None or status >= 200):
            call.remote_tag = to_tag  # an early dialog (§12.1.2), confirmed by the 2xx
            contact = resp.header_values("Contact")
            if contact:
                call.remote_target = str(name_addr_uri(contact[0]))
            # §12.1.2: the route set is the Record-Route of the response, reversed.
            call.route_set = list(reversed(resp.header_values("Record-Route")))
        if status < 200:
            if call.cancel_pending:
                call.cancel_pending = False
                self._cancel(call)
                return
            if status in (180, 183) and not call.rang and call.state != "ending":
                call.rang = True
                call.state = "early"
                self._send_jingle(call.peer, call.user, jingle_element(
                    call.sid, "session-info", [Element("ringing", RTP_INFO)]))
            if call.has_dialog:
                self._flush_info(call)
            return
        if 200 <= status < 300:
            self.ua.send_ack(self._ack(call, resp), call.invite_tx)
            if call.state == "ending":  # the caller hung up meanwhile: end the dialog
                call.state = "accepted"
                self._bye(call)
                self.calls.remove(call)
                return
            call.state = "accepted"
            try:
                contents = sdp_to_jingle(resp.body, "responder")
            except (JingleError, SdpError, ValueError) as exc:
                log.info("sip_bad_answer sid=%s error=%s", call.sid, exc)
                self._bye(call)
                self._end(call, reason_element("failed-application", "unreadable SDP answer"))
                return
            self._send_jingle(call.peer, call.user, jingle_element(
                call.sid, "session-accept", contents, responder=str(call.peer)))
            self._flush_info(call)
            return
        if status == 487 and call.state == "ending":
            self.calls.remove(call)  # our CANCEL worked (§9.1): the caller already knows
            return
        if status == 486:
            self._end(call, reason_element("decline"))
            return
        sip_error = Element("sip-error", JINGLE, {"code": str(status)}, [resp.reason])
        self._end(call, reason_element("general-error", f"SIP {status} {resp.reason}",
                                       sip_error))

    def _invite_failed(self, call: Call, why: str) -> None:
        log.info("sip_invite_failed sid=%s reason=%s", call.sid, why)
        self._end(call, reason_element("connectivity-error", why))

    def _end(self, call: Call, reason: Element) -> None:
        """The SIP side ended the call: the XMPP side hears session-terminate."""
        if self.calls.get(call.sid) is not call:
            return
        self.calls.remove(call)
        if call.state == "ending":
            return  # the XMPP user ended it first
        for target in call.rung or [call.user]:
            self._send_jingle(call.peer, target, jingle_element(
                call.sid, "session-terminate", [reason]))

    def _send_jingle(self, frm: JID, to: JID, jingle: Element) -> None:
        iq_id = "jsip-" + secrets.token_hex(6)
        self._iq_ids[iq_id] = jingle.attrs.get("sid", "")
        if len(self._iq_ids) > 10000:  # answers that never came: forget the oldest
            for key in list(self._iq_ids)[:1000]:
                del self._iq_ids[key]
        iq = Element("iq", ns.CLIENT, {"type": "set", "id": iq_id, "from": str(frm),
                                       "to": str(to)}, [jingle])
        self.server.router.route(frm, to, iq)

    # -- SIP requests -> Jingle ------------------------------------------------------------------
    def sip_request(self, req: SipMessage, stx: ServerTransaction) -> None:
        method = req.method
        try:
            if method == "INVITE" and tag_of(req.header("To")) is None:
                self._incoming_invite(req, stx)
                return
            if method == "OPTIONS":
                resp = response_to(req, 200, new_tag())
                resp.headers.append(("Allow", ALLOW))
                stx.respond(resp)
                return
            if method not in ("INVITE", "BYE", "INFO"):
                resp = response_to(req, 405, new_tag())
                resp.headers.append(("Allow", ALLOW))
                stx.respond(resp)
                return
            call = self.calls.get(req.call_id)
            if call is None or (call.remote_tag is not None
                                and tag_of(req.header("From")) != call.remote_tag):
                stx.respond(response_to(req, 481, new_tag()))  # §12.2.2
                return
            if method == "BYE":
                stx.respond(self._response(call, req, 200))
                self._end(call, reason_element("success"))
            elif method == "INFO":
                stx.respond(self._response(call, req, 200))
                self._incoming_info(call, req)
            else:
                self._incoming_reinvite(call, req, stx)
        except SipParseError as exc:
            stx.respond(response_to(req, 400, new_tag(), f"Bad Request ({str(exc)[:60]})"))

    def _incoming_invite(self, req: SipMessage, stx: ServerTransaction) -> None:
        callee = self.jid_of(req.header("To"))
        caller = self.jid_of(req.header("From"))
        tag = new_tag()
        if not self.server.is_local_domain(callee.domain) or callee.local is None:
            stx.respond(response_to(req, 404, tag))
            return
        if req.call_id in self.calls or not req.call_id:
            stx.respond(response_to(req, 400, tag, "Bad Request (Call-ID in use)"))
            return
        resources = [s.jid for s in self.server.sessions.available(callee)]
        if not resources:
            # MongooseIM: an offline recipient is 480 Temporarily Unavailable.
            stx.respond(response_to(req, 480, tag))
            return
        try:
            contents = sdp_to_jingle(req.body, "initiator")
        except (JingleError, SdpError, ValueError) as exc:
            resp = response_to(req, 488, tag)
            resp.headers.append(("Warning", f'399 {self.ua.local_host} "{str(exc)[:80]}"'))
            stx.respond(resp)
            return
        sdp = parse_sdp(req.body)
        contact = req.header_values("Contact")
        call = Call(req.call_id, "in", callee, caller,
                    local_uri=_without_tag(req.header("To") or ""),
                    remote_uri=_without_tag(req.header("From") or ""),
                    local_tag=tag, remote_tag=tag_of(req.header("From")) or "",
                    remote_target=str(name_addr_uri(contact[0])) if contact else req.uri or "",
                    route_set=req.header_values("Record-Route"),
                    local_cseq=secrets.randbelow(10000) + 1, invite_stx=stx,
                    media_by_content={m.value("mid") or m.media: m.media for m in sdp.media})
        call.initiate = jingle_element(call.sid, "session-initiate", contents,
                                       initiator=str(caller))
        call.rung = resources
        self.calls.add(call)
        for resource in resources:
            self._send_jingle(caller, resource, call.initiate.copy())
        # MongooseIM answers 180 Ringing once the user's resources have the invitation.
        stx.respond(self._response(call, req, 180))
        call.state = "early"

    def _incoming_info(self, call: Call, req: SipMessage) -> None:
        if not req.body or "sdp" not in (req.header("Content-Type") or "").lower():
            return  # not candidates (DTMF and the like): acknowledged, not translated
        try:
            contents = sdp_to_jingle(req.body, "initiator", with_description=False)
        except (JingleError, SdpError, ValueError) as exc:
            log.info("sip_info_unreadable sid=%s error=%s", call.sid, exc)
            return
        for target in call.rung or [call.user]:
            self._send_jingle(call.peer, target, jingle_element(
                call.sid, "transport-info", contents))

    def _incoming_reinvite(self, call: Call, req: SipMessage, stx: ServerTransaction) -> None:
        try:
            sdp = parse_sdp(req.body)
            writer = "initiator" if call.direction == "in" else "responder"
            contents = sdp_to_jingle(req.body, writer)
        except (JingleError, SdpError, ValueError):
            stx.respond(response_to(req, 488, call.local_tag))
            return
        # MongooseIM: the action comes from a=jingle-action, else transport-info.
        action = sdp.value("jingle-action") or "transport-info"
        if action not in ("source-add", "source-remove", "source-update", "transport-info"):
            action = "transport-info"
        for target in call.rung or [call.user]:
            self._send_jingle(call.peer, target, jingle_element(call.sid, action, contents))
        ok = self._response(call, req, 200)
        if call.local_sdp:  # §14.2: the answer to the offer: what our side last described
            ok.headers.append(("Content-Type", "application/sdp"))
            ok.body = call.local_sdp.encode()
        stx.respond(ok)

    def sip_cancel(self, invite: SipMessage) -> None:
        call = self.calls.get(invite.call_id)
        if call is not None and call.direction == "in" and call.state != "accepted":
            self._end(call, reason_element("cancel"))

    def sip_ack(self, ack: SipMessage) -> None:
        """The ACK of our 2xx: the dialog is confirmed (§13.3.1.4); nothing to tell."""

    def sip_ack_timeout(self, invite: SipMessage) -> None:
        """§13.3.1.4: no ACK for our 2xx within 64*T1: the UAS ends the dialog with BYE,
        and the XMPP side hears that the session timed out."""
        call = self.calls.get(invite.call_id)
        if call is not None and call.direction == "in" and call.state == "accepted":
            self._bye(call)
            self._end(call, reason_element("timeout", "the SIP side never acknowledged"))

    # -- MongooseIM's existing-session-initiate ------------------------------------------------
    def _existing_session_initiate(self, stanza: Element, jingle: Element, user: JID) -> None:
        call = self.calls.get(jingle.attrs.get("sid"))
        own = JID(user.local, user.domain, None)
        if call is None or call.direction != "in" or call.initiate is None \
                or call.state == "accepted" or call.user.bare != user.bare:
            self._route_reply(own, user, error_reply(stanza, StanzaError(
                "item-not-found", "no unanswered session with this sid",
                app_condition=Element("unknown-session", JINGLE_ERRORS))))
            return
        if user not in call.rung:
            call.rung.append(user)
        self._send_jingle(call.peer, user, call.initiate.copy())
        self._result(stanza, own, user)

    # -- sessions that end -----------------------------------------------------------------------
    async def session_closed(self, acc: Any, c2s: C2S, reason: str) -> Any:
        """The user's session is gone: its calls end on the SIP side too (BYE, CANCEL, or
        486 when it was the last resource ringing)."""
        jid = c2s.jid
        if jid is None:
            return acc
        for call in self.calls.of_user(jid):
            if call.state == "ending":
                continue  # already terminated by the user, waiting for SIP to finish
            if call.direction == "in" and call.state != "accepted":
                call.rung = [r for r in call.rung if r != jid]
                if call.rung:
                    continue
            gone = jingle_element(call.sid, "session-terminate", [reason_element("gone")])
            self._terminate(call, gone, jid)
        return acc


def _without_tag(value: str) -> str:
    """A From/To value without its header parameters (the tag): our side of the dialog."""
    return value.split(";tag=")[0] if ">" not in value else value[:value.rindex(">") + 1]

