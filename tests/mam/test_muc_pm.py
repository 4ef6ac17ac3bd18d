"""Private messages through a room (XEP-0045 §7.5) in the accounts' own archives (XEP-0313),
with real slixmpp clients over TLS: once per account, although a room sends a copy to each
joined session of the recipient, each copy carrying the same stanza-id (XEP-0359)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slixmpp import JID as SJID
from slixmpp.xmlstream import ET

from suricate.jid import JID
from tests.e2e.harness import Client, RawClient, disconnect, eventually, running_server
from tests.e2e.test_component import handshake_digest, raw_component, server_with_components
from tests.mam.conftest import mam_modules
from tests.muc.conftest import SERVICE, create_instant, presence_from, user

ROOM = f"pm@{SERVICE}"
MUC_USER = "http://jabber.org/protocol/muc#user"
SID = "urn:xmpp:sid:0"
MODULES = mam_modules("\n[modules.mod_muc]\n")


def stanza_ids(msg: Any, by: str) -> list[str]:
    return [el.get("id") for el in msg.xml.findall(f"{{{SID}}}stanza-id") if el.get("by") == by]


async def archive(client: Client, with_jid: str) -> list[Any]:
    return [m async for m in client.plugin["xep_0313"].iterate(with_jid=SJID(with_jid),
                                                               rsm={"max": 50})]


def bodies(results: list[Any]) -> list[str]:
    return [str(m["mam_result"]["forwarded"]["stanza"]["body"]) for m in results]


async def chat(client: Client, text: str) -> Any:
    while True:
        msg = await client.next_message()
        if msg["type"] == "chat" and msg["body"] == text:
            return msg


async def test_a_room_pm_is_archived_once_per_account(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=MODULES) as server:
        alice = await user(server, "alice")
        phone = await user(server, "bob", "phone")
        laptop = await user(server, "bob", "laptop")
        await create_instant(alice, ROOM, "alice")
        for device in (phone, laptop):  # one nick, two sessions (multi-session)
            await device.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bob", timeout=5)
        await presence_from(alice, f"{ROOM}/bob")
        pm = alice.make_message(mto=f"{ROOM}/bob", mbody="psst", mtype="chat")
        pm.xml.append(ET.Element(f"{{{MUC_USER}}}x"))  # XEP-0045 §7.5, as clients send it
        pm.send()
        ids = []
        for device in (phone, laptop):
            got = await chat(device, "psst")
            assert str(got["from"]) == f"{ROOM}/alice"
            ids += stanza_ids(got, "bob@localhost")
        # Both sessions got a copy with the same stanza-id: the one archived message.
        assert len(ids) == 2 and ids[0] == ids[1]
        laptop.send_message(mto=f"{ROOM}/alice", mbody="what?", mtype="chat")
        await chat(alice, "what?")
        # A third device, not in the room, catches up from the account's archive.
        tablet = await user(server, "bob", "tablet")
        try:
            in_bob = await archive(tablet, f"{ROOM}/alice")
            assert bodies(in_bob) == ["psst", "what?"]
            assert in_bob[0]["mam_result"]["id"] == ids[0]
            assert bodies(await archive(tablet, ROOM)) == ["psst", "what?"]
            assert bodies(await archive(alice, f"{ROOM}/bob")) == ["psst", "what?"]
        finally:
            await disconnect(alice, phone, laptop, tablet)


GATEWAY = "gateway.localhost"


async def component(server: Any) -> RawClient:
    """A XEP-0114 component standing for a remote room (as biboumi's channels do)."""
    raw, stream_id = await raw_component(server.component_port, GATEWAY)
    await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
    await raw.expect("<handshake/>")
    return raw


async def test_a_remote_rooms_copies_of_one_pm_are_archived_once(tmp_path: Path) -> None:
    async with server_with_components(tmp_path, modules=MODULES) as server:
        phone = await user(server, "bob", "phone")
        laptop = await user(server, "bob", "laptop")
        gateway = await component(server)
        carol = f"#chan%irc.localhost@{GATEWAY}/carol"
        try:
            for msg_id, text in (("m1", "hello"), ("m2", "again")):
                ids = []
                for res, device in (("phone", phone), ("laptop", laptop)):
                    await gateway.send(
                        f"<message from='{carol}' to='bob@localhost/{res}' type='chat' "
                        f"id='{msg_id}'><body>{text}</body><x xmlns='{MUC_USER}'/></message>")
                    ids += stanza_ids(await chat(device, text), "bob@localhost")
                assert len(ids) == 2 and ids[0] == ids[1]
            # The same message to the same session again is a new one (ids can repeat).
            await gateway.send(
                f"<message from='{carol}' to='bob@localhost/phone' type='chat' id='m2'>"
                f"<body>again</body><x xmlns='{MUC_USER}'/></message>")
            await chat(phone, "again")

            async def archived() -> list[str]:
                return bodies(await archive(laptop, carol))

            await eventually(lambda: _equal(archived(), ["hello", "again", "again"]),
                             interval=0.1)
        finally:
            await disconnect(phone, laptop)
            await gateway.close()


async def _equal(got: Any, expected: list[str]) -> bool:
    return await got == expected


async def test_copies_of_a_pm_to_an_account_without_sessions_are_archived_once(
        tmp_path: Path) -> None:
    """Both copies go to offline storage (the joined sessions are gone): one archived."""
    async with server_with_components(tmp_path, modules=MODULES) as server:
        await server.auth.register(JID.parse("bob@localhost"), "bob-pw")
        gateway = await component(server)
        carol = f"#chan%irc.localhost@{GATEWAY}/carol"
        try:
            for res in ("phone", "laptop"):
                await gateway.send(
                    f"<message from='{carol}' to='bob@localhost/{res}' type='chat' id='m1'>"
                    f"<body>while away</body><x xmlns='{MUC_USER}'/></message>")
            tablet = await user(server, "bob", "tablet")
            copy = await chat(tablet, "while away")
            (sid,) = stanza_ids(copy, "bob@localhost")

            async def archived() -> list[str]:
                return [m["mam_result"]["id"] for m in await archive(tablet, carol)]

            await eventually(lambda: _equal(archived(), [sid]), interval=0.1)
        finally:
            await disconnect(tablet)
            await gateway.close()
