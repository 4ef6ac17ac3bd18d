"""A second client library: aioxmpp's MUC client (STARTTLS) in an archived room, next to a
slixmpp occupant. aioxmpp 0.13 has no MAM client: the archive is read with slixmpp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioxmpp
import aioxmpp.connector
import aioxmpp.disco
import aioxmpp.forms
import aioxmpp.muc
from slixmpp import JID as SJID

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import disconnect, running_server
from tests.muc.conftest import SERVICE, muc_toml, next_groupchat, user
from tests.muc.test_archive import ARCHIVE_TOML, archive, body_of

ROOM = f"aio@{SERVICE}"


@asynccontextmanager
async def aio_client(server: Server, name: str) -> AsyncIterator[aioxmpp.PresenceManagedClient]:
    await server.auth.register(JID.parse(f"{name}@localhost"), "pw")
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(f"{name}@localhost/aio"),
        aioxmpp.make_security_layer("pw", no_verify=True),
        override_peer=[("127.0.0.1", server.c2s_port,  # type: ignore[attr-defined]
                        aioxmpp.connector.STARTTLSConnector())])
    async with client.connected():
        yield client


async def test_aioxmpp_occupant_in_an_archived_room(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml() + ARCHIVE_TOML) as srv, \
            aio_client(srv, "ann") as ann:
        muc = ann.summon(aioxmpp.MUCClient)
        room, joined = muc.join(aioxmpp.JID.fromstr(ROOM), "Ann")
        await asyncio.wait_for(joined, 10)
        assert room.me.affiliation == "owner" and room.me.role == "moderator"
        # A new room is locked until its owner submits the configuration (§10.1.3).
        form = await muc.get_room_config(aioxmpp.JID.fromstr(ROOM))
        form.type_ = aioxmpp.forms.DataType.SUBMIT
        await muc.set_room_config(aioxmpp.JID.fromstr(ROOM), form)
        # The room's disco#info, as aioxmpp reads it: archived (XEP-0313), registrable.
        disco = ann.summon(aioxmpp.DiscoClient)
        info = await disco.query_info(aioxmpp.JID.fromstr(ROOM))
        assert {"urn:xmpp:mam:2", "jabber:iq:register"} <= set(info.features)
        bob = await user(srv, "bob")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        got: asyncio.Queue[Any] = asyncio.Queue()
        room.on_message.connect(lambda msg, member, source, **kw: got.put_nowait(msg))
        msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        msg.body[None] = "from aioxmpp"
        room.send_message(msg)
        live = await next_groupchat(bob)
        assert live["body"] == "from aioxmpp"
        bob.make_message(mto=ROOM, mbody="from slixmpp", mtype="groupchat").send()
        while True:
            echoed = await asyncio.wait_for(got.get(), 5)
            if echoed.body.any() == "from slixmpp":
                break
        # One archive for the room, with the stanza-ids the occupants got.
        results = await archive(bob, ROOM)
        assert [body_of(m) for m in results] == ["from aioxmpp", "from slixmpp"]
        assert str(results[0]["mam_result"]["id"]) == str(live["stanza_id"]["id"])
        await room.leave()
        await disconnect(bob)
