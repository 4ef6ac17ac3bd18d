"""mod_vcard's ldap backend against a real slapd (tests/auth/slapd.py) with slixmpp clients:
vCards (XEP-0054, slixmpp's xep_0054) made from directory entries through vcard_map, the
photo as BINVAL and its hash on the owner's presence (XEP-0153), a set refused as 6.4
answers it, the user directory (XEP-0055) on vjud.localhost with search_fields,
search_reported, search_operator and binary_search_fields, and a directory that is down
answered with a clear error, logged once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.jid import JID
from tests.auth.slapd import ROOTDN, ROOTPW, SUFFIX, Slapd, person, running_slapd
from tests.e2e.harness import ALL_MODULES, connect, disconnect, running_server

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# Not a real JPEG: the server passes the bytes through, whatever they are.
PHOTO = bytes(range(256)) * 4
PHOTO_SHA1 = hashlib.sha1(PHOTO).hexdigest()

SEARCH = "jabber:iq:search"
XDATA = "jabber:x:data"
VCARD = "vcard-temp"


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    with running_slapd() as server:
        alice = person("alice", "x", displayName="Alice Liddell", givenName="Alice",
                       mail="alice@example.com", telephoneNumber="+44 1865 000000",
                       o="Wonderland", l="Oxford").rstrip("\n")
        server.add(f"{alice}\njpegPhoto:: {base64.b64encode(PHOTO).decode()}\n\n"
                   + person("bob", "x", displayName="Bob Builder", mail="bob@example.com",
                            l="Bristol")
                   + person("bobby", "x", displayName="Bobby Tables", l="Bristol")
                   + person("carol", "x", displayName="Carol (no account)", l="Bristol"))
        yield server


def config(port: int, ldap: str) -> tuple[str, str]:
    """(the pool TOML; the modules TOML: the harness's modules, mod_vcard on LDAP)."""
    pool = f"""
[outgoing_pools.ldap.default]
connection.servers = ["127.0.0.1"]
connection.port = {port}
connection.rootdn = "{ROOTDN}"
connection.password = "{ROOTPW}"
connection.connect_interval = 200
"""
    modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES if m != "mod_vcard")
    return pool, modules + f"""
[modules.mod_vcard]
backend = "ldap"
matches = 10
[modules.mod_vcard.ldap]
base = "{SUFFIX}"
filter = "(objectClass=inetOrgPerson)"
{ldap}
"""


async def login(server: Any, name: str) -> Any:
    await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
    return await connect(server, f"{name}@localhost/r", f"{name}-pw",
                         plugins=("xep_0054", "xep_0004"))


def vcard_of(iq: Any) -> ET.Element:
    found = iq.xml.find(f"{{{VCARD}}}vCard")
    assert found is not None, iq
    return found


def text(vcard: ET.Element, path: str) -> str | None:
    return vcard.findtext("/".join(f"{{{VCARD}}}{p}" for p in path.split("/")))


async def search(client: Any, fields: dict[str, str]) -> list[dict[str, str]]:
    """XEP-0055 §3.2 with a data form: the result items, each var -> value."""
    iq = client.make_iq_set(ito="vjud.localhost")
    query = ET.SubElement(iq.xml, f"{{{SEARCH}}}query")
    form = ET.SubElement(query, f"{{{XDATA}}}x", {"type": "submit"})
    for var, value in {"FORM_TYPE": SEARCH, **fields}.items():
        field = ET.SubElement(form, f"{{{XDATA}}}field", {"var": var})
        ET.SubElement(field, f"{{{XDATA}}}value").text = value
    result = await iq.send(timeout=10)
    x = result.xml.find(f"{{{SEARCH}}}query/{{{XDATA}}}x")
    assert x is not None and x.get("type") == "result"
    return [{f.get("var") or "": f.findtext(f"{{{XDATA}}}value") or ""
             for f in item.findall(f"{{{XDATA}}}field")}
            for item in x.findall(f"{{{XDATA}}}item")]


async def test_vcards_avatars_and_search_from_the_directory(tmp_path: Path,
                                                            slapd: Slapd) -> None:
    pool, modules = config(slapd.port, "")
    async with running_server(tmp_path, extra=pool, modules=modules) as server:
        alice = await login(server, "alice")
        bob = await login(server, "bob")
        dave = await login(server, "dave")  # an account without a directory entry

        # XEP-0054 §3.1: alice's own vCard, made by 6.4's default vcard_map.
        own = vcard_of(await alice.plugin["xep_0054"].get_vcard("alice@localhost"))
        assert text(own, "FN") == "Alice Liddell"
        assert text(own, "NICKNAME") == "alice"  # %u
        assert text(own, "EMAIL/USERID") == "alice@example.com"
        assert text(own, "TEL/NUMBER") == "+44 1865 000000"
        assert text(own, "N/GIVEN") == "Alice" and text(own, "N/FAMILY") == "alice"
        assert text(own, "ORG/ORGNAME") == "Wonderland"
        assert text(own, "ADR/LOCALITY") == "Oxford"
        assert text(own, "PHOTO/TYPE") == "image/jpeg"
        assert base64.b64decode(text(own, "PHOTO/BINVAL") or "") == PHOTO

        # GDPR retrieval lists what this server shows of the user: the directory's vCard.
        (data,) = await server.modules["mod_vcard"].personal_data(JID.parse("alice@localhost"))
        assert data.rows and "Alice Liddell" in data.rows[0][1]

        # §3.3: another user's vCard, the same entry.
        other = vcard_of(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))
        assert ET.tostring(other) == ET.tostring(own)
        # An account without an entry: its own vCard is empty, as with rdbms...
        assert list(vcard_of(await dave.plugin["xep_0054"].get_vcard("dave@localhost"))) == []
        # ...and an entry without an account is nobody's (service-unavailable, §3.3).
        with pytest.raises(IqError) as err:
            await bob.plugin["xep_0054"].get_vcard("carol@localhost")
        assert err.value.condition == "service-unavailable"

        # §3.2: read-only; 6.4 answers a set with unexpected-request (cancel).
        card = alice.plugin["xep_0054"].make_vcard()
        card["FN"] = "Someone Else"
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0054"].publish_vcard(card)
        assert (err.value.condition, err.value.etype) == ("unexpected-request", "cancel")

        # XEP-0153 §4.1: the directory's photo hash is on alice's presence.
        seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        alice.add_event_handler("presence_available", lambda p: seen.done()
                                or seen.set_result(p))
        alice.send_presence()
        presence = await asyncio.wait_for(seen, 10)
        assert presence.xml.findtext("{vcard-temp:x:update}x/{vcard-temp:x:update}photo") \
            == PHOTO_SHA1

        # XEP-0055 §3.1: the form lists 6.4's default search fields, var = the attribute.
        iq = bob.make_iq_get(ito="vjud.localhost")
        ET.SubElement(iq.xml, f"{{{SEARCH}}}query")
        form = (await iq.send(timeout=10)).xml.find(f"{{{SEARCH}}}query/{{{XDATA}}}x")
        assert form is not None
        fields = {f.get("label"): f.get("var") for f in form.findall(f"{{{XDATA}}}field")
                  if f.get("type") != "hidden"}
        assert fields["User"] == "%u" and fields["Full Name"] == "displayName"
        assert fields["City"] == "l"

        # §3.2: a wildcard on one field; carol has no account, so she is not listed.
        found = await search(bob, {"displayName": "Bob*"})
        assert sorted(f["jid"] for f in found) == ["bob@localhost"]
        assert found[0]["FN"] == "Bob Builder" and found[0]["EMAIL"] == "bob@example.com"
        # The username is a substring (%u); "and" with the city narrows it.
        assert [f["jid"] for f in await search(bob, {"%u": "lic"})] == ["alice@localhost"]
        assert await search(bob, {"%u": "lic", "l": "Bristol"}) == []
        assert await search(bob, {"displayName": "Nobody"}) == []
        await disconnect(alice, bob, dave)


async def test_or_operator_custom_maps_and_a_directory_down(
        tmp_path: Path, slapd: Slapd, caplog: pytest.LogCaptureFixture) -> None:
    pool, modules = config(slapd.port, """
search_operator = "or"
binary_search_fields = ["PHOTO"]
vcard_map = [
  {vcard_field = "FN", ldap_pattern = "%s (directory)", ldap_field = "cn"},
  {vcard_field = "EMAIL", ldap_pattern = "%s", ldap_field = "mail"},
  {vcard_field = "PHOTO", ldap_pattern = "%s", ldap_field = "jpegPhoto"},
  {vcard_field = "LOCALITY", ldap_pattern = "%s", ldap_field = "l"},
]
search_fields = [
  {search_field = "Name", ldap_field = "displayName"},
  {search_field = "City", ldap_field = "l"},
]
search_reported = [
  {search_field = "Name", vcard_field = "FN"},
  {search_field = "Avatar", vcard_field = "PHOTO"},
]
""")
    async with running_server(tmp_path, extra=pool, modules=modules) as server:
        bob = await login(server, "bob")
        for name in ("alice", "bobby"):
            await server.auth.register(JID.parse(f"{name}@localhost"), "pw")

        card = vcard_of(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))
        assert text(card, "FN") == "alice (directory)"
        assert text(card, "ADR/LOCALITY") == "Oxford"
        assert text(card, "NICKNAME") is None  # not in this vcard_map

        # "or": either field matches; the binary column comes base64-encoded.
        found = await search(bob, {"displayName": "Alice*", "l": "Bristol"})
        assert sorted(f["jid"] for f in found) == [
            "alice@localhost", "bob@localhost", "bobby@localhost"]
        by_jid = {f["jid"]: f for f in found}
        assert base64.b64decode(by_jid["alice@localhost"]["PHOTO"]) == PHOTO
        assert by_jid["bob@localhost"] == {"jid": "bob@localhost", "FN": "bob (directory)",
                                           "PHOTO": ""}

        # The directory goes away: a clear, temporary error, logged once.
        caplog.set_level(logging.INFO, "suricate.mod_vcard")
        slapd.stop()
        try:
            for _ in range(2):
                with pytest.raises(IqError) as err:
                    await bob.plugin["xep_0054"].get_vcard("alice@localhost")
                assert (err.value.condition, err.value.etype) == ("internal-server-error",
                                                                  "wait")
            with pytest.raises(IqError) as err:
                await search(bob, {"l": "Bristol"})
            assert err.value.condition == "internal-server-error"
            assert caplog.text.count("vcard_ldap_unavailable") == 1
        finally:
            slapd.start()
        await asyncio.sleep(0.3)  # connect_interval: the pool tries again after it
        card = vcard_of(await bob.plugin["xep_0054"].get_vcard("alice@localhost"))
        assert text(card, "FN") == "alice (directory)"
        assert "vcard_ldap_available" in caplog.text
        await disconnect(bob)
