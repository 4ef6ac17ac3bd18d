"""SESSION_HANDOVER (XEP-0198 §5 across nodes) of mod_presence and mod_caps: what a session
carries to its new node is plain data (it travels marshalled) and comes back whole; the old
node lets go of it. The move itself, with real nodes and clients: tests/cluster/test_sm_nodes.py."""

from __future__ import annotations

import marshal
from typing import Any

from suricate.jid import JID
from suricate.modules.mod_caps import CAPS_SLOT, ModCaps, SessionCaps, session_features
from suricate.modules.mod_presence import DIRECTED, ModPresence


class _Session:
    def __init__(self) -> None:
        self.module_state: dict[str, Any] = {}


def _module(cls: Any) -> Any:
    module = cls.__new__(cls)  # handover reads nothing of the server
    return module


def test_directed_presence_and_caps_move_with_the_session() -> None:
    presence, caps = _module(ModPresence), _module(ModCaps)
    old, new = _Session(), _Session()
    DIRECTED.setdefault(old).update({JID.parse("room@conference.localhost/nick"),
                                     JID.parse("bob@example.org/desk")})
    features = frozenset({"urn:xmpp:avatar:metadata+notify", "eu.siacs.conversations.axolotl"
                                                             ".devicelist+notify"})
    CAPS_SLOT.set(old, SessionCaps(("https://client", "ver=", "sha-1"), features))
    state: dict[str, Any] = {}
    for module in (presence, caps):
        state = module.handover(state, old, False)
    assert DIRECTED.get(old) is None and CAPS_SLOT.get(old) is None  # the old node let go
    state = marshal.loads(marshal.dumps(state))  # what the cluster's answer carries
    for module in (presence, caps):
        state = module.handover(state, new, True)
    assert DIRECTED.get(new) == {JID.parse("room@conference.localhost/nick"),
                                 JID.parse("bob@example.org/desk")}
    assert session_features(new) == features
    assert CAPS_SLOT.get(new).key == ("https://client", "ver=", "sha-1")  # type: ignore[union-attr]


def test_nothing_to_carry_adds_nothing() -> None:
    state: dict[str, Any] = {}
    for module in (_module(ModPresence), _module(ModCaps)):
        state = module.handover(state, _Session(), False)
    assert state == {}
    session = _Session()
    for module in (_module(ModPresence), _module(ModCaps)):
        module.handover({}, session, True)
    assert session.module_state == {}
