"""The REST client API as a user's messaging path: what it sends is the sender's too (archive,
carbons, as MongooseIM 6.4's mongoose_stanza_api runs the sender's send hooks). Real HTTP
(aiohttp's client) and real XMPP (slixmpp)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.harness import connect, disconnect, eventually
from tests.mam.test_mam import archive, forwarded_body, next_of, queue_of, stanza_id
from tests.ops.test_rest_api import alice_auth, online, register, rest_server

PLUGINS = ("xep_0030", "xep_0059", "xep_0280", "xep_0313", "xep_0359")
ALICE = "alice@localhost"


async def test_a_message_sent_through_the_apis_is_the_senders_too(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        phone = await connect(server, f"{ALICE}/phone", "pw", plugins=PLUGINS)
        phone.send_presence()
        await phone.plugin["xep_0280"].enable()
        carbons = queue_of(phone, "message/carbon_sent")
        bob = await online(server, "bob@localhost/pc")

        status, sent = await api("POST", "/api/client/messages",
                                 {"to": "bob@localhost", "body": "from the API"},
                                 auth=alice_auth())
        assert status == 200
        received = await asyncio.wait_for(bob.messages.get(), 5)
        assert received["body"] == "from the API" and received["id"] == sent["id"]
        bob_id = stanza_id(received, "bob@localhost")
        assert bob_id is not None
        assert stanza_id(received, ALICE) is None  # the sender's id is for its carbons only
        # XEP-0280: every carbon-enabled session of the sender gets a <sent/> copy (6.4: the
        # sender is the bare JID, so no resource is left out), with the sender's stanza-id.
        carbon = (await next_of(carbons))["carbon_sent"]
        assert carbon["body"] == "from the API" and carbon["id"] == sent["id"]
        alice_id = stanza_id(carbon, ALICE)
        assert alice_id is not None and alice_id != bob_id

        # The sender's archive, read through the API and through XEP-0313.
        async def in_alice_archive() -> bool:
            return bool((await api("GET", "/api/client/messages/bob@localhost",
                                   auth=alice_auth()))[1])
        await eventually(in_alice_archive)
        status, rows = await api("GET", "/api/client/messages", auth=alice_auth())
        assert status == 200 and len(rows) == 1
        assert rows[0]["from"] == ALICE and rows[0]["to"] == "bob@localhost"
        assert rows[0]["id"] == sent["id"] and rows[0]["body"] == "from the API"
        (result,) = await archive(phone)
        assert forwarded_body(result) == "from the API"
        assert result["mam_result"]["id"] == alice_id  # the id its carbon announced

        # The admin API (6.4's caller) sending as the phone itself: archived for alice, no
        # carbon to the phone (6.4 leaves the sending resource out); the next carbon it gets
        # is the one of the client API's message that follows.
        assert (await api("POST", "/api/messages", {"caller": f"{ALICE}/phone",
                                                    "to": "bob@localhost",
                                                    "body": "as the phone"}))[0] == 204
        assert (await asyncio.wait_for(bob.messages.get(), 5))["body"] == "as the phone"
        await api("POST", "/api/client/messages", {"to": "bob@localhost", "body": "third"},
                  auth=alice_auth())
        assert (await next_of(carbons))["carbon_sent"]["body"] == "third"

        async def all_three() -> bool:
            return len((await api("GET", "/api/client/messages", auth=alice_auth()))[1]) == 3
        await eventually(all_three)
        bodies = [forwarded_body(m) for m in await archive(phone)]
        assert bodies == ["from the API", "as the phone", "third"]
        # bob's archive has each once
        bob_rows = (await api("GET", "/api/client/messages",
                              auth=("bob@localhost", "pw")))[1]
        assert sorted(r["body"] for r in bob_rows) == ["as the phone", "from the API", "third"]
        await disconnect(phone, bob)
