"""xmpp.js (@xmpp/client from npm) reads an archive that slixmpp filled: XEP-0313 is not only
proven with one client library. The scenario (`mam` in tests/js/scenarios.mjs) pages the
archive backwards, 50 at a time, as a client catching up does."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import disconnect, running_server
from tests.mam.conftest import mam_modules
from tests.mam.test_mam import iq, login
from tests.mobile.conftest import add_user, make_test_ca
from tests.mobile.test_xmppjs import pytestmark, run_scenario  # noqa: F401  (skip without node)

MESSAGES = 120


async def test_xmppjs_pages_an_archive_slixmpp_filled(tmp_path: Path) -> None:
    make_test_ca(tmp_path / "certs")
    async with running_server(tmp_path, modules=mam_modules()) as server:
        await add_user(server, "alice")
        await add_user(server, "bob", "pw")
        bob = await login(server, "bob@localhost")
        for i in range(MESSAGES):
            bob.send_message(mto="alice@localhost", mbody=f"m{i}", mtype="chat")
        # The server handles a stream's stanzas in order: once this answer is back, every
        # message was routed. Alice is offline: each is then archived and stored, one after
        # the other (docs/offline.md); on a database a few ms away that outlasts the ping.
        # Once that work is done, all went to the archive's writer (a query flushes it).
        await iq(bob, "<ping xmlns='urn:xmpp:ping'/>", "get", to="localhost")
        await server.drain(30)
        await disconnect(bob)
        r = await run_scenario(server, tmp_path, "mam")
    pages = r["pages"]
    assert [len(p["items"]) for p in pages] == [50, 50, 20]
    assert pages[-1]["complete"] and not pages[0]["complete"]
    assert all(p["count"] == MESSAGES for p in pages)
    # newest page first; inside a page oldest first (XEP-0313 §4.1.2): no gap, no duplicate
    bodies = [item["body"] for p in reversed(pages) for item in p["items"]]
    assert bodies == [f"m{i}" for i in range(MESSAGES)]
    assert len({item["id"] for p in pages for item in p["items"]}) == MESSAGES
    assert all(item["from"].startswith("bob@localhost/") for p in pages for item in p["items"])
