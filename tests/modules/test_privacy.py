"""mod_privacy without sockets: JID matching (XEP-0016 §2.1), item order and kinds (§2.2),
what the message path pays (nothing without the module, one dict lookup without a list), and
the active list carried by a session resumed on another node."""

from __future__ import annotations

import marshal
from pathlib import Path
from types import SimpleNamespace

import pytest

from suricate.core import hooks as H
from suricate.jid import JID
from suricate.modules.mod_privacy import APPLIED, Applied, ModPrivacy
from suricate.modules.mod_privacy.lists import PrivacyList, jid_matches
from suricate.modules.mod_privacy.store import IQ, MESSAGE, PRESENCE_IN, PrivacyItem
from suricate.modules.mod_roster.store import RosterItem
from tests.modules.services_harness import module_server

J = JID.parse


@pytest.mark.parametrize(("value", "contact", "matches"), [
    ("juliet@capulet.lit/balcony", "juliet@capulet.lit/balcony", True),
    ("juliet@capulet.lit/balcony", "juliet@capulet.lit/chamber", False),
    ("juliet@capulet.lit/balcony", "juliet@capulet.lit", False),
    ("juliet@capulet.lit", "juliet@capulet.lit/chamber", True),
    ("juliet@capulet.lit", "juliet@capulet.lit", True),
    ("juliet@capulet.lit", "nurse@capulet.lit", False),
    ("capulet.lit/balcony", "capulet.lit/balcony", True),
    ("capulet.lit/balcony", "juliet@capulet.lit/balcony", False),
    ("capulet.lit", "juliet@capulet.lit/balcony", True),
    ("capulet.lit", "capulet.lit", True),
    ("capulet.lit", "conference.capulet.lit", True),  # "address containing a subdomain"
    ("capulet.lit", "montague.lit", False),
    ("capulet.lit", "notcapulet.lit", False),
])
def test_jid_items_match_in_the_four_forms(value: str, contact: str, matches: bool) -> None:
    assert jid_matches(J(value), J(contact)) is matches


def test_first_matching_item_by_order_decides() -> None:
    plist = PrivacyList.build("x", [
        PrivacyItem(30, "deny"),  # fall-through, last by order whatever the input order
        PrivacyItem(10, "allow", "group", "Friends"),
        PrivacyItem(20, "deny", "subscription", "none", MESSAGE),
    ])
    friend = RosterItem("f@x.lit", subscription="none", groups=("Friends",))
    stranger = None  # not in the roster: subscription "none" (§2.1)
    assert not plist.denies(MESSAGE, J("f@x.lit"), friend)
    assert plist.denies(MESSAGE, J("s@x.lit"), stranger)
    # The message-only item does not apply to IQs: the fall-through denies them.
    assert plist.denies(IQ, J("s@x.lit"), stranger)
    allow_iq = PrivacyList.build("y", [PrivacyItem(1, "deny", "jid", "s@x.lit", MESSAGE)])
    assert not allow_iq.denies(IQ, J("s@x.lit"), None)
    assert not allow_iq.denies(PRESENCE_IN, J("s@x.lit"), None)
    # A subscription stanza (kind 0) only meets whole-stanza items.
    assert not allow_iq.denies(0, J("s@x.lit"), None)
    assert PrivacyList.build("z", [PrivacyItem(1, "deny", "jid", "s@x.lit")]).denies(
        0, J("s@x.lit"), None)


async def test_hooks_only_with_the_module_and_no_entry_without_a_list(tmp_path: Path) -> None:
    async with module_server(tmp_path / "off", "[modules.mod_roster]") as server:
        for hook in (H.USER_RECEIVE_PACKET, H.USER_SEND_PACKET):
            assert not any(isinstance(getattr(h, "__self__", None), ModPrivacy)
                           for _, h in server.hooks._handlers.get(hook, ()))
    async with module_server(tmp_path / "on", "[modules.mod_privacy]") as server:
        assert any(isinstance(getattr(h, "__self__", None), ModPrivacy)
                   for _, h in server.hooks._handlers[H.USER_RECEIVE_PACKET])
        module = server.modules["mod_privacy"]
        session = SimpleNamespace(jid=J("alice@localhost/a"), module_state={})
        await module.load_default(None, session)
        # No list: the per-stanza check finds no entry (one dict lookup) and lets it pass.
        assert "mod_privacy" not in session.module_state
        await module.store.set_list("localhost", "alice", "d", [PrivacyItem(1, "deny")])
        await module.store.set_default("localhost", "alice", "d")
        await module.load_default(None, session)
        applied = APPLIED.get(session)
        assert applied is not None and applied.default is not None and applied.active is None


def test_the_active_list_moves_with_a_resumed_session() -> None:
    module = ModPrivacy.__new__(ModPrivacy)
    active = PrivacyList.build("work", [PrivacyItem(5, "deny", "jid", "s@x.lit", MESSAGE),
                                        PrivacyItem(9, "allow")])
    default = PrivacyList.build("home", [PrivacyItem(1, "deny")])
    old = SimpleNamespace(jid=J("alice@localhost/a"), module_state={})
    APPLIED.set(old, Applied(active, default))
    state = module.handover({}, old, False)  # type: ignore[arg-type]
    assert APPLIED.get(old) is None
    state = marshal.loads(marshal.dumps(state))  # it travels marshalled
    new = SimpleNamespace(jid=J("alice@localhost/a"), module_state={})
    APPLIED.set(new, Applied(None, default))  # read by the new node's session_opened
    module.handover(state, new, True)  # type: ignore[arg-type]
    moved = APPLIED.get(new)
    assert moved is not None and moved.default is default and moved.active is not None
    assert moved.active.name == "work"
    assert moved.active.denies(MESSAGE, J("s@x.lit"), None)
    assert not moved.active.denies(IQ, J("s@x.lit"), None)


async def test_personal_data_lists_every_item(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_privacy]") as server:
        module = server.modules["mod_privacy"]
        await module.store.set_list("localhost", "alice", "b", [
            PrivacyItem(2, "allow"), PrivacyItem(1, "deny", "jid", "s@x.lit", MESSAGE | IQ)])
        await module.store.set_list("localhost", "bob", "a", [PrivacyItem(1, "deny")])
        [data] = await module.personal_data(J("alice@localhost"))
        assert data.name == "privacy_lists"
        assert data.rows == [
            ("b", "jid", "s@x.lit", "deny", 1, False, True, True, False, False),
            ("b", "", "", "allow", 2, True, False, False, False, False),
        ]


async def test_lists_go_with_the_account(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_privacy]") as server:
        store = server.modules["mod_privacy"].store
        for name in ("alice", "bob"):
            await server.auth.register(J(f"{name}@localhost"), "pw")
            await store.set_list("localhost", name, "l", [PrivacyItem(1, "deny")])
            await store.set_default("localhost", name, "l")
        assert await server.auth.remove(J("alice@localhost"))
        assert await store.list_names("localhost", "alice") == ([], None)
        assert await store.list_names("localhost", "bob") == (["l"], "l")
