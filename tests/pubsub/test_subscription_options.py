"""XEP-0060 §6.3/§6.4 subscription options with slixmpp's xep_0060 plugin over TLS: subscribe
with options, retrieve and change them, default options, and what they do to notifications
(deliver, include_body, show-values); options refused with invalid-options."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from suricate.core.server import Server
from tests.e2e.harness import disconnect
from tests.pubsub.conftest import accounts, online, payload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SERVICE = "pubsub.localhost"
OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
NEWS = "<entry xmlns='urn:example:news'>hello</entry>"


def options(**fields: str | list[str]) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=OPTIONS)
    for var, value in fields.items():
        form.add_field(var=f"pubsub#{var.replace('_values', '-values')}", value=value)
    return form


async def set_options(client: Any, node: str, jid: str, form: Form) -> Any:
    # slixmpp's set_subscription_options sends type='get'; §6.3.5 is a set.
    iq = client.Iq(sto=SERVICE, stype="set")
    iq["pubsub"]["options"]["node"] = node
    iq["pubsub"]["options"]["jid"] = jid
    iq["pubsub"]["options"].append(form)
    return await iq.send()


def form_values(element: Any) -> dict[str, list[str]]:
    """The fields of the data form inside a stanza element, read from its XML."""
    x = element.xml.find("{jabber:x:data}x")
    assert x is not None, element
    return {f.get("var"): [v.text or "" for v in f.findall("{jabber:x:data}value")]
            for f in x.findall("{jabber:x:data}field")}


def app_condition(err: IqError) -> str | None:
    for child in err.iq.xml.find("{jabber:client}error") or []:
        if child.tag.startswith(f"{{{ERRORS}}}"):
            return str(child.tag.split("}")[1])
    return None


async def test_options_change_what_is_delivered(server: Server) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob")
    owner, sub = alice.plugin["xep_0060"], bob.plugin["xep_0060"]
    await owner.create_node(SERVICE, "news")
    # §6.3.7: the default options are offered (retrieve-default-sub).
    default = await sub.get_subscription_options(SERVICE, "news")
    assert form_values(default["pubsub"]["default"])["pubsub#deliver"] == ["1"]

    # §6.4: subscribe and configure at once.
    answer = await sub.subscribe(SERVICE, "news", options=options(include_body="1"))
    assert answer["pubsub"]["subscription"]["subscription"] == "subscribed"
    got = await sub.get_subscription_options(SERVICE, "news", "bob@localhost")
    values = form_values(got["pubsub"]["options"])
    assert values["pubsub#include_body"] == ["1"] and values["pubsub#deliver"] == ["1"]
    await owner.publish(SERVICE, "news", id="n1", payload=payload(NEWS))
    event = await bob_events.next("publish")
    assert event["body"] == "New item published to news at pubsub.localhost"

    # deliver = false: nothing any more, but still subscribed.
    await set_options(bob, "news", "bob@localhost", options(deliver="0"))
    await owner.publish(SERVICE, "news", id="n2", payload=payload(NEWS))
    await bob_events.none("publish")

    # show-values: only while bob's presence is one of them.
    await set_options(bob, "news", "bob@localhost",
                      options(deliver="1", show_values=["online", "chat"]))
    bob.send_presence(pshow="away")
    await asyncio.sleep(0.2)
    await owner.publish(SERVICE, "news", id="n3", payload=payload(NEWS))
    await bob_events.none("publish")
    bob.send_presence()
    await asyncio.sleep(0.2)
    await owner.publish(SERVICE, "news", id="n4", payload=payload(NEWS))
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == "n4"
    await disconnect(alice, bob)


async def test_options_refused(server: Server) -> None:
    await accounts(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, _ = await online(server, "bob")
    owner, sub = alice.plugin["xep_0060"], bob.plugin["xep_0060"]
    await owner.create_node(SERVICE, "news")
    for bad in (options(digest="1"), options(subscription_type="items"),
                options(expire="2030-01-01T00:00:00Z")):
        with pytest.raises(IqError) as err:
            await sub.subscribe(SERVICE, "news", options=bad)
        assert err.value.condition == "bad-request"
        assert app_condition(err.value) == "invalid-options"
    # Nothing was stored by the refused requests.
    with pytest.raises(IqError) as err:
        await sub.get_subscription_options(SERVICE, "news", "bob@localhost")
    # XEP-0060 §6.3.4.2 (example "No such subscriber"): type modify.
    assert (err.value.condition, err.value.etype) == ("unexpected-request", "modify")
    assert app_condition(err.value) == "not-subscribed"
    await sub.subscribe(SERVICE, "news")
    # Someone else's options: only the subscriber or an owner (§6.3.4).
    own = await sub.get_subscription_options(SERVICE, "news", "bob@localhost")
    assert own["pubsub"]["options"]["jid"] == "bob@localhost"
    await accounts(server, "carol")
    carol, _ = await online(server, "carol")
    with pytest.raises(IqError) as err:
        await carol.plugin["xep_0060"].get_subscription_options(SERVICE, "news",
                                                                "bob@localhost")
    assert err.value.condition == "forbidden"
    owners_view = await owner.get_subscription_options(SERVICE, "news", "bob@localhost")
    assert owners_view["pubsub"]["options"].xml.get("subid")
    await disconnect(alice, bob, carol)
