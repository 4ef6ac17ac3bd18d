"""SDP <-> Jingle (XEP-0167 §8, XEP-0176, XEP-0177, XEP-0320, XEP-0338, XEP-0293/0294/0339)
and SIP message parsing (RFC 3261 §7), without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.config import parse_config
from suricate.config.spec import ConfigError
from suricate.modules.mod_jingle_sip.jingle_sdp import (
    DTLS,
    GROUPING,
    HDREXT,
    ICE_UDP,
    JINGLE,
    RAW_UDP,
    RTCP_FB,
    RTP,
    SSMA,
    JingleError,
    jingle_to_sdp,
    sdp_to_jingle,
    transport_info_sdp,
)
from suricate.modules.mod_jingle_sip.sdp import parse_sdp
from suricate.modules.mod_jingle_sip.sip import (
    SipParseError,
    frame,
    name_addr_uri,
    parse,
    response_to,
    tag_of,
)
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment

WEBRTC = f"""<jingle xmlns='{JINGLE}' action='session-initiate' sid='s1'>
  <group xmlns='{GROUPING}' semantics='BUNDLE'><content name='0'/><content name='1'/></group>
  <content creator='initiator' name='0' senders='both'>
    <description xmlns='{RTP}' media='audio'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2' ptime='20'>
        <parameter name='minptime' value='10'/>
        <rtcp-fb xmlns='{RTCP_FB}' type='transport-cc'/>
      </payload-type>
      <payload-type id='126' name='telephone-event' clockrate='8000'>
        <parameter name='' value='0-15'/>
      </payload-type>
      <rtp-hdrext xmlns='{HDREXT}' id='1' uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
      <rtcp-mux/>
      <source xmlns='{SSMA}' ssrc='1234'><parameter name='cname' value='x1'/></source>
    </description>
    <transport xmlns='{ICE_UDP}' ufrag='uf' pwd='pw'>
      <fingerprint xmlns='{DTLS}' hash='sha-256' setup='actpass'>01:02</fingerprint>
      <candidate component='1' foundation='1' generation='0' id='a' ip='10.0.0.1' network='0'
                 port='5000' priority='100' protocol='udp' type='host'/>
      <candidate component='1' foundation='2' generation='0' id='b' ip='192.0.2.1' network='0'
                 port='6000' priority='200' protocol='udp' type='srflx' rel-addr='10.0.0.1'
                 rel-port='5000'/>
    </transport>
  </content>
  <content creator='initiator' name='1' senders='initiator'>
    <description xmlns='{RTP}' media='video'>
      <payload-type id='96' name='VP8' clockrate='90000'>
        <rtcp-fb xmlns='{RTCP_FB}' type='nack' subtype='pli'/>
      </payload-type>
    </description>
    <transport xmlns='{ICE_UDP}' ufrag='uf' pwd='pw'/>
  </content>
</jingle>"""


def jingle(text: str) -> Element:
    [element] = parse_fragment(text)
    return element


def test_jingle_offer_to_sdp() -> None:
    sdp = jingle_to_sdp(jingle(WEBRTC), "192.0.2.10", "initiator").sdp
    lines = sdp.split("\r\n")
    assert lines[:3] == ["v=0", lines[1], "s=-"] and lines[1].endswith(" IN IP4 192.0.2.10")
    assert "a=group:BUNDLE 0 1" in lines
    audio = sdp.split("m=video")[0].split("\r\n")
    # the default candidate (RFC 8839 §4.2.1): the best component-1 one
    assert "m=audio 6000 UDP/TLS/RTP/SAVPF 111 126" in audio
    assert "c=IN IP4 192.0.2.1" in audio
    for line in ["a=mid:0", "a=sendrecv", "a=rtpmap:111 opus/48000/2",
                 "a=fmtp:111 minptime=10", "a=rtcp-fb:111 transport-cc",
                 "a=rtpmap:126 telephone-event/8000", "a=fmtp:126 0-15", "a=ptime:20",
                 "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=rtcp-mux",
                 "a=ssrc:1234 cname:x1", "a=ice-ufrag:uf", "a=ice-pwd:pw",
                 "a=fingerprint:sha-256 01:02", "a=setup:actpass",
                 "a=candidate:1 1 udp 100 10.0.0.1 5000 typ host generation 0",
                 "a=candidate:2 1 udp 200 192.0.2.1 6000 typ srflx raddr 10.0.0.1 rport 5000 "
                 "generation 0"]:
        assert line in audio, line
    video = ("m=video" + sdp.split("m=video")[1]).split("\r\n")
    # no candidates: port 9; senders=initiator written by the initiator is sendonly
    assert video[0] == "m=video 9 RTP/AVP 96"
    assert "a=sendonly" in video and "a=rtcp-fb:96 nack pli" in video


def test_senders_are_seen_from_the_writer() -> None:
    el = jingle(WEBRTC)
    answer = jingle_to_sdp(el, "192.0.2.10", "responder").sdp
    assert "a=recvonly" in answer.split("m=video")[1]  # only the initiator sends
    [_, video] = [c for c in sdp_to_jingle(answer, "responder") if c.name == "content"]
    assert video.attrs["senders"] == "initiator"


def test_round_trip_keeps_the_media() -> None:
    sdp = jingle_to_sdp(jingle(WEBRTC), "192.0.2.10", "initiator").sdp
    out = sdp_to_jingle(sdp, "initiator")
    group, = [e for e in out if e.name == "group"]
    assert group.xmlns == GROUPING and [c.attrs["name"] for c in group.elements()] == ["0", "1"]
    audio = [e for e in out if e.name == "content"][0]
    assert audio.attrs == {"creator": "initiator", "name": "0", "senders": "both"}
    desc = audio.find("description", RTP)
    assert desc is not None
    opus = desc.find("payload-type", RTP)
    assert opus is not None and opus.attrs["ptime"] == "20"
    assert {k: opus.attrs[k] for k in ("id", "name", "clockrate", "channels")} == \
        {"id": "111", "name": "opus", "clockrate": "48000", "channels": "2"}
    assert [(p.attrs["name"], p.attrs["value"]) for p in opus.find_all("parameter", RTP)] == \
        [("minptime", "10")]
    assert opus.find("rtcp-fb", RTCP_FB) is not None
    assert desc.find("rtcp-mux", RTP) is not None
    hdrext = desc.find("rtp-hdrext", HDREXT)
    assert hdrext is not None and hdrext.attrs["id"] == "1"
    source = desc.find("source", SSMA)
    assert source is not None and source.attrs["ssrc"] == "1234"
    transport = audio.find("transport", ICE_UDP)
    assert transport is not None
    assert (transport.attrs["ufrag"], transport.attrs["pwd"]) == ("uf", "pw")
    fp = transport.find("fingerprint", DTLS)
    assert fp is not None and (fp.attrs, fp.text) == (
        {"hash": "sha-256", "setup": "actpass"}, "01:02")
    cands = transport.find_all("candidate", ICE_UDP)
    assert [(c.attrs["foundation"], c.attrs["type"], c.attrs.get("rel-port")) for c in cands] \
        == [("1", "host", None), ("2", "srflx", "5000")]


def test_plain_sip_phone_gets_raw_udp_and_static_payloads() -> None:
    # XEP-0177: no ICE in the SDP; RFC 3551: payload 0 and 8 need no a=rtpmap
    sdp = "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n" \
          "m=audio 49170 RTP/AVP 0 8\r\na=sendrecv\r\n"
    content, = sdp_to_jingle(sdp, "initiator")
    desc = content.find("description", RTP)
    assert desc is not None
    assert [(p.attrs["id"], p.attrs["name"]) for p in desc.find_all("payload-type", RTP)] == \
        [("0", "PCMU"), ("8", "PCMA")]
    transport = content.find("transport", RAW_UDP)
    assert transport is not None
    assert [(c.attrs["component"], c.attrs["ip"], c.attrs["port"])
            for c in transport.find_all("candidate", RAW_UDP)] == [
        ("1", "203.0.113.5", "49170"), ("2", "203.0.113.5", "49171")]
    # and back: the raw-udp candidate is the m= port and c= address
    jingle_el = Element("jingle", JINGLE, {"action": "session-accept", "sid": "x"}, [content])
    back = jingle_to_sdp(jingle_el, "192.0.2.10", "responder").sdp
    assert "m=audio 49170 RTP/AVP 0 8\r\nc=IN IP4 203.0.113.5\r\n" in back
    assert "a=ice-ufrag" not in back


def test_transport_info_sdp_carries_only_candidates() -> None:
    el = jingle(f"""<jingle xmlns='{JINGLE}' action='transport-info' sid='s1'>
      <content creator='initiator' name='0'><transport xmlns='{ICE_UDP}' ufrag='u' pwd='p'>
        <candidate component='1' foundation='3' generation='0' id='c' ip='198.51.100.1'
                   network='0' port='3478' priority='5' protocol='udp' type='relay'
                   rel-addr='192.0.2.1' rel-port='6000'/>
      </transport></content></jingle>""")
    body = transport_info_sdp(el, "192.0.2.10", {"0": "audio"})
    media = parse_sdp(body).media
    assert [(m.media, m.value("mid"), m.value("ice-ufrag")) for m in media] == \
        [("audio", "0", "u")]
    assert media[0].values("candidate") == [
        "3 1 udp 5 198.51.100.1 3478 typ relay raddr 192.0.2.1 rport 6000 generation 0"]
    # read back as an INFO: a transport-only content
    content, = sdp_to_jingle(body, "initiator", with_description=False)
    assert content.find("description", RTP) is None
    assert content.find("transport", ICE_UDP) is not None


@pytest.mark.parametrize("bad", [
    f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s'/>",
    f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s'><content name='a' "
    f"creator='initiator'><transport xmlns='{ICE_UDP}'/></content></jingle>",
    f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s'><content name='a' "
    f"creator='initiator'><description xmlns='{RTP}' media='audio'/><transport "
    f"xmlns='{ICE_UDP}'/></content></jingle>",
    f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s'><content name='a' "
    f"creator='initiator'><description xmlns='{RTP}' media='audio'><payload-type id='x'/>"
    f"</description><transport xmlns='{ICE_UDP}'/></content></jingle>",
    f"<jingle xmlns='{JINGLE}' action='session-initiate' sid='s'><content name='a' "
    f"creator='initiator' senders='everyone'><description xmlns='{RTP}' media='audio'>"
    f"<payload-type id='0'/></description><transport xmlns='{ICE_UDP}'/></content></jingle>",
])
def test_malformed_jingle(bad: str) -> None:
    with pytest.raises(JingleError):
        jingle_to_sdp(jingle(bad), "192.0.2.10", "initiator")


@pytest.mark.parametrize("bad", ["hello", "m=audio x RTP/AVP 0", "v=0\r\nc=IN IP4\r\n"])
def test_malformed_sdp(bad: str) -> None:
    with pytest.raises(ValueError):
        sdp_to_jingle(bad, "initiator")


INVITE = (b"INVITE sip:bob@localhost SIP/2.0\r\n"
          b"v: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKabc;rport\r\n"
          b"f: \"Carol\" <sip:carol@sip.example>;tag=t1\r\n"
          b"t: <sip:bob@localhost>\r\n"
          b"i: call-9\r\n"
          b"CSeq: 7 INVITE\r\n"
          b"Subject: a folded\r\n  header\r\n"
          b"l: 4\r\n\r\nbodyEXTRA")


def test_sip_parse_compact_and_folded_headers() -> None:
    msg = parse(INVITE)
    assert (msg.method, msg.uri, msg.call_id, msg.cseq) == \
        ("INVITE", "sip:bob@localhost", "call-9", (7, "INVITE"))
    assert msg.top_branch == "z9hG4bKabc"
    assert msg.header("subject") == "a folded header"
    assert msg.body == b"body"  # Content-Length cuts what follows
    assert tag_of(msg.header("From")) == "t1"
    assert str(name_addr_uri(msg.header("From") or "")) == "sip:carol@sip.example"
    resp = response_to(msg, 180, "mytag")
    assert resp.header("To") == "<sip:bob@localhost>;tag=mytag"
    assert resp.header("Via") == msg.header("Via")
    assert parse(resp.to_bytes()).status == 180


@pytest.mark.parametrize("bad", [
    b"garbage\r\n\r\n",
    INVITE.replace(b"i: call-9\r\n", b""),  # no Call-ID
    INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE"),
    INVITE.replace(b"l: 4", b"l: 400"),  # a body shorter than announced
    b"SIP/2.0 999 What\r\n\r\n",
])
def test_sip_parse_errors(bad: bytes) -> None:
    with pytest.raises(SipParseError):
        parse(bad)


def test_stream_framing() -> None:
    stream = b"\r\n\r\n" + INVITE[:-5] + INVITE[:50]
    cut = frame(stream)
    assert cut is not None
    message, rest = cut
    assert parse(message).body == b"body" and rest == INVITE[:50]
    assert frame(rest) is None  # incomplete: wait for more
    with pytest.raises(SipParseError):
        frame(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")  # no Content-Length on a stream


GENERAL = '[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n'


@pytest.mark.parametrize(("toml", "expected"), [
    ('transport = "tls"', "modules.mod_jingle_sip.transport: expected one of udp, tcp"),
    ("proxy_port = 0", "modules.mod_jingle_sip.proxy_port: "),
    ('username_to_phone = [{username = "a"}]',
     "modules.mod_jingle_sip.username_to_phone[0].phone: missing required option"),
    ('username_to_phone = [{username = "a", phone = "+1"}, {username = "a", phone = "+2"}]',
     "modules.mod_jingle_sip.username_to_phone[1].username: 'a' is already mapped in "
     "username_to_phone[0]"),
])
def test_config_errors_name_the_toml_path(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GENERAL + f"[modules.mod_jingle_sip]\n{toml}\n", Path("/nonexistent"))
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(expected) for p in found), found


def test_config_defaults_are_64s() -> None:
    cfg = parse_config(GENERAL + "[modules.mod_jingle_sip]\n", Path("/nonexistent"))
    opts = cfg["modules"]["mod_jingle_sip"]
    assert {k: opts[k] for k in ("proxy_host", "proxy_port", "listen_port", "local_host",
                                  "sdp_origin", "transport", "username_to_phone")} == {
        "proxy_host": "localhost", "proxy_port": 5600, "listen_port": 5600,
        "local_host": "localhost", "sdp_origin": "127.0.0.1", "transport": "udp",
        "username_to_phone": []}
