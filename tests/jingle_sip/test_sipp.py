"""Calls between slixmpp users and SIPp through mod_jingle_sip: XMPP calls SIP (ringing,
session-accept with the SDP answer in Jingle, hangup as BYE), SIP calls XMPP (the SDP offer
in a session-initiate, session-accept as 200 with SDP, ACK, BYE), a declined call (486)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from suricate.modules.mod_jingle_sip.sip import SipMessage
from tests.jingle_sip.conftest import JINGLE, Bridge, bridge, free_port, jingle_client, sipp

RTP = "urn:xmpp:jingle:apps:rtp:1"
ICE = "urn:xmpp:jingle:transports:ice-udp:1"
DTLS = "urn:xmpp:jingle:apps:dtls:0"

OFFER = f"""
<jingle xmlns='{JINGLE}' action='session-initiate' sid='{{sid}}' initiator='alice@localhost/phone'>
  <content creator='initiator' name='audio' senders='both'>
    <description xmlns='{RTP}' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'>
        <parameter name='minptime' value='10'/>
        <parameter name='useinbandfec' value='1'/>
      </payload-type>
      <payload-type id='0' name='PCMU' clockrate='8000'/>
      <rtcp-mux/>
    </description>
    <transport xmlns='{ICE}' ufrag='alicefrag' pwd='alicepassword1234567890'>
      <fingerprint xmlns='{DTLS}' hash='sha-256' setup='actpass'>AA:BB:CC</fingerprint>
      <candidate component='1' foundation='1' generation='0' id='c1' ip='192.0.2.1'
                 network='0' port='40000' priority='2130706431' protocol='udp' type='host'/>
    </transport>
  </content>
</jingle>"""

ANSWER = f"""
<jingle xmlns='{JINGLE}' action='session-accept' sid='{{sid}}' responder='bob@localhost/desk'>
  <content creator='initiator' name='audio' senders='both'>
    <description xmlns='{RTP}' media='audio'>
      <payload-type id='0' name='PCMU' clockrate='8000'/>
    </description>
    <transport xmlns='{ICE}' ufrag='bobfrag' pwd='bobpassword1234567890ab'>
      <candidate component='1' foundation='9' generation='0' id='c9' ip='192.0.2.44'
                 network='0' port='41000' priority='2130706431' protocol='udp' type='host'/>
    </transport>
  </content>
</jingle>"""


TRANSPORT_INFO = f"""
<jingle xmlns='{JINGLE}' action='transport-info' sid='{{sid}}'>
  <content creator='initiator' name='audio'>
    <transport xmlns='{ICE}' ufrag='alicefrag' pwd='alicepassword1234567890'>
      <candidate component='1' foundation='2' generation='0' id='c2' ip='203.0.113.77'
                 network='0' port='40002' priority='1694498815' protocol='udp' type='srflx'
                 rel-addr='192.0.2.1' rel-port='40000'/>
    </transport>
  </content>
</jingle>"""


def terminate(sid: str, reason: str) -> str:
    return (f"<jingle xmlns='{JINGLE}' action='session-terminate' sid='{sid}'>"
            f"<reason><{reason}/></reason></jingle>")


def answer_of_next(b: Bridge, method: str) -> asyncio.Future[int]:
    """The status of the final response to the bridge's next ``method`` request."""
    ua = b.module.ua
    sent = ua.request
    answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def request(request: SipMessage, on_response: Callable[[SipMessage], None],
                      on_failure: Callable[[str], None], branch: str | None = None) -> Any:
        if request.method != method or answered.done():
            return await sent(request, on_response, on_failure, branch)

        def on_final(resp: SipMessage) -> None:
            on_response(resp)
            if (resp.status or 0) >= 200 and not answered.done():
                answered.set_result(resp.status or 0)

        return await sent(request, on_final, on_failure, branch)

    ua.request = request  # type: ignore[method-assign]
    return answered


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_xmpp_user_calls_a_sip_phone(tmp_path: Path, transport: str) -> None:
    async with bridge(tmp_path, transport) as b, \
            jingle_client(b, "alice@localhost/phone") as alice:
        phone = await sipp(tmp_path, "uas_answer.xml", b.proxy_port, transport=transport)
        try:
            result = await alice.jingle_set("bob@sip.example", OFFER.format(sid="call-1"))
            assert result["type"] == "result"
            ringing = await alice.next_jingle()
            assert ringing.get("action") == "session-info"
            assert ringing.find("{urn:xmpp:jingle:apps:rtp:info:1}ringing") is not None
            accept = await alice.next_jingle()
            assert (accept.get("action"), accept.get("sid")) == ("session-accept", "call-1")
            content = accept.find(f"{{{JINGLE}}}content")
            assert content is not None and content.get("name") == "audio"
            pts = content.findall(f"{{{RTP}}}description/{{{RTP}}}payload-type")
            assert [(p.get("id"), p.get("name"), p.get("clockrate"), p.get("channels"))
                    for p in pts] == [("111", "opus", "48000", "2")]
            ice = content.find(f"{{{ICE}}}transport")
            assert ice is not None
            assert (ice.get("ufrag"), ice.get("pwd")) == \
                ("bobfrag", "bobpassword1234567890ab")
            fingerprint = ice.find(f"{{{DTLS}}}fingerprint")
            assert fingerprint is not None
            assert (fingerprint.get("hash"), fingerprint.get("setup"), fingerprint.text) == \
                ("sha-256", "active", "DD:EE:FF")
            [cand] = ice.findall(f"{{{ICE}}}candidate")
            assert (cand.get("ip"), cand.get("port"), cand.get("type"), cand.get("priority")) \
                == ("198.51.100.7", "50000", "host", "2122260223")
            # a new candidate: an INFO of the dialog (SIPp checks its SDP)
            info_answered = answer_of_next(b, "INFO")
            await alice.jingle_set("bob@sip.example", TRANSPORT_INFO.format(sid="call-1"))
            # The bridge sends each in-dialog request when Jingle asks for it (RFC 3261 lets
            # their transactions overlap), and the phone's scenario answers the INFO before
            # it takes a BYE: a BYE 0.2 ms behind the INFO made SIPp abort the call. The
            # hangup waits for the phone's answer.
            assert await asyncio.wait_for(info_answered, 10) == 200
            # hangup: a BYE that SIPp answers, which ends its scenario successfully
            await alice.jingle_set("bob@sip.example", terminate("call-1", "success"))
            assert await phone.wait() == 0, phone.logs()
            assert len(b.module.calls) == 0
        finally:
            await phone.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sip_phone_calls_an_xmpp_user(tmp_path: Path, transport: str) -> None:
    async with bridge(tmp_path, transport) as b, jingle_client(b, "bob@localhost/desk") as bob:
        phone = await sipp(tmp_path, "uac_call.xml", free_port(), remote=b.sip_port,
                           transport=transport)
        try:
            initiate = await bob.next_jingle("session-initiate")
            sid = initiate.get("sid")
            assert initiate.get("initiator") == "carol@sip.example"
            content = initiate.find(f"{{{JINGLE}}}content")
            assert content is not None
            pts = content.findall(f"{{{RTP}}}description/{{{RTP}}}payload-type")
            assert [(p.get("id"), p.get("name"), p.get("clockrate")) for p in pts] == [
                ("0", "PCMU", "8000"), ("8", "PCMA", "8000"), ("101", "telephone-event", "8000")]
            assert {p.get("ptime") for p in pts} == {"20"}
            ice = content.find(f"{{{ICE}}}transport")
            assert ice is not None and ice.get("ufrag") == "carolfrag"
            cands = ice.findall(f"{{{ICE}}}candidate")
            assert [(c.get("type"), c.get("ip"), c.get("port"), c.get("rel-addr"))
                    for c in cands] == [("host", "203.0.113.5", "49170", None),
                                        ("srflx", "192.0.2.9", "55000", "203.0.113.5")]
            result = await bob.jingle_set("carol@sip.example", ANSWER.format(sid=sid))
            assert result["type"] == "result"
            # SIPp checks our 200's SDP, acknowledges it, sends a re-INVITE with a relay
            # candidate (MongooseIM: a transport-info for the user) and hangs up
            update = await bob.next_jingle()
            assert (update.get("action"), update.get("sid")) == ("transport-info", sid)
            relay = update.find(f"{{{JINGLE}}}content/{{{ICE}}}transport/{{{ICE}}}candidate")
            assert relay is not None
            assert (relay.get("type"), relay.get("ip"), relay.get("port")) == \
                ("relay", "198.51.100.99", "3478")
            end = await bob.next_jingle("session-terminate")
            assert end.get("sid") == sid
            assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}success") is not None
            assert await phone.wait() == 0, phone.logs()
        finally:
            await phone.stop()


async def test_xmpp_user_declines_a_sip_call(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "bob@localhost/desk") as bob:
        phone = await sipp(tmp_path, "uac_declined.xml", free_port(), remote=b.sip_port)
        try:
            initiate = await bob.next_jingle("session-initiate")
            await bob.jingle_set("carol@sip.example", terminate(initiate.get("sid", ""), "decline"))
            assert await phone.wait() == 0, phone.logs()  # it got 486 Busy Here
        finally:
            await phone.stop()


async def test_sip_caller_gives_up(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "bob@localhost/desk") as bob:
        phone = await sipp(tmp_path, "uac_cancel.xml", free_port(), remote=b.sip_port)
        try:
            initiate = await bob.next_jingle("session-initiate")
            end = await bob.next_jingle("session-terminate")
            assert end.get("sid") == initiate.get("sid")
            assert end.find(f"{{{JINGLE}}}reason/{{{JINGLE}}}cancel") is not None
            assert await phone.wait() == 0, phone.logs()  # 200 to CANCEL, 487 to the INVITE
        finally:
            await phone.stop()


async def test_xmpp_caller_gives_up_while_it_rings(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "alice@localhost/phone") as alice:
        phone = await sipp(tmp_path, "uas_cancelled.xml", b.proxy_port)
        try:
            await alice.jingle_set("bob@sip.example", OFFER.format(sid="call-2"))
            assert (await alice.next_jingle()).get("action") == "session-info"
            await alice.jingle_set("bob@sip.example", terminate("call-2", "cancel"))
            assert await phone.wait() == 0, phone.logs()  # CANCEL, then ACK of the 487
            assert len(b.module.calls) == 0
        finally:
            await phone.stop()


async def test_sip_error_ends_the_call_with_its_code(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "alice@localhost/phone") as alice:
        phone = await sipp(tmp_path, "uas_not_found.xml", b.proxy_port)
        try:
            await alice.jingle_set("nobody@sip.example", OFFER.format(sid="call-3"))
            end = await alice.next_jingle("session-terminate")
            reason = end.find(f"{{{JINGLE}}}reason")
            assert reason is not None
            assert reason.find(f"{{{JINGLE}}}general-error") is not None
            sip_error = reason.find(f"{{{JINGLE}}}sip-error")
            assert sip_error is not None and sip_error.get("code") == "404"
            assert await phone.wait() == 0, phone.logs()  # and it got our ACK of the 404
        finally:
            await phone.stop()
