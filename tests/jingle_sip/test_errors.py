"""mod_jingle_sip's bad input and failures, with slixmpp clients and a raw SIP socket: Jingle
errors (XEP-0166 §7.2 unknown-session, bad-request), Jingle between local users left alone, a
proxy that cannot be reached (TCP refused, UDP silent: retransmissions then Timer B), SIP
garbage (dropped) and malformed requests (400), 404/480/481/405, existing-session-initiate,
and a callee whose session ends while it rings (486)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.jingle_sip.conftest import JINGLE, bridge, jingle_client
from tests.jingle_sip.test_sipp import ANSWER, ICE, OFFER, terminate

ERRORS = "urn:xmpp:jingle:errors:1"


class RawSip(asyncio.DatagramProtocol):
    """A UDP socket speaking SIP by hand: what it receives waits in a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, text: str, port: int) -> None:
        head, _, body = text.partition("\n\n")
        head = head.strip().replace("\n", "\r\n").replace("PORT", str(self.port))
        data = f"{head}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        self.transport.sendto(data.encode(), ("127.0.0.1", port))

    async def next(self, timeout: float = 3.0) -> str:
        return (await asyncio.wait_for(self.received.get(), timeout)).decode()


async def raw_sip(port: int = 0) -> RawSip:
    _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        RawSip, local_addr=("127.0.0.1", port))
    return proto


def request(method: str, to: str, call_id: str, branch: str, cseq: str = "1",
            body: str = "") -> str:
    return f"""{method} sip:{to} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK{branch}
From: <sip:carol@sip.example>;tag=carol1
To: <sip:{to}>
Call-ID: {call_id}
CSeq: {cseq} {method}
Contact: <sip:carol@127.0.0.1:PORT>
Max-Forwards: 70
{"Content-Type: application/sdp" if body else ""}

{body}"""


SDP = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n" \
      "m=audio 49170 RTP/AVP 0\r\n"


async def error_of(coro: Any) -> Any:
    with pytest.raises(IqError) as err:
        await coro
    return err.value.iq


async def test_jingle_errors(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "alice@localhost/phone") as alice:
        # XEP-0166 §7.2: a session nobody knows
        iq = await error_of(alice.jingle_set(
            "bob@sip.example",
            f"<jingle xmlns='{JINGLE}' action='session-terminate' sid='nope'>"
            "<reason><success/></reason></jingle>"))
        assert iq["error"]["condition"] == "item-not-found"
        assert iq.xml.find(f"{{jabber:client}}error/{{{ERRORS}}}unknown-session") is not None
        for payload in [
            f"<jingle xmlns='{JINGLE}' action='session-initiate'/>",  # no sid
            f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s1'/>",  # no content
            f"<jingle xmlns='{JINGLE}' action='dance' sid='s1'/>",  # no such action
            # a content without transport
            f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s1'><content "
            "creator='initiator' name='a'><description xmlns='urn:xmpp:jingle:apps:rtp:1' "
            "media='audio'><payload-type id='0' name='PCMU' clockrate='8000'/>"
            "</description></content></jingle>",
        ]:
            iq = await error_of(alice.jingle_set("bob@sip.example", payload))
            assert iq["error"]["condition"] == "bad-request", payload
        assert len(b.module.calls) == 0


async def test_jingle_between_local_users_is_not_bridged(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "alice@localhost/phone") as alice, \
            jingle_client(b, "bob@localhost/desk") as bob:
        result = await alice.jingle_set("bob@localhost/desk", OFFER.format(sid="local"))
        assert result["type"] == "result"  # bob's own answer
        initiate = await bob.next_jingle("session-initiate")
        assert initiate.get("sid") == "local"
        assert len(b.module.calls) == 0


async def test_proxy_refusing_tcp_ends_the_call(tmp_path: Path) -> None:
    async with bridge(tmp_path, "tcp") as b, jingle_client(b, "alice@localhost/phone") as alice:
        await alice.jingle_set("bob@sip.example", OFFER.format(sid="tcp-down"))
        end = await alice.next_jingle("session-terminate")
        assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}connectivity-error") is not None
        assert len(b.module.calls) == 0


async def test_silent_udp_proxy_retransmissions_then_timer_b(tmp_path: Path) -> None:
    silent = await raw_sip()
    try:
        async with bridge(tmp_path, proxy_port=silent.port) as b, \
                jingle_client(b, "alice@localhost/phone") as alice:
            b.module.ua.t1 = 0.02  # Timer B = 64*T1 = 1.28 s
            await alice.jingle_set("bob@sip.example", OFFER.format(sid="udp-down"))
            end = await alice.next_jingle("session-terminate")
            assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}connectivity-error") is not None
            # RFC 3261 §17.1.1.2 Timer A: the same INVITE again at T1, 2*T1, 4*T1...
            sent = [silent.received.get_nowait() for _ in range(silent.received.qsize())]
            assert len(sent) >= 5 and len(set(sent)) == 1 and sent[0].startswith(b"INVITE")
    finally:
        silent.transport.close()


async def test_sip_garbage_and_bad_requests(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b:
        peer = await raw_sip()
        try:
            # not SIP at all: dropped (RFC 3261 §18.3), nothing comes back
            peer.transport.sendto(b"\x00\x01hello there\r\n\r\n", ("127.0.0.1", b.sip_port))
            with pytest.raises(TimeoutError):
                await peer.next(timeout=0.3)
            # a request whose CSeq is not one: 400
            peer.send(request("OPTIONS", "bob@localhost", "c0", "bad", cseq="x"), b.sip_port)
            assert (await peer.next()).startswith("SIP/2.0 400 ")
            # OPTIONS: 200 with what we allow; a retransmission gets the same answer
            peer.send(request("OPTIONS", "bob@localhost", "c1", "opt"), b.sip_port)
            first = await peer.next()
            assert first.startswith("SIP/2.0 200 ") and "Allow: INVITE, ACK, CANCEL" in first
            peer.send(request("OPTIONS", "bob@localhost", "c1", "opt"), b.sip_port)
            assert await peer.next() == first
            # a domain this server does not serve: 404; an account without an available
            # session: 480 (MongooseIM's answer); a dialog nobody knows: 481; SUBSCRIBE: 405
            for req, status in [
                (request("INVITE", "bob@elsewhere.example", "c2", "i1", body=SDP), "404"),
                (request("INVITE", "bob@localhost", "c3", "i2", body=SDP), "480"),
                (request("BYE", "bob@localhost", "c4", "b1"), "481"),
                (request("SUBSCRIBE", "bob@localhost", "c5", "s1"), "405"),
            ]:
                peer.send(req, b.sip_port)
                answer = await peer.next()
                assert answer.startswith(f"SIP/2.0 {status} "), answer
                if req.startswith("INVITE"):  # §17.1.1.3: the UAC acknowledges a non-2xx
                    peer.send(request("ACK", req.split()[1][4:], req.split("Call-ID: ")[1]
                                      .split("\n")[0], req.split("branch=z9hG4bK")[1]
                                      .split("\n")[0]), b.sip_port)
        finally:
            peer.transport.close()
        # on TCP, a message that cannot be framed (no Content-Length, §18.3) closes the stream
        reader, writer = await asyncio.open_connection("127.0.0.1", b.sip_port)
        writer.write(b"OPTIONS sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bKt"
                     b"\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_existing_session_initiate_and_a_callee_that_goes_away(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b:
        peer = await raw_sip()
        try:
            async with jingle_client(b, "bob@localhost/desk") as bob:
                peer.send(request("INVITE", "bob@localhost", "ring-1", "inv", body=SDP),
                          b.sip_port)
                assert (await peer.next()).startswith("SIP/2.0 180 ")
                first = await bob.next_jingle("session-initiate")
                # MongooseIM's existing-session-initiate: an IQ get to one's own bare JID
                iq = bob.make_iq_get(ito="bob@localhost")
                iq.append(ET.fromstring(f"<jingle xmlns='{JINGLE}' sid='ring-1' "
                                        "action='existing-session-initiate'/>"))
                assert (await iq.send(timeout=5))["type"] == "result"
                again = await bob.next_jingle("session-initiate")
                assert ET.tostring(again) == ET.tostring(first)
                iq = bob.make_iq_get(ito="bob@localhost")
                iq.append(ET.fromstring(f"<jingle xmlns='{JINGLE}' sid='other' "
                                        "action='existing-session-initiate'/>"))
                assert (await error_of(iq.send(timeout=5)))["error"]["condition"] == \
                    "item-not-found"
            # bob's only session ended while it rang: the call is refused
            assert (await peer.next()).startswith("SIP/2.0 486 ")
        finally:
            peer.transport.close()


async def test_200_is_resent_until_the_ack_and_info_becomes_transport_info(
        tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "bob@localhost/desk") as bob, \
            jingle_client(b, "bob@localhost/phone") as bob_phone:
        b.module.ua.t1 = 0.05
        peer = await raw_sip()
        try:
            peer.send(request("INVITE", "bob@localhost", "acked", "inv2", body=SDP), b.sip_port)
            ringing = await peer.next()
            assert ringing.startswith("SIP/2.0 180 ")
            # both resources ring; the desk answers, the phone stops ringing
            initiate = await bob.next_jingle("session-initiate")
            assert (await bob_phone.next_jingle("session-initiate")).get("sid") == "acked"
            await bob.jingle_set("carol@sip.example", ANSWER.format(sid=initiate.get("sid")))
            stop = await bob_phone.next_jingle("session-terminate")
            assert stop.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}cancel") is not None
            # RFC 3261 §13.3.1.4: the 2xx again (T1, 2*T1...) while no ACK comes
            ok = await peer.next()
            assert ok.startswith("SIP/2.0 200 ") and "a=candidate:9 1 udp" in ok
            assert await peer.next() == ok
            to = ok.split("\r\nTo: ")[1].split("\r\n")[0]
            ack = request("ACK", "bob@localhost", "acked", "ack2").replace(
                "To: <sip:bob@localhost>", f"To: {to}")
            peer.send(ack, b.sip_port)
            await asyncio.sleep(0.3)
            while not peer.received.empty():  # what was on its way before the ACK
                assert peer.received.get_nowait().decode() == ok
            await asyncio.sleep(0.3)
            assert peer.received.empty()
            # an INFO with a candidate: a transport-info for bob
            info = request("INFO", "bob@localhost", "acked", "info2", cseq="2", body=(
                "m=audio 9 RTP/AVP 0\r\na=mid:audio\r\na=ice-ufrag:cf\r\na=ice-pwd:cp\r\n"
                "a=candidate:5 1 udp 99 198.51.100.5 7000 typ relay\r\n")).replace(
                "To: <sip:bob@localhost>", f"To: {to}")
            peer.send(info, b.sip_port)
            assert (await peer.next()).startswith("SIP/2.0 200 ")
            update = await bob.next_jingle("transport-info")
            cand = update.find(f"{{{JINGLE}}}content/{{{ICE}}}transport/{{{ICE}}}candidate")
            assert cand is not None and (cand.get("ip"), cand.get("type")) == \
                ("198.51.100.5", "relay")
        finally:
            peer.transport.close()


async def test_username_to_phone_both_ways_and_486(tmp_path: Path) -> None:
    proxy = await raw_sip()
    mapping = ('username_to_phone = [{username = "alice", phone = "+12025550123"}, '
               '{username = "bob", phone = "+12025550199"}]')
    try:
        async with bridge(tmp_path, extra=mapping, proxy_port=proxy.port) as b, \
                jingle_client(b, "alice@localhost/phone") as alice:
            # alice calls bob@sip.example: both are numbers on the SIP side
            await alice.jingle_set("bob@sip.example", OFFER.format(sid="mapped"))
            invite = await proxy.next()
            assert invite.startswith(f"INVITE sip:+12025550199@localhost:{proxy.port}"
                                     ";transport=udp SIP/2.0\r\n")
            assert "\r\nFrom: <sip:+12025550123@localhost>;tag=" in invite
            assert "\r\nTo: <sip:+12025550199@sip.example>\r\n" in invite
            # the callee is busy: 486 -> session-terminate <decline/>, and our ACK
            busy = "SIP/2.0 486 Busy Here\r\n" + "".join(
                line + "\r\n" for line in invite.split("\r\n")[1:]
                if line.split(":")[0] in ("Via", "From", "Call-ID", "CSeq")) + \
                "To: <sip:+12025550199@sip.example>;tag=b1\r\nContent-Length: 0\r\n\r\n"
            proxy.transport.sendto(busy.encode(), ("127.0.0.1", b.sip_port))
            end = await alice.next_jingle("session-terminate")
            assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}decline") is not None
            ack = await proxy.next()
            while ack == invite:  # a retransmission that left before the 486 came
                ack = await proxy.next()
            assert ack.startswith("ACK ") and "CSeq: 1 ACK" in ack and ";tag=b1" in ack
            # and a number calling alice's number reaches alice, from bob
            proxy.send(request("INVITE", "+12025550123@localhost", "to-alice", "inv9",
                               body=SDP).replace("sip:carol@", "sip:+12025550199@"), b.sip_port)
            initiate = await alice.next_jingle("session-initiate")
            assert initiate.get("initiator") == "bob@sip.example"
    finally:
        proxy.transport.close()


async def test_a_200_never_acknowledged_ends_the_call(tmp_path: Path) -> None:
    peer = await raw_sip()  # the proxy: the bridge's requests (the BYE) go there
    async with bridge(tmp_path, proxy_port=peer.port) as b, \
            jingle_client(b, "bob@localhost/desk") as bob:
        b.module.ua.t1 = 0.01  # 64*T1 = 0.64 s
        try:
            peer.send(request("INVITE", "bob@localhost", "no-ack", "inv3", body=SDP), b.sip_port)
            initiate = await bob.next_jingle("session-initiate")
            await bob.jingle_set("carol@sip.example", ANSWER.format(sid=initiate.get("sid")))
            # RFC 3261 §13.3.1.4: no ACK within 64*T1: BYE, and bob hears of it
            end = await bob.next_jingle("session-terminate")
            assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}timeout") is not None
            received = [await peer.next() for _ in range(peer.received.qsize())]
            while not any(r.startswith("BYE ") for r in received):
                received.append(await peer.next())
            bye = next(r for r in received if r.startswith("BYE "))
            assert bye.startswith("BYE sip:carol@127.0.0.1:") and "Call-ID: no-ack" in bye
            assert len(b.module.calls) == 0
        finally:
            peer.transport.close()


async def test_a_busy_sip_port_is_said_with_its_option(tmp_path: Path) -> None:
    taken = await raw_sip()
    try:
        with pytest.raises(OSError, match="listen_port"):
            async with bridge(tmp_path, sip_port=taken.port):
                pass
    finally:
        taken.transport.close()


def answer(req: str, status: str, to_tag: str = "p1") -> bytes:
    """A response to ``req`` (its Via, From, Call-ID, CSeq; To with ``to_tag``)."""
    lines = req.split("\r\n")
    kept = [line for line in lines[1:] if line.split(":")[0] in ("Via", "From", "Call-ID",
                                                                  "CSeq")]
    to = next(line for line in lines if line.startswith("To: "))
    return (f"SIP/2.0 {status}\r\n" + "".join(line + "\r\n" for line in kept)
            + f"{to};tag={to_tag}\r\nContent-Length: 0\r\n\r\n").encode()


async def test_cancel_waits_for_a_provisional_response(tmp_path: Path) -> None:
    proxy = await raw_sip()
    try:
        async with bridge(tmp_path, proxy_port=proxy.port) as b:
            async with jingle_client(b, "alice@localhost/phone") as alice:
                await alice.jingle_set("bob@sip.example", OFFER.format(sid="early-bye"))
                invite = await proxy.next()
                # hung up before the callee's side said anything: RFC 3261 §9.1 forbids a
                # CANCEL yet; the session is over for the client all the same
                await alice.jingle_set("bob@sip.example", terminate("early-bye", "cancel"))
                iq = await error_of(alice.jingle_set("bob@sip.example",
                                                     terminate("early-bye", "cancel")))
                assert iq["error"]["condition"] == "item-not-found"
            # alice's session ended meanwhile: nothing more is sent for the call
            proxy.transport.sendto(answer(invite, "180 Ringing"), ("127.0.0.1", b.sip_port))
            cancel = await proxy.next()
            while cancel == invite:  # a retransmission from before the 180
                cancel = await proxy.next()
            assert cancel.startswith("CANCEL ") and "CSeq: 1 CANCEL" in cancel
            assert cancel.split("branch=")[1].split(";")[0] == \
                invite.split("branch=")[1].split(";")[0]  # the INVITE's branch (§9.1)
            proxy.transport.sendto(answer(cancel, "200 OK"), ("127.0.0.1", b.sip_port))
            proxy.transport.sendto(answer(invite, "487 Request Terminated"),
                                   ("127.0.0.1", b.sip_port))
            ack = await proxy.next()
            assert ack.startswith("ACK ") and "CSeq: 1 ACK" in ack
            await asyncio.sleep(0.2)
            assert proxy.received.empty()  # one CANCEL, no BYE
            assert len(b.module.calls) == 0
    finally:
        proxy.transport.close()
