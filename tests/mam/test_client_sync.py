"""XEP-0313 as clients sync with it: catch-up after reconnecting (Conversations), paging one
conversation backward (Gajim, Dino), the ids and fields clients send back. A real Suricate,
real slixmpp clients over TLS."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.mam.test_mam import (
    MAM,
    error_of,
    forwarded_body,
    iq,
    login,
    next_of,
    queue_of,
    stanza_id,
)

RSM = "http://jabber.org/protocol/rsm"


def form(**fields: str | list[str]) -> str:
    xml = ""
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        xml += f"<field var='{var.replace('_', '-')}'>" + "".join(
            f"<value>{v}</value>" for v in values) + "</field>"
    return ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM}</value></field>{xml}</x>")


def rsm(**parts: str) -> str:
    return f"<set xmlns='{RSM}'>" + "".join(
        f"<{k}/>" if v == "" else f"<{k}>{v}</{k}>" for k, v in parts.items()) + "</set>"


async def query(client: Any, inner: str) -> tuple[list[Any], ET.Element]:
    """One page: the results (in the order received) and the <fin/>."""
    results = queue_of(client, "message/mam_result")
    reply = await iq(client, f"<query xmlns='{MAM}'>{inner}</query>")
    got = []
    while not results.empty():
        got.append(results.get_nowait())
    client.remove_handler("message/mam_result")
    return got, reply.xml.find(f"{{{MAM}}}fin")


async def chat(server: Server, n: int) -> tuple[Any, Any]:
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    for i in range(n):
        alice.send_message(mto="bob@localhost", mbody=f"m{i}", mtype="chat")
    for _ in range(n):
        await bob.next_message()
    return alice, bob


def ids_of(results: list[Any]) -> list[str]:
    return [str(m["mam_result"]["id"]) for m in results]


def bodies(results: list[Any]) -> list[str]:
    return [forwarded_body(m) for m in results]


async def test_catch_up_forward_and_one_conversation_backward(server: Server) -> None:
    """Conversations on reconnect: RSM <after/> the last stanza-id it saw, page forward until
    complete='true'. Gajim and Dino: one conversation ('with'), backward with RSM <before/>
    from the oldest message shown, each page in chronological order (XEP-0313 §4.3)."""
    alice, bob = await chat(server, 7)
    carol = await login(server, "carol@localhost/c")
    carol.send_message(mto="alice@localhost", mbody="from carol", mtype="chat")
    await alice.next_message()
    everything, _ = await query(alice, "")
    seen = ids_of(everything)[1]  # what the client saw before it went away
    pages: list[list[str]] = []
    while True:
        got, fin = await query(alice, rsm(max="3", after=seen))
        pages.append(bodies(got))
        seen = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last") or seen
        if fin.get("complete") == "true":
            break
    assert pages == [["m2", "m3", "m4"], ["m5", "m6", "from carol"]]
    # Backward through the conversation with bob only, from the last page.
    with_bob = form(**{"with": "bob@localhost"})
    got, fin = await query(alice, with_bob + rsm(max="3", before=""))
    pages = [bodies(got)]
    while fin.get("complete") != "true":
        oldest = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first")
        got, fin = await query(alice, with_bob + rsm(max="3", before=str(oldest)))
        pages.append(bodies(got))
    assert pages == [["m4", "m5", "m6"], ["m1", "m2", "m3"], ["m0"]]
    # A flipped page holds the same messages, newest first (§4.3.4).
    got, _ = await query(alice, with_bob + rsm(max="3", before="") + "<flip-page/>")
    assert bodies(got) == ["m6", "m5", "m4"]
    # max=0: the count only (XEP-0059 §2.7).
    got, fin = await query(alice, rsm(max="0"))
    assert got == [] and fin.findtext(f"{{{RSM}}}set/{{{RSM}}}count") == "8"
    # An 'end' before the 'start' matches nothing: an empty, complete page.
    got, fin = await query(alice, form(start="2030-01-01T00:00:00Z",
                                       end="2020-01-01T00:00:00Z"))
    assert got == [] and fin.get("complete") == "true"
    await disconnect(alice, bob, carol)


async def test_ids_the_archive_does_not_hold_are_item_not_found(server: Server) -> None:
    """XEP-0313 §4.1.3: 'If any UID requested by the client in any of the before-id,
    after-id or ids form fields is not present in the archive, the server MUST return an
    item-not-found error'; a client fetching messages it knows by id learns that one is gone
    (or was never in this archive) instead of getting fewer messages than it named."""
    alice, bob = await chat(server, 3)
    mine = ids_of((await query(alice, ""))[0])
    bobs = ids_of((await query(bob, ""))[0])
    got, fin = await query(alice, form(ids=[mine[2], mine[0]]))
    assert bodies(got) == ["m0", "m2"] and fin.get("complete") == "true"
    for ids in ([mine[0], "12345"], [bobs[1]], ["not-an-id"]):
        assert await error_of(alice, f"<query xmlns='{MAM}'>{form(ids=ids)}</query>") == \
            "item-not-found", ids
    await disconnect(alice, bob)


async def test_the_form_and_a_field_the_server_does_not_know(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    reply = await iq(alice, f"<query xmlns='{MAM}'/>", type_="get")
    fields = {f.get("var"): f for f in reply.xml.iter("{jabber:x:data}field")}
    # XEP-0313 §4.1.5: 'ids' is list-multi, with an XEP-0122 <validate/> saying the list is
    # open (the server does not list every id).
    ids = fields["ids"]
    assert ids.get("type") == "list-multi"
    validate = ids.find("{http://jabber.org/protocol/xdata-validate}validate")
    assert validate is not None
    assert validate.find("{http://jabber.org/protocol/xdata-validate}open") is not None
    # XEP-0313 §4.1.5: a field the server does not recognise is feature-not-implemented.
    unknown = form(**{"include-groupchat": "true"})
    assert await error_of(alice, f"<query xmlns='{MAM}'>{unknown}</query>") == \
        "feature-not-implemented"
    await disconnect(alice)


async def test_roster_mode_gives_no_stanza_id_to_what_it_does_not_archive(
        server: Server) -> None:
    """XEP-0441 'roster': only contacts' messages are archived. A message from someone else
    must not reach the client with a <stanza-id by='account'/> (XEP-0313 §3.5: that is its
    archive id): a client catching up later with RSM <after/> that id would get
    item-not-found for an id the server itself gave."""
    alice, bob = await login(server, "alice@localhost/a"), await login(server, "bob@localhost/b")
    carol = await login(server, "carol@localhost/c")
    for client in (bob, carol):
        await iq(client, f"<prefs xmlns='{MAM}' default='roster'/>")
    await iq(bob, "<query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query>")
    # Carol's other device gets the carbons of what she sends (XEP-0280).
    carol2 = await login(server, "carol@localhost/c2")
    await carol2.plugin["xep_0280"].enable()
    carbons = queue_of(carol2, "message/carbon_sent")
    for sender in (alice, carol):
        sender.send_message(mto="bob@localhost", mbody=f"from {sender.boundjid.user}",
                            mtype="chat")
    from_alice, from_carol = await bob.next_message(), await bob.next_message()
    assert stanza_id(from_alice, "bob@localhost") is not None  # a contact: archived
    assert stanza_id(from_carol, "bob@localhost") is None  # not a contact: not archived
    # Bob is not in Carol's roster either: her carbon carries no id of her archive.
    assert stanza_id((await next_of(carbons))["carbon_sent"], "carol@localhost") is None
    assert bodies((await query(bob, ""))[0]) == ["from alice"]
    assert bodies((await query(carol, ""))[0]) == []
    # Offline, the stored copy is the one the client gets later: no id there either.
    await disconnect(bob)
    alice.send_message(mto="bob@localhost", mbody="offline from alice", mtype="chat")
    carol.send_message(mto="bob@localhost", mbody="offline from carol", mtype="chat")
    await query(alice, "")  # a round trip: both went the offline way before it
    bob = await login(server, "bob@localhost/b")
    stored = {str(m["body"]): m for m in (await bob.next_message(), await bob.next_message())}
    assert stanza_id(stored["offline from alice"], "bob@localhost") is not None
    assert stanza_id(stored["offline from carol"], "bob@localhost") is None
    assert bodies((await query(bob, ""))[0]) == ["from alice", "offline from alice"]
    await disconnect(alice, bob, carol, carol2)
