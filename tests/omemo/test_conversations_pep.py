"""The PEP requests Conversations makes for OMEMO, as raw stanzas (what slixmpp-omemo does not
send the same way): bundles published with publish-options ``pubsub#access_model=open`` only,
the precondition-not-met recovery (reconfigure the node, publish again), a missing bundle, and
the device list keeping one item whatever its item id."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Literal

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from tests.e2e.harness import Client, connect, disconnect
from tests.omemo.conftest import OLD, accounts

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("omemo-pep")]

PUBSUB = "http://jabber.org/protocol/pubsub"
BUNDLE = (f"<bundle xmlns='{OLD}'><signedPreKeyPublic signedPreKeyId='1'>BQ==</signedPreKeyPublic>"
          "<signedPreKeySignature>AA==</signedPreKeySignature><identityKey>BQ==</identityKey>"
          "<prekeys><preKeyPublic preKeyId='1'>BQ==</preKeyPublic></prekeys></bundle>")


def open_access(extra: str = "") -> str:
    """Conversations' publish-options (PublishOptions.openAccess())."""
    return ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field>"
            f"{extra}</x></publish-options>")


def publish(node: str, payload: str, item_id: str | None = "current", options: str = "") -> str:
    item = f"<item id='{item_id}'>" if item_id else "<item>"
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'>{item}{payload}</item></publish>"
            f"{options}</pubsub>")


def items(node: str) -> str:
    return f"<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>"


def device_list(*ids: int) -> str:
    devices = "".join(f"<device id='{i}'/>" for i in ids)
    return f"<list xmlns='{OLD}'>{devices}</list>"


async def ask(client: Client, type_: Literal["get", "set"], to: str | None,
              payload: str) -> Any:
    iq = client.make_iq(itype=type_, ito=to)
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


def error_of(exc: IqError) -> tuple[str, str, list[str]]:
    """(type, condition, application conditions) of an IQ error."""
    error = exc.iq["error"]
    apps = [child.tag.split("}")[1] for child in error.xml
            if child.tag.startswith(f"{{{PUBSUB}#errors}}")]
    return error["type"], error["condition"], apps


async def login(server: Server, name: str) -> Client:
    client = await connect(server, f"{name}@localhost/conversations", f"{name}-pw",
                           direct_tls=True)
    client.send_presence()
    return client


async def test_bundle_published_open_is_read_by_a_stranger(server: Server) -> None:
    await accounts(server, "gina", "hank")
    gina, hank = await login(server, "gina"), await login(server, "hank")
    node = f"{OLD}.bundles:4223"
    await ask(gina, "set", None, publish(node, BUNDLE, options=open_access()))
    await ask(gina, "set", None, publish(f"{OLD}.devicelist", device_list(4223),
                                         options=open_access()))
    # hank has no presence subscription: open access is what lets him start a session
    # (XEP-0384 §5.3.2), e.g. with someone in a group chat.
    got = await ask(hank, "get", "gina@localhost", items(node))
    assert got.xml.find(f".//{{{PUBSUB}}}item/{{{OLD}}}bundle") is not None
    got = await ask(hank, "get", "gina@localhost", items(f"{OLD}.devicelist"))
    assert got.xml.find(f".//{{{OLD}}}device").get("id") == "4223"
    await disconnect(gina, hank)


async def test_precondition_not_met_then_reconfigure_and_publish(server: Server) -> None:
    await accounts(server, "ida", "jon")
    ida, jon = await login(server, "ida"), await login(server, "jon")
    node = f"{OLD}.bundles:77"
    # An old client published the bundle with PEP's defaults (presence access).
    await ask(ida, "set", None, publish(node, BUNDLE))
    with pytest.raises(IqError) as refused:
        await ask(ida, "set", None, publish(node, BUNDLE, options=open_access()))
    assert error_of(refused.value) == ("cancel", "conflict", ["precondition-not-met"])
    with pytest.raises(IqError) as hidden:
        await ask(jon, "get", "ida@localhost", items(node))
    # XEP-0060 §6.5.9.4: presence access without a subscription
    assert error_of(hidden.value) == ("auth", "not-authorized",
                                      ["presence-subscription-required"])
    # Conversations then submits the one field without asking for the form first...
    await ask(ida, "set", None,
              f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{node}'>"
              "<x xmlns='jabber:x:data' type='submit'>"
              f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
              "<field var='pubsub#access_model'><value>open</value></field></x>"
              "</configure></pubsub>")
    # ...and publishes again, which now meets the precondition; the rest of the configuration
    # is what it was (one item, persistent).
    await ask(ida, "set", None, publish(node, BUNDLE, options=open_access()))
    got = await ask(jon, "get", "ida@localhost", items(node))
    assert len(got.xml.findall(f".//{{{PUBSUB}}}item")) == 1
    store: Any = server.module_stores["mod_pubsub"]
    config = await store.get_node(("localhost", "ida"), node)
    assert config["access_model"] == "open" and config["max_items"] == 1
    await disconnect(ida, jon)


async def test_missing_bundle_is_item_not_found(server: Server) -> None:
    await accounts(server, "kim", "lou")
    kim, lou = await login(server, "kim"), await login(server, "lou")
    await ask(kim, "set", None, publish(f"{OLD}.devicelist", device_list(1, 2),
                                        options=open_access()))
    await ask(kim, "set", None, publish(f"{OLD}.bundles:1", BUNDLE, options=open_access()))
    # Device 2 is listed but never published its bundle: Conversations drops it from the
    # devices it encrypts for when the answer is item-not-found (XEP-0060 §6.5.9.11).
    for asker in (lou, kim):
        with pytest.raises(IqError) as missing:
            await ask(asker, "get", "kim@localhost", items(f"{OLD}.bundles:2"))
        assert error_of(missing.value)[:2] == ("cancel", "item-not-found")
    await disconnect(kim, lou)


async def test_device_list_keeps_one_item(server: Server) -> None:
    await accounts(server, "max", "ned")
    mx, ned = await login(server, "max"), await login(server, "ned")
    node = f"{OLD}.devicelist"
    # Clients before 'current' (Gajim until 2018) published each list under a new id; with
    # PEP's max_items of 1 only the newest list is left, so a contact never reads two lists.
    await ask(mx, "set", None, publish(node, device_list(1), item_id=None, options=open_access()))
    await ask(mx, "set", None, publish(node, device_list(1, 2), item_id=None,
                                       options=open_access()))
    await ask(mx, "set", None, publish(node, device_list(1, 2, 3), options=open_access(
        "<field var='pubsub#max_items'><value>1</value></field>"
        "<field var='pubsub#persist_items'><value>1</value></field>")))
    got = await ask(ned, "get", "max@localhost", items(node))
    lists = got.xml.findall(f".//{{{PUBSUB}}}item")
    assert len(lists) == 1
    assert [d.get("id") for d in lists[0].iter(f"{{{OLD}}}device")] == ["1", "2", "3"]
    await disconnect(mx, ned)
