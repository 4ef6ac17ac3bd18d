"""Jingle <-> SDP: the <content/> elements of a Jingle RTP session and the m= sections of an
SDP offer or answer, both ways.

The mapping is the one the XEPs define for interworking with SIP:
- XEP-0167 §8 (RTP description): media, payload-type -> m= formats, a=rtpmap (id name/
  clockrate[/channels]), a=fmtp (the <parameter/>s), ptime/maxptime; senders -> a=sendrecv/
  sendonly/recvonly/inactive (seen from whoever writes the SDP); rtcp-mux (RFC 5761);
- XEP-0176 §10 / RFC 8839 §5 (ICE-UDP): ufrag/pwd -> a=ice-ufrag/a=ice-pwd, <candidate/> ->
  a=candidate; the m= port and c= address are the default candidate's (RFC 8839 §4.2.1);
- XEP-0177 (raw UDP): a SIP endpoint without ICE gets its c= address and m= port as one
  raw-udp candidate (and port+1 for RTCP unless rtcp-mux);
- XEP-0320 §4 (DTLS-SRTP): <fingerprint hash setup/> -> a=fingerprint, a=setup, and the
  UDP/TLS/RTP/SAVPF profile (RFC 5764 §8);
- XEP-0338 (grouping): <group semantics/> -> a=group; XEP-0293 rtcp-fb -> a=rtcp-fb;
  XEP-0294 rtp-hdrext -> a=extmap; XEP-0339 <source/> -> a=ssrc.

Pure functions over ``Element``; ``JingleError`` says which input was malformed (the caller
answers bad-request, RFC 6120 §8.3.3.1).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from suricate.modules.mod_jingle_sip.sdp import Media, Sdp, new_origin, parse_sdp, render_sdp
from suricate.xml.element import Element

JINGLE = "urn:xmpp:jingle:1"
JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
RTP = "urn:xmpp:jingle:apps:rtp:1"
RTP_INFO = "urn:xmpp:jingle:apps:rtp:info:1"
ICE_UDP = "urn:xmpp:jingle:transports:ice-udp:1"
RAW_UDP = "urn:xmpp:jingle:transports:raw-udp:1"
DTLS = "urn:xmpp:jingle:apps:dtls:0"
GROUPING = "urn:xmpp:jingle:apps:grouping:0"
RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"

#: RFC 3551 §6: the static payload types a SIP peer may offer without an a=rtpmap.
STATIC_PAYLOADS = {
    "0": ("PCMU", "8000", "1"), "3": ("GSM", "8000", "1"), "4": ("G723", "8000", "1"),
    "8": ("PCMA", "8000", "1"), "9": ("G722", "8000", "1"), "18": ("G729", "8000", "1"),
    "26": ("JPEG", "90000", "1"), "31": ("H261", "90000", "1"), "34": ("H263", "90000", "1"),
}

#: senders (XEP-0166 §7.1) <-> SDP direction, as written by the initiator / the responder.
_DIRECTION = {
    "initiator": {"both": "sendrecv", "initiator": "sendonly", "responder": "recvonly",
                  "none": "inactive"},
    "responder": {"both": "sendrecv", "initiator": "recvonly", "responder": "sendonly",
                  "none": "inactive"},
}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class JingleError(ValueError):
    """A Jingle element that cannot be translated (bad-request)."""


@dataclass(frozen=True, slots=True)
class Translated:
    """A Jingle element's SDP, and what the session keeps of it (media per content name,
    for the m= lines of later transport-info)."""

    sdp: str
    media_by_content: dict[str, str]


def _need(el: Element, attr: str) -> str:
    value = el.attrs.get(attr)
    if not value:
        raise JingleError(f"<{el.name}/> without {attr}")
    return value


# -- Jingle -> SDP ------------------------------------------------------------------------------

def jingle_to_sdp(jingle: Element, origin_address: str, writer: str,
                  extra_session_attrs: Sequence[tuple[str, str | None]] = ()) -> Translated:
    """The SDP of a session-initiate (``writer`` "initiator") or session-accept ("responder")
    and of the re-INVITEs of source-add/remove/update."""
    contents = jingle.find_all("content", JINGLE)
    if not contents:
        raise JingleError("no <content/>")
    sdp = Sdp(origin=new_origin(origin_address), connection=origin_address)
    sdp.attrs.extend(extra_session_attrs)
    for group in jingle.find_all("group", GROUPING):
        names = [_need(c, "name") for c in group.find_all("content")]
        sdp.attrs.append(("group", " ".join([group.attrs.get("semantics", "BUNDLE"), *names])))
    media_by_content: dict[str, str] = {}
    for content in contents:
        media = content_to_media(content, writer)
        media_by_content[_need(content, "name")] = media.media
        sdp.media.append(media)
    return Translated(render_sdp(sdp), media_by_content)


def content_to_media(content: Element, writer: str) -> Media:
    name = _need(content, "name")
    desc = content.find("description", RTP)
    if desc is None:
        raise JingleError(f"content {name!r} has no RTP <description/> (XEP-0167)")
    media_type = _need(desc, "media")
    transport = content.find("transport", ICE_UDP) or content.find("transport", RAW_UDP)
    if transport is None:
        raise JingleError(f"content {name!r} has no ICE-UDP or raw-UDP <transport/>")
    fingerprint = transport.find("fingerprint", DTLS)
    proto = "UDP/TLS/RTP/SAVPF" if fingerprint is not None else "RTP/AVP"
    media = Media(media_type, 9, proto, [])
    attrs = media.attrs
    attrs.append(("mid", name))
    senders = content.attrs.get("senders", "both")
    if senders not in _DIRECTION[writer]:
        raise JingleError(f"content {name!r}: senders {senders!r}")
    attrs.append((_DIRECTION[writer][senders], None))
    ptime: str | None = None
    maxptime: str | None = None
    for pt in desc.find_all("payload-type", RTP):
        pid = _need(pt, "id")
        if not pid.isdigit() or int(pid) > 127:
            raise JingleError(f"payload-type id {pid!r}")
        media.fmts.append(pid)
        if pt.attrs.get("name"):
            rtpmap = f"{pid} {pt.attrs['name']}/{pt.attrs.get('clockrate', '8000')}"
            channels = pt.attrs.get("channels", "1")
            if channels != "1":
                rtpmap += f"/{channels}"
            attrs.append(("rtpmap", rtpmap))
        params = []
        for p in pt.find_all("parameter", RTP):
            pname, pvalue = p.attrs.get("name", ""), p.attrs.get("value", "")
            params.append(f"{pname}={pvalue}" if pname else pvalue)
        if params:
            attrs.append(("fmtp", f"{pid} {';'.join(params)}"))
        for fb in pt.find_all("rtcp-fb", RTCP_FB):
            attrs.append(("rtcp-fb", _rtcp_fb(pid, fb)))
        ptime = ptime or pt.attrs.get("ptime")
        maxptime = maxptime or pt.attrs.get("maxptime")
    if not media.fmts:
        raise JingleError(f"content {name!r} has no <payload-type/>")
    for fb in desc.find_all("rtcp-fb", RTCP_FB):
        attrs.append(("rtcp-fb", _rtcp_fb("*", fb)))
    if ptime:
        attrs.append(("ptime", ptime))
    if maxptime:
        attrs.append(("maxptime", maxptime))
    for ext in desc.find_all("rtp-hdrext", HDREXT):
        ext_senders = ext.attrs.get("senders", "both")
        direction = "" if ext_senders == "both" else \
            "/" + _DIRECTION[writer].get(ext_senders, "sendrecv")
        attrs.append(("extmap", f"{_need(ext, 'id')}{direction} {_need(ext, 'uri')}"))
    if desc.find("rtcp-mux", RTP) is not None:
        attrs.append(("rtcp-mux", None))
    for source in desc.find_all("source", SSMA):
        ssrc = _need(source, "ssrc")
        for p in source.find_all("parameter", SSMA):
            value = p.attrs.get("value")
            attrs.append(("ssrc", f"{ssrc} {_need(p, 'name')}" + (f":{value}" if value else "")))
    _transport_to_attrs(transport, media)
    return media


def _rtcp_fb(pid: str, fb: Element) -> str:
    subtype = fb.attrs.get("subtype")
    return f"{pid} {_need(fb, 'type')}" + (f" {subtype}" if subtype else "")


def _transport_to_attrs(transport: Element, media: Media) -> None:
    candidates = transport.find_all("candidate", transport.xmlns)
    if transport.xmlns == ICE_UDP:
        if transport.attrs.get("ufrag"):
            media.attrs.append(("ice-ufrag", transport.attrs["ufrag"]))
        if transport.attrs.get("pwd"):
            media.attrs.append(("ice-pwd", transport.attrs["pwd"]))
        fingerprint = transport.find("fingerprint", DTLS)
        if fingerprint is not None:
            media.attrs.append(("fingerprint", f"{_need(fingerprint, 'hash')} "
                                               f"{fingerprint.text.strip()}"))
            if fingerprint.attrs.get("setup"):
                media.attrs.append(("setup", fingerprint.attrs["setup"]))
        for cand in candidates:
            media.attrs.append(("candidate", candidate_line(cand)))
    # RFC 8839 §4.2.1: m=/c= carry the default candidate, the best RTP (component 1) one.
    rtp = [c for c in candidates if c.attrs.get("component", "1") == "1"]
    if rtp:
        best = max(rtp, key=lambda c: int(c.attrs.get("priority", "0") or 0))
        port = best.attrs.get("port", "9")
        if not port.isdigit():
            raise JingleError(f"candidate port {port!r}")
        media.port = int(port)
        media.connection = _need(best, "ip")
        if transport.xmlns == RAW_UDP:
            rtcp = [c for c in candidates if c.attrs.get("component") == "2"]
            if rtcp and rtcp[0].attrs.get("port") != str(media.port + 1):
                media.attrs.append(("rtcp", rtcp[0].attrs.get("port", "")))


def candidate_line(cand: Element) -> str:
    """XEP-0176 <candidate/> -> the value of a=candidate (RFC 8839 §5.1)."""
    line = " ".join([
        _need(cand, "foundation"), _need(cand, "component"),
        cand.attrs.get("protocol", "udp"), _need(cand, "priority"), _need(cand, "ip"),
        _need(cand, "port"), "typ", cand.attrs.get("type", "host")])
    if cand.attrs.get("rel-addr") and cand.attrs.get("rel-port"):
        line += f" raddr {cand.attrs['rel-addr']} rport {cand.attrs['rel-port']}"
    if cand.attrs.get("tcptype"):
        line += f" tcptype {cand.attrs['tcptype']}"
    if cand.attrs.get("generation"):
        line += f" generation {cand.attrs['generation']}"
    return line


def transport_info_sdp(jingle: Element, origin_address: str,
                       media_by_content: dict[str, str]) -> str:
    """The body of the INFO a transport-info becomes: per content an m= line (port 9, the
    "discard" placeholder of RFC 8840 §9.1), its a=mid, ICE credentials and candidates."""
    contents = jingle.find_all("content", JINGLE)
    if not contents:
        raise JingleError("transport-info without <content/>")
    sdp = Sdp(origin=new_origin(origin_address), connection=origin_address)
    for content in contents:
        name = _need(content, "name")
        transport = content.find("transport", ICE_UDP) or content.find("transport", RAW_UDP)
        if transport is None:
            raise JingleError(f"content {name!r} has no <transport/>")
        media = Media(media_by_content.get(name, "audio"), 9, "RTP/AVP", ["0"])
        media.attrs.append(("mid", name))
        _transport_to_attrs(transport, media)
        sdp.media.append(media)
    return render_sdp(sdp)


# -- SDP -> Jingle ------------------------------------------------------------------------------

def sdp_to_jingle(body: str | bytes, writer: str, with_description: bool = True) -> list[Element]:
    """The <content/>s (and <group/>s) for the Jingle element of an SDP offer (``writer``
    "initiator": an INVITE) or answer ("responder": a 200). ``with_description`` False gives
    transport-only contents (an INFO's candidates)."""
    sdp = parse_sdp(body)
    if not sdp.media:
        raise JingleError("SDP without m= lines")
    out: list[Element] = []
    session_dir = next((k for k, _ in sdp.attrs if k in _DIRECTIONS), "sendrecv")
    session_fp = sdp.value("fingerprint")
    session_setup = sdp.value("setup")
    for media in sdp.media:
        name = media.value("mid") or media.media
        direction = next((k for k, _ in media.attrs if k in _DIRECTIONS), session_dir)
        senders = {v: k for k, v in _DIRECTION[writer].items()}[direction]
        content = Element("content", JINGLE, {"creator": "initiator", "name": name,
                                               "senders": senders})
        if with_description:
            content.append(_description(media))
        content.append(_transport(media, sdp, session_fp, session_setup))
        out.append(content)
    for group in sdp.values("group"):
        semantics, *names = group.split()
        el = Element("group", GROUPING, {"semantics": semantics})
        for n in names:
            el.add("content", GROUPING, {"name": n})
        out.append(el)
    return out


def _description(media: Media) -> Element:
    desc = Element("description", RTP, {"media": media.media})
    rtpmaps: dict[str, tuple[str, str, str]] = {}
    for value in media.values("rtpmap"):
        pid, _, encoding = value.partition(" ")
        parts = encoding.strip().split("/")
        if len(parts) < 2:
            raise JingleError(f"bad a=rtpmap:{value}")
        rtpmaps[pid] = (parts[0], parts[1], parts[2] if len(parts) > 2 else "1")
    fmtps: dict[str, str] = {}
    for value in media.values("fmtp"):
        pid, _, params = value.partition(" ")
        fmtps[pid] = params.strip()
    fbs: dict[str, list[list[str]]] = {}
    for value in media.values("rtcp-fb"):
        pid, *rest = value.split()
        if rest:
            fbs.setdefault(pid, []).append(rest)
    ptime, maxptime = media.value("ptime"), media.value("maxptime")
    for pid in media.fmts:
        name, clockrate, channels = rtpmaps.get(pid) or STATIC_PAYLOADS.get(pid, ("", "", "1"))
        attrs = {"id": pid}
        if name:
            attrs.update(name=name, clockrate=clockrate, channels=channels)
        if ptime:
            attrs["ptime"] = ptime
        if maxptime:
            attrs["maxptime"] = maxptime
        pt = desc.add("payload-type", RTP, attrs)
        for param in filter(None, (p.strip() for p in fmtps.get(pid, "").split(";"))):
            pname, eq, pvalue = param.partition("=")
            pt.add("parameter", RTP, {"name": pname.strip(), "value": pvalue.strip()} if eq
                   else {"name": "", "value": param})
        for fb in fbs.get(pid, []):
            pt.append(_fb_element(fb))
    for fb in fbs.get("*", []):
        desc.append(_fb_element(fb))
    for value in media.values("extmap"):
        ident, _, uri = value.partition(" ")
        ext_id, _, direction = ident.partition("/")
        senders = {v: k for k, v in _DIRECTION["initiator"].items()}.get(direction, "both")
        desc.add("rtp-hdrext", HDREXT, {"id": ext_id, "uri": uri.split()[0] if uri else "",
                                        "senders": senders})
    if media.has("rtcp-mux"):
        desc.add("rtcp-mux", RTP)
    sources: dict[str, Element] = {}
    for value in media.values("ssrc"):
        ssrc, _, attr = value.partition(" ")
        source = sources.get(ssrc)
        if source is None:
            source = sources[ssrc] = desc.add("source", SSMA, {"ssrc": ssrc})
        pname, colon, pvalue = attr.partition(":")
        source.add("parameter", SSMA, {"name": pname, "value": pvalue} if colon
                   else {"name": pname})
    return desc


def _fb_element(fb: list[str]) -> Element:
    attrs = {"type": fb[0]}
    if len(fb) > 1:
        attrs["subtype"] = " ".join(fb[1:])
    return Element("rtcp-fb", RTCP_FB, attrs)


def _transport(media: Media, sdp: Sdp, session_fp: str | None,
               session_setup: str | None) -> Element:
    ufrag = media.value("ice-ufrag") or sdp.value("ice-ufrag")
    pwd = media.value("ice-pwd") or sdp.value("ice-pwd")
    candidates = media.values("candidate")
    address = media.connection or sdp.connection
    if ufrag is None and not candidates:
        # XEP-0177: no ICE at all, the peer sends and listens on its c= address and m= port.
        transport = Element("transport", RAW_UDP)
        if address and media.port:
            transport.add("candidate", RAW_UDP, {
                "component": "1", "generation": "0", "id": _id(), "ip": address,
                "port": str(media.port), "type": "host"})
            if not media.has("rtcp-mux"):
                rtcp = (media.value("rtcp") or str(media.port + 1)).split()[0]
                transport.add("candidate", RAW_UDP, {
                    "component": "2", "generation": "0", "id": _id(), "ip": address,
                    "port": rtcp, "type": "host"})
        return transport
    transport = Element("transport", ICE_UDP)
    if ufrag:
        transport.attrs["ufrag"] = ufrag
    if pwd:
        transport.attrs["pwd"] = pwd
    fp = media.value("fingerprint") or session_fp
    if fp:
        hash_name, _, value = fp.partition(" ")
        attrs = {"hash": hash_name}
        setup = media.value("setup") or session_setup
        if setup:
            attrs["setup"] = setup
        transport.add("fingerprint", DTLS, attrs, value.strip())
    for line in candidates:
        transport.append(_candidate(line))
    return transport


def _candidate(line: str) -> Element:
    """a=candidate (RFC 8839 §5.1) -> XEP-0176 <candidate/>."""
    parts = line.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise JingleError(f"bad a=candidate:{line}")
    foundation, component, protocol, priority, ip, port = parts[:6]
    attrs = {"foundation": foundation.removeprefix("candidate:"), "component": component,
             "protocol": protocol.lower(), "priority": priority, "ip": ip, "port": port,
             "type": parts[7], "generation": "0", "network": "0", "id": _id()}
    extra = parts[8:]
    names = {"raddr": "rel-addr", "rport": "rel-port", "generation": "generation",
             "tcptype": "tcptype", "network-id": "network"}
    for key, value in zip(extra[::2], extra[1::2], strict=False):
        if key in names:
            attrs[names[key]] = value
    return Element("candidate", ICE_UDP, attrs)


def _id() -> str:
    return secrets.token_hex(5)


def jingle_element(sid: str, action: str, children: list[Element],
                   **attrs: str) -> Element:
    jingle = Element("jingle", JINGLE, {"action": action, "sid": sid, **attrs})
    jingle.children.extend(children)
    return jingle


def reason_element(condition: str, text: str | None = None,
                   extra: Element | None = None) -> Element:
    """XEP-0166 §7.4 <reason/>: one condition, optional text, optional extra element."""
    reason = Element("reason", JINGLE)
    reason.add(condition, JINGLE)
    if text:
        reason.add("text", JINGLE, text=text)
    if extra is not None:
        reason.append(extra)
    return reason
