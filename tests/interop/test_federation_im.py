"""Instant messaging and presence across federation as users live it, against a real
Prosody 0.12 (one per module, SASL EXTERNAL both ways): what happens when the other side is
offline, does not exist, restarts or crashes.

- errors come back, never a silent drop: a message to an account the peer does not have
  (service-unavailable from the peer, RFC 6121 §8.5.2.2.1), a message or a contact request
  to a domain nobody serves (remote-server-not-found, RFC 6120 §8.3.3.16), the peer down,
  a stanza bigger than the peer takes (policy-violation, the next ones still delivered);
- messages to offline users are kept by the other side's offline storage, both ways
  (RFC 6121 §8.5.2.2.1), also for a full JID whose resource is gone (§8.5.3.2.1);
- subscription requests to offline users wait for their next login (§3.1.3), the approval
  brings the contact's presence (§3.1.5), probes after a new login (§4.3.2), directed
  presence is ended at logout (§4.6.3), a pre-approval answers a later request (§3.4), an
  approval or a cancellation made while the user is away is in the roster at login;
- vCards (XEP-0054) and the servers' disco#info (XEP-0030) across servers;
- a Suricate restart: the peer's users see ours go offline, and back (probes after restart);
- a peer crash and restart: our users' stanzas bounce while it is down, and reach it again as
  soon as it is back;
- a probe to a user with no available resource is answered unavailable (§4.3.2);
- XEP-0198 on s2s both ways: stanzas the peer received but never acknowledged before it
  crashed bounce with remote-server-timeout instead of being lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.jid import JID
from tests.e2e.harness import Client, disconnect, eventually, free_port
from tests.interop import peers as P
from tests.interop.test_federation_interop import require_peers, suricate_toml
from tests.interop.test_federation_muc_pep import chat, login
from tests.s2s.harness import federated_server, register

pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("fixed-ports")]

PLUGINS = ("xep_0030", "xep_0054", "xep_0199")


async def _roster_has(server: Any, user: str, contact: str, **fields: Any) -> bool:
    """Whether ``user``'s roster item for Prosody's ``contact`` has these fields (state
    the server reaches once the peer's presence has crossed s2s)."""
    item = await server.modules["mod_roster"].get_roster_item(
        JID.parse(f"{user}@{P.SURICATE}"), f"{contact}@{P.PROSODY}")
    return item is not None and all(getattr(item, k) == v for k, v in fields.items())
AUTH = "external"
CLIENT = "jabber:client"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
# The peer's accounts: one set per test (the Prosody lives for the module).
PEER_USERS = ("paula", "pete", "pia", "poppy", "pam", "pat", "pip")


@pytest.fixture(scope="module")
def peers() -> Iterator[P.Peers]:
    require_peers()
    peers = P.make_peers()
    try:
        # mod_offline keeps messages and mod_vcard_legacy serves vcard-temp (XEP-0054)
        # mod_smacks: XEP-0198 on s2s too (Prosody's default configuration loads it)
        peers.start_prosody(dict.fromkeys(PEER_USERS, "pass"),
                            modules=("offline", "vcard_legacy", "smacks"))
        yield peers
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(peers)


async def user(jid: str, ip: str, port: int) -> Client:
    """A logged-in client that asked for its roster (an interested resource, RFC 6121
    §2.1.6) and collects every message and presence of type error (slixmpp's "message"
    event wants a body)."""
    client = await login(jid, ip, port, PLUGINS)
    client.errors = asyncio.Queue()  # type: ignore[attr-defined]
    for kind in ("message", "presence"):
        client.register_handler(Callback(
            f"{kind} errors", StanzaPath(f"{kind}@type=error"),
            client.errors.put_nowait))  # type: ignore[attr-defined]
    await client.get_roster(timeout=10)
    return client


async def ours(server: Any, name: str) -> Client:
    return await user(f"{name}@{P.SURICATE}/s", "127.0.0.1", server.c2s_port)


async def theirs(peers: P.Peers, name: str, resource: str = "t") -> Client:
    return await user(f"{name}@{P.PROSODY}/{resource}", P.PROSODY_IP,
                      peers.c2s_ports[P.PROSODY])


async def presence(client: Client, frm: str, type_: str = "available",
                   timeout: float = 10) -> Any:
    """The next presence from ``frm`` (a bare JID: any of its resources) of ``type_``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.presences.get(), deadline - loop.time())
        if str(pres["from"]).split("/")[0] == frm and pres["type"] == type_:
            return pres


async def error(client: Client, timeout: float = 10) -> tuple[str, str]:
    """(from, condition) of the next message error ``client`` gets."""
    msg = await asyncio.wait_for(client.errors.get(), timeout)  # type: ignore[attr-defined]
    # read from the XML: slixmpp knows RFC 3920's conditions only (not policy-violation)
    conditions = [child.tag.split("}")[1] for child in msg.xml.find(f"{{{CLIENT}}}error")
                  if child.tag.startswith(f"{{{STANZAS}}}") and not child.tag.endswith("text")]
    return str(msg["from"]), conditions[0]


async def acknowledged(link: Any, timeout: float = 5) -> None:
    """Until the peer has acknowledged (XEP-0198) all that the link's stream wrote."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while link.stream is None or link.stream.acks is None or link.stream.acks.unacked:
        assert loop.time() < deadline, "the peer did not acknowledge our stanzas"
        await asyncio.sleep(0.02)


async def test_users_offline_unknown_and_a_suricate_restart(peers: P.Peers,
                                                            tmp_path: Path) -> None:
    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH, "[modules.mod_vcard]\n")
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        for name in ("sam", "sue"):
            await register(server, name)
        sam, paula = await ours(server, "sam"), await theirs(peers, "paula")
        sam.send_presence()
        paula.send_presence()

        # XEP-0030 and XEP-0054 across: each server's identity, each user's vCard
        info = await sam.plugin["xep_0030"].get_info(jid=P.PROSODY, timeout=10)
        assert ("server", "im") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        info = await paula.plugin["xep_0030"].get_info(jid=P.SURICATE, timeout=10)
        assert "msgoffline" in info["disco_info"]["features"]
        for client, name in ((sam, "Sam"), (paula, "Paula")):
            card = client.plugin["xep_0054"].make_vcard()
            card["FN"] = name
            await client.plugin["xep_0054"].publish_vcard(card, timeout=10)
        got = await sam.plugin["xep_0054"].get_vcard(f"paula@{P.PROSODY}", cached=False,
                                                     timeout=10)
        assert got["vcard_temp"]["FN"] == "Paula"
        got = await paula.plugin["xep_0054"].get_vcard(f"sam@{P.SURICATE}", cached=False,
                                                       timeout=10)
        assert got["vcard_temp"]["FN"] == "Sam"

        # errors come back: the peer's own (no such account), and ours for a domain
        # nobody serves, within a bounded time
        sam.send_message(mto=f"nobody@{P.PROSODY}", mbody="anyone?", mtype="chat")
        assert await error(sam) == (f"nobody@{P.PROSODY}", "service-unavailable")
        paula.send_message(mto=f"nobody@{P.SURICATE}", mbody="anyone?", mtype="chat")
        assert await error(paula) == (f"nobody@{P.SURICATE}", "service-unavailable")
        sam.send_message(mto="nobody@nowhere.invalid", mbody="anyone?", mtype="chat")
        assert await error(sam) == ("nobody@nowhere.invalid", "remote-server-not-found")
        # a contact request to a domain nobody serves: the error reaches the user's clients
        # (it comes back to the bare JID the request left from, RFC 6121 §3.1.2)
        sam.send_presence(pto="typo@nowhere.invalid", ptype="subscribe")
        assert await error(sam) == ("typo@nowhere.invalid", "remote-server-not-found")

        # offline users, both ways: messages kept (one to a resource that is gone), and
        # subscription requests shown at the next login
        paula.send_message(mto=f"sue@{P.SURICATE}/gone", mbody="for sue", mtype="chat")
        sam.send_message(mto=f"pete@{P.PROSODY}", mbody="for pete", mtype="chat")
        paula.send_presence(pto=f"sue@{P.SURICATE}", ptype="subscribe")
        sam.send_presence(pto=f"pete@{P.PROSODY}", ptype="subscribe")
        await asyncio.sleep(1)  # stored on the other side before the logins
        sue, pete = await ours(server, "sue"), await theirs(peers, "pete")
        sue.send_presence()
        pete.send_presence()
        assert (await sue.next_message(10))["body"] == "for sue"
        assert (await pete.next_message(10))["body"] == "for pete"
        await presence(sue, f"paula@{P.PROSODY}", "subscribe")
        await presence(pete, f"sam@{P.SURICATE}", "subscribe")
        # §3.1.5: the approval brings the contact's current presence
        sue.send_presence(pto=f"paula@{P.PROSODY}", ptype="subscribed")
        pete.send_presence(pto=f"sam@{P.SURICATE}", ptype="subscribed")
        await presence(paula, f"sue@{P.SURICATE}")
        await presence(sam, f"pete@{P.PROSODY}")

        # §4.6.3: directed presence ends with the session
        sam.send_presence(pto=pete.boundjid.full)
        await presence(pete, f"sam@{P.SURICATE}")
        await disconnect(sue)
        await presence(paula, f"sue@{P.SURICATE}", "unavailable")
        await disconnect(sam)
        await presence(pete, f"sam@{P.SURICATE}", "unavailable")
        sam = await ours(server, "sam")
        sam.send_presence()
        await presence(sam, f"pete@{P.PROSODY}")  # §4.3.2: the login probes
        sue = await ours(server, "sue")
        sue.send_presence()
        await presence(paula, f"sue@{P.SURICATE}")

        # §3.4: sue pre-approves poppy, whose request is then answered by the server;
        # an approval and a cancellation made while sam is away are in his roster at login
        sue.send_presence(pto=f"poppy@{P.PROSODY}", ptype="subscribed")
        poppy = await theirs(peers, "poppy")
        poppy.send_presence()
        sam.send_presence(pto=f"poppy@{P.PROSODY}", ptype="subscribe")
        await presence(poppy, f"sam@{P.SURICATE}", "subscribe")
        await eventually(lambda: _roster_has(server, "sue", "poppy", approved=True))
        poppy.send_presence(pto=f"sue@{P.SURICATE}", ptype="subscribe")
        await presence(poppy, f"sue@{P.SURICATE}", "subscribed")
        await presence(poppy, f"sue@{P.SURICATE}")
        await disconnect(sam)
        poppy.send_presence(pto=f"sam@{P.SURICATE}", ptype="subscribed")
        await eventually(lambda: _roster_has(server, "sam", "poppy", subscription="to"))
        sam = await ours(server, "sam")
        assert sam.client_roster[f"poppy@{P.PROSODY}"]["subscription"] == "to"
        sam.send_presence()
        await presence(sam, f"poppy@{P.PROSODY}")
        await disconnect(sam)
        poppy.send_presence(pto=f"sam@{P.SURICATE}", ptype="unsubscribed")
        await eventually(lambda: _roster_has(server, "sam", "poppy", subscription="none"))
        sam = await ours(server, "sam")
        assert sam.client_roster[f"poppy@{P.PROSODY}"]["subscription"] == "none"
        await disconnect(sam, poppy)

    # Suricate stops: its users go offline for the peer's users (RFC 6121 §4.5.2)
    await presence(paula, f"sue@{P.SURICATE}", "unavailable")
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        sam, sue = await ours(server, "sam"), await ours(server, "sue")
        sam.send_presence()
        sue.send_presence()
        # ...and back: the new logins probe over new streams (§4.3.2)
        await presence(sam, f"pete@{P.PROSODY}")
        await presence(paula, f"sue@{P.SURICATE}")
        await disconnect(sam, sue, paula, pete)


async def test_a_crashed_peer_is_reached_again_as_soon_as_it_is_back(peers: P.Peers,
                                                                    tmp_path: Path) -> None:
    """While the peer is down our users' stanzas bounce at once (RFC 6120 §8.3.3.16), the
    link backing off between attempts (1 s, doubling); once the restarted peer authenticates
    a stream of its own to us (SASL EXTERNAL: nothing makes us connect out), the reply to
    its user connects at once instead of bouncing with the stale error until the back-off
    ends (up to s2s.outgoing.max_retry_delay, 300 s by default)."""
    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH).replace("max_retry_delay = 2",
                                                   "max_retry_delay = 60")
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        await register(server, "sid")
        sid, pia = await ours(server, "sid"), await theirs(peers, "pia")
        sid.send_presence()  # a message to the bare JID wants an available resource
        sid.send_message(mto=pia.boundjid.full, mbody="before", mtype="chat")
        assert (await pia.next_message(10))["body"] == "before"
        link = server.s2s.links[(P.SURICATE, P.PROSODY)]
        await acknowledged(link)  # else "before" would bounce too (see the next tests)

        peers.stop_prosody(crash=True)  # SIGKILL: no closing tag, no unavailable presence
        await disconnect(pia)
        link = server.s2s.links[(P.SURICATE, P.PROSODY)]
        for wait in (1.05, 2.05, 0.0):  # three failed attempts: the next one in 4 s
            started = time.monotonic()
            sid.send_message(mto=f"pia@{P.PROSODY}", mbody="while down", mtype="chat")
            assert await error(sid, 5) == (f"pia@{P.PROSODY}", "remote-server-not-found")
            assert time.monotonic() - started < 3
            await asyncio.sleep(wait)
        assert link.failures == 3

        peers.relaunch_prosody()
        pia = await theirs(peers, "pia")
        pia.send_message(mto=f"sid@{P.SURICATE}", mbody="I am back", mtype="chat")
        back = await chat(sid, "I am back", 10)  # (the bounces are messages too)
        sid.send_message(mto=str(back["from"]), mbody="welcome back", mtype="chat")
        assert (await pia.next_message(10))["body"] == "welcome back"
        assert sid.errors.empty()  # type: ignore[attr-defined]
        assert link.established and link.stream is not None
        assert link.stream.auth_method == AUTH
        await disconnect(sid, pia)


async def test_a_stanza_too_big_for_the_peer_bounces_and_the_next_ones_arrive(
        peers: P.Peers, tmp_path: Path) -> None:
    """Prosody takes stanzas up to 512 KiB on s2s (s2s_stanza_size_limit) and ends the
    stream with <policy-violation/> at a bigger one (RFC 6120 §4.9.3.12). The sender learns
    it (policy-violation, RFC 6120 §8.3.3.12); the stanzas written after it, which Prosody
    never read, go over a new stream: before, all of them were lost without a word."""
    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH)
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        await register(server, "stan")
        stan, pete = await ours(server, "stan"), await theirs(peers, "pete", "big")
        stan.send_message(mto=pete.boundjid.full, mbody="small first", mtype="chat")
        await chat(pete, "small first")
        stan.send_message(mto=pete.boundjid.full, mbody="x" * 600_000, mtype="chat")
        stan.send_message(mto=pete.boundjid.full, mbody="after the big one", mtype="chat")
        assert await error(stan) == (pete.boundjid.full, "policy-violation")
        await chat(pete, "after the big one")
        stan.send_message(mto=pete.boundjid.full, mbody="later", mtype="chat")
        await chat(pete, "later")
        # a big stanza under the limit still goes through
        stan.send_message(mto=pete.boundjid.full, mbody="y" * 300_000, mtype="chat")
        await chat(pete, "y" * 300_000)
        assert stan.errors.empty()  # type: ignore[attr-defined]
        await disconnect(stan, pete)


async def test_stanzas_a_crashed_peer_never_acknowledged_bounce(peers: P.Peers,
                                                                tmp_path: Path) -> None:
    """XEP-0198 on s2s with Prosody's mod_smacks, both ways: we enable it on our stream and
    Prosody acknowledges our stanzas; Prosody enables it on its stream to us and we answer
    its <r/>. Then Prosody stops reading (SIGSTOP), our user's messages reach its socket, and
    it is SIGKILLed without having handled them: they bounce with remote-server-timeout
    (RFC 6120 §8.3.3.17) since it cannot be reached again. Before, they were lost without a
    word (TCP had taken them)."""
    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH)
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        await register(server, "sal")
        sal, pam = await ours(server, "sal"), await theirs(peers, "pam")
        sal.send_presence()
        sal.send_message(mto=pam.boundjid.full, mbody="acked", mtype="chat")
        await chat(pam, "acked")
        pam.send_message(mto=f"sal@{P.SURICATE}/s", mbody="from prosody", mtype="chat")
        await chat(sal, "from prosody")
        link = server.s2s.links[(P.SURICATE, P.PROSODY)]
        await acknowledged(link)  # Prosody offers sm:3 on s2s and answers our <r/>
        stream = link.stream
        assert stream is not None and stream.acks is not None and stream.sm_enabled
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        # Prosody enables it on its own stream once its queue is flushed (after the first
        # message), and counts from there as we do
        incoming = next(s for s in server.s2s.incoming if P.PROSODY in s.remote_domains)
        while incoming.handled is None:
            assert loop.time() < deadline, "Prosody did not enable stream management"
            await asyncio.sleep(0.02)
        pam.send_message(mto=f"sal@{P.SURICATE}/s", mbody="counted", mtype="chat")
        await chat(sal, "counted")
        assert incoming.handled == 1
        log = peers.root / "prosody" / "prosody.log"
        while "#queue = 0 (acked: 1)" not in log.read_text():  # mod_smacks took our <a/>
            assert loop.time() < deadline, "we did not answer Prosody's <r/>"
            await asyncio.sleep(0.02)

        assert peers.prosody is not None
        os.killpg(peers.prosody.pid, signal.SIGSTOP)
        try:
            for i in range(2):
                sal.send_message(mto=pam.boundjid.full, mbody=f"unacked {i}", mtype="chat")
            deadline = loop.time() + 5
            while len(stream.acks.unacked) < 2:
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
        finally:
            peers.stop_prosody(crash=True)  # SIGKILL (a stopped process dies too)
        got = [await error(sal) for _ in range(2)]
        assert got == [(pam.boundjid.full, "remote-server-timeout")] * 2
        peers.relaunch_prosody()
        await disconnect(sal)


async def test_a_probe_to_a_user_without_available_resource_is_answered_unavailable(
        peers: P.Peers, tmp_path: Path) -> None:
    """RFC 6121 §4.3.2: Prosody probes our user at its user's login; the user has no
    available resource, so the answer is <presence type='unavailable'/> from the bare JID,
    with the status and the time of the last one (mod_last keeps them, XEP-0203 delay).
    Before, no answer at all."""
    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH, "[modules.mod_last]\n")
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        await register(server, "sol")
        sol, pat = await ours(server, "sol"), await theirs(peers, "pat")
        sol.send_presence()
        pat.send_presence()
        pat.send_presence(pto=f"sol@{P.SURICATE}", ptype="subscribe")
        await presence(sol, f"pat@{P.PROSODY}", "subscribe")
        sol.send_presence(pto=f"pat@{P.PROSODY}", ptype="subscribed")
        await presence(pat, f"sol@{P.SURICATE}")  # §3.1.5
        await disconnect(pat)
        sol.send_presence(ptype="unavailable", pstatus="gone fishing")
        await disconnect(sol)

        pat = await theirs(peers, "pat", "again")
        pat.send_presence()  # Prosody probes sol (§4.2.2)
        answer = await presence(pat, f"sol@{P.SURICATE}", "unavailable")
        assert str(answer["from"]) == f"sol@{P.SURICATE}"
        assert answer["status"] == "gone fishing"
        delay = answer.xml.find("{urn:xmpp:delay}delay")
        assert delay is not None and delay.get("from") == P.SURICATE
        await disconnect(pat)


async def test_a_probe_answer_keeps_to_the_users_privacy_list(
        peers: P.Peers, tmp_path: Path) -> None:
    """XEP-0016 presence-out (§2.11) for an account without a session: sue hides her presence
    from pip with her default list, so pip's server probing her at pip's login learns
    nothing (not that she is offline, nor her last status), while sid, who hides nothing, is
    answered unavailable (RFC 6121 §4.3.2)."""
    from xml.etree import ElementTree as ET

    c2s = free_port()
    toml = suricate_toml(peers, c2s, AUTH, "[modules.mod_last]\n[modules.mod_privacy]\n")
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        for name in ("sue", "sid"):
            await register(server, name)
        sue, sid, pip = await ours(server, "sue"), await ours(server, "sid"), \
            await theirs(peers, "pip")
        for client in (sue, sid, pip):
            client.send_presence()
        for mine in (sue, sid):
            bare = f"{mine.boundjid.user}@{P.SURICATE}"
            pip.send_presence(pto=bare, ptype="subscribe")
            await presence(mine, f"pip@{P.PROSODY}", "subscribe")
            mine.send_presence(pto=f"pip@{P.PROSODY}", ptype="subscribed")
            await presence(pip, bare)
        privacy = "jabber:iq:privacy"
        for payload in (f"<query xmlns='{privacy}'><list name='hide'>"
                        f"<item type='jid' value='pip@{P.PROSODY}' action='deny' order='1'>"
                        "<presence-out/></item><item action='allow' order='2'/></list></query>",
                        f"<query xmlns='{privacy}'><default name='hide'/></query>"):
            iq = sue.make_iq_set()
            iq.append(ET.fromstring(payload))
            await iq.send(timeout=5)
        await disconnect(pip)
        sue.send_presence(ptype="unavailable", pstatus="at the doctor")
        sid.send_presence(ptype="unavailable", pstatus="out")
        await disconnect(sue, sid)

        pip = await theirs(peers, "pip", "again")
        pip.send_presence()  # Prosody probes sue and sid (§4.2.2)
        heard = [await asyncio.wait_for(pip.presences.get(), 10)]
        while not (str(heard[-1]["from"]) == f"sid@{P.SURICATE}"
                   and heard[-1]["type"] == "unavailable"):
            heard.append(await asyncio.wait_for(pip.presences.get(), 10))
        await asyncio.sleep(0.5)  # sue's answer, were there one, is as close as sid's
        while not pip.presences.empty():
            heard.append(pip.presences.get_nowait())
        assert not [p for p in heard if str(p["from"]).startswith(f"sue@{P.SURICATE}")]
        await disconnect(pip)
