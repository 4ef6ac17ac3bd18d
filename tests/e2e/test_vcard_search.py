"""The XEP-0055 user directory of mod_vcard's rdbms backend (vjud.localhost), as a client finds
and uses it: disco#items of the server, the directory's disco#info, the search form, a search
with wildcards, and the ``matches`` limit. slixmpp (xep_0030, xep_0054, xep_0055) over TLS."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from suricate.jid import JID
from suricate.modules import MODULES
from tests.e2e.harness import ALL_MODULES, connect, disconnect, running_server

SEARCH = "jabber:iq:search"
PLUGINS = ("xep_0030", "xep_0054", "xep_0055")
RSM = "http://jabber.org/protocol/rsm"
MODULES_TOML = (
    "\n".join(
        f"[modules.{m}]"
        for m in ALL_MODULES
        if m in MODULES and m not in ("mod_vcard", "mod_disco")
    )
    + """
[modules.mod_vcard]
matches = 2
[modules.mod_disco]
server_info = [
  {name = "abuse-addresses", urls = ["xmpp:abuse@localhost"]},
  {name = "support-addresses", urls = ["xmpp:rooms@localhost"], modules = ["mod_muc"]},
]
"""
)

PEOPLE = {
    # username: (FN, NICKNAME, GIVEN, LOCALITY)
    "alice": ("Alice Liddell", "ally", "Alice", "Oxford"),
    "alicia": ("Alicia Keys", "keys", "Alicia", "New York"),
    "alistair": ("Alistair Cook", "cook", "Alistair", "Oxford"),
    "bob": ("Bob_Smith", "bob", "Bob", "Bristol"),
}


async def search(client: Any, fields: dict[str, str]) -> list[dict[str, str]]:
    """XEP-0055 §3.2: a submitted data form; the result items, each var -> value."""
    iq = client.plugin["xep_0055"].make_search_iq(ito="vjud.localhost")
    for var, value in fields.items():
        iq["search"]["form"].add_field(var, value=value)
    result = await iq.send(timeout=10)
    form = result["search"]["form"]
    assert form["type"] == "result"
    return [dict(item) for item in form["items"]]


async def test_directory_search_with_wildcards_and_matches(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=MODULES_TOML) as server:
        for name in (*PEOPLE, "carol"):
            await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        clients = []
        for name, (fn, nick, given, city) in PEOPLE.items():
            client = await connect(
                server, f"{name}@localhost/gajim", f"{name}-pw", direct_tls=True, plugins=PLUGINS
            )
            card = client.plugin["xep_0054"].make_vcard()
            card["FN"] = fn
            card["NICKNAME"] = nick
            card["N"]["GIVEN"] = given
            card["ADR"]["LOCALITY"] = city
            await client.plugin["xep_0054"].publish_vcard(card)
            clients.append(client)
        carol = await connect(server, "carol@localhost/dino", "carol-pw", plugins=PLUGINS)

        # A client finds the directory through the server's items and their identities.
        items = await carol.plugin["xep_0030"].get_items(jid="localhost")
        assert ("vjud.localhost", None, None) in items["disco_items"]["items"]
        info = await carol.plugin["xep_0030"].get_info(jid="vjud.localhost")
        assert ("directory", "user", None, "vCard User Search") in info["disco_info"]["identities"]
        assert SEARCH in info["disco_info"]["features"]
        # XEP-0157 on the directory too (6.4): the entries for every module, not mod_muc's.
        (form,) = info["disco_info"].xml.findall("{jabber:x:data}x")
        assert [f.get("var") for f in form.findall("{jabber:x:data}field")] == [
            "FORM_TYPE",
            "abuse-addresses",
        ]

        # XEP-0055 §3.1: the form, 6.4's fields for the rdbms backend.
        form_iq = carol.make_iq_get(ito="vjud.localhost")
        form_iq["search"]
        form = (await form_iq.send(timeout=10))["search"]["form"]
        assert form["type"] == "form"
        assert [f["var"] for f in form["fields"]] == [
            "FORM_TYPE",
            "user",
            "fn",
            "first",
            "middle",
            "last",
            "nick",
            "bday",
            "ctry",
            "locality",
            "email",
            "orgname",
            "orgunit",
        ]

        # A whole value, any case; the result carries the fields as written.
        found = await search(carol, {"fn": "alice liddell"})
        assert [(f["jid"], f["fn"], f["nick"], f["locality"]) for f in found] == [
            ("alice@localhost", "Alice Liddell", "ally", "Oxford")
        ]
        # "*" is a wildcard; at most `matches` (2) users, by JID.
        assert [f["jid"] for f in await search(carol, {"first": "Ali*"})] == [
            "alice@localhost",
            "alicia@localhost",
        ]
        assert [f["jid"] for f in await search(carol, {"first": "ali*", "locality": "oxford"})] == [
            "alice@localhost",
            "alistair@localhost",
        ]
        assert [f["jid"] for f in await search(carol, {"fn": "*keys"})] == ["alicia@localhost"]
        assert [f["jid"] for f in await search(carol, {"user": "alis*"})] == ["alistair@localhost"]
        # LIKE's own wildcards are plain characters; an empty form finds nobody (6.4).
        assert [f["jid"] for f in await search(carol, {"fn": "bob_*"})] == ["bob@localhost"]
        assert await search(carol, {"fn": "bo%"}) == []
        assert await search(carol, {"fn": "Alice"}) == []
        assert await search(carol, {}) == []

        # XEP-0059 pages what was found (at most `matches`), by JID, as 6.4.
        page = carol.plugin["xep_0055"].make_search_iq(ito="vjud.localhost")
        page["search"]["form"].add_field("first", value="ali*")
        page["search"].xml.append(
            ET.fromstring(f"<set xmlns='{RSM}'><max>1</max><after>alice@localhost</after></set>")
        )
        answer = (await page.send(timeout=10))["search"]
        assert [dict(i)["jid"] for i in answer["form"]["items"]] == ["alicia@localhost"]
        rsm = answer.xml.find(f"{{{RSM}}}set")
        assert rsm is not None
        assert (rsm.findtext(f"{{{RSM}}}count"), rsm.findtext(f"{{{RSM}}}first")) == (
            "2",
            "alicia@localhost",
        )

        # A changed vCard is searched as it is now.
        alice = clients[0]
        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Alice Hargreaves"
        await alice.plugin["xep_0054"].publish_vcard(card)
        assert await search(carol, {"fn": "alice liddell"}) == []
        assert [f["jid"] for f in await search(carol, {"fn": "alice h*"})] == ["alice@localhost"]
        await disconnect(carol, *clients)
