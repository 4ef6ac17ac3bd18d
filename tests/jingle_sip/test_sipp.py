"""Calls between slixmpp users and SIPp through mod_jingle_sip: XMPP calls SIP (ringing,
session-accept with the SDP answer in Jingle, hangup as BYE), SIP calls XMPP (the SDP offer
in a session-initiate, session-accept as 200 with SDP, ACK, BYE), a declined call (486)."""

from __future__ import annotations

from pathlib import Path

from tests.jingle_sip.conftest import JINGLE, bridge, free_port, jingle_client, sipp

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


def terminate(sid: str, reason: str) -> str:
    return (f"<jingle xmlns='{JINGLE}' action='session-terminate' sid='{sid}'>"
            f"<reason><{reason}/></reason></jingle>")


async def test_xmpp_user_calls_a_sip_phone(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "alice@localhost/phone") as alice:
        phone = await sipp(tmp_path, "uas_answer.xml", b.proxy_port)
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
            transport = content.find(f"{{{ICE}}}transport")
            assert transport is not None
            assert (transport.get("ufrag"), transport.get("pwd")) == \
                ("bobfrag", "bobpassword1234567890ab")
            fingerprint = transport.find(f"{{{DTLS}}}fingerprint")
            assert fingerprint is not None
            assert (fingerprint.get("hash"), fingerprint.get("setup"), fingerprint.text) == \
                ("sha-256", "active", "DD:EE:FF")
            [cand] = transport.findall(f"{{{ICE}}}candidate")
            assert (cand.get("ip"), cand.get("port"), cand.get("type"), cand.get("priority")) \
                == ("198.51.100.7", "50000", "host", "2122260223")
            # hangup: a BYE that SIPp answers, which ends its scenario successfully
            await alice.jingle_set("bob@sip.example", terminate("call-1", "success"))
            assert await phone.wait() == 0, phone.logs()
            assert len(b.server.modules["mod_jingle_sip"].calls) == 0
        finally:
            await phone.stop()


async def test_sip_phone_calls_an_xmpp_user(tmp_path: Path) -> None:
    async with bridge(tmp_path) as b, jingle_client(b, "bob@localhost/desk") as bob:
        phone = await sipp(tmp_path, "uac_call.xml", free_port(), remote=b.sip_port)
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
            transport = content.find(f"{{{ICE}}}transport")
            assert transport is not None and transport.get("ufrag") == "carolfrag"
            cands = transport.findall(f"{{{ICE}}}candidate")
            assert [(c.get("type"), c.get("ip"), c.get("port"), c.get("rel-addr"))
                    for c in cands] == [("host", "203.0.113.5", "49170", None),
                                        ("srflx", "192.0.2.9", "55000", "203.0.113.5")]
            result = await bob.jingle_set("carol@sip.example", ANSWER.format(sid=sid))
            assert result["type"] == "result"
            # SIPp checks our 200's SDP, acknowledges it and hangs up
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
            await bob.jingle_set("carol@sip.example", terminate(initiate.get("sid"), "decline"))
            assert await phone.wait() == 0, phone.logs()  # it got 486 Busy Here
        finally:
            await phone.stop()
