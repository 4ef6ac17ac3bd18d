"""The subscription state machine against the tables of RFC 6121 Appendix A (and §3.4)."""

from __future__ import annotations

import pytest

from suricate.protocol import subscription as sub

S = {str(state): state for state in sub.STATES}
NO_CHANGE = "no state change"

# (existing state, forwarded?, new state) exactly as Appendix A lists them.
A_2_1_OUT_SUBSCRIBE = [
    ("None", True, "None + Pending Out"),
    ("None + Pending Out", True, NO_CHANGE),
    ("None + Pending In", True, "None + Pending Out/In"),
    ("None + Pending Out/In", True, NO_CHANGE),
    ("To", True, NO_CHANGE),
    ("To + Pending In", True, NO_CHANGE),
    ("From", True, "From + Pending Out"),
    ("From + Pending Out", True, NO_CHANGE),
    ("Both", True, NO_CHANGE),
]
A_2_2_OUT_UNSUBSCRIBE = [
    ("None", True, NO_CHANGE),
    ("None + Pending Out", True, "None"),
    ("None + Pending In", True, NO_CHANGE),
    ("None + Pending Out/In", True, "None + Pending In"),
    ("To", True, "None"),
    ("To + Pending In", True, "None + Pending In"),
    ("From", True, NO_CHANGE),
    ("From + Pending Out", True, "From"),
    ("Both", True, "From"),
]
# Rows whose state does not change are not routed (nothing to approve); the three states in
# which §3.4 pre-approval applies are tested separately below.
A_2_3_OUT_SUBSCRIBED = [
    ("None + Pending In", True, "From"),
    ("None + Pending Out/In", True, "From + Pending Out"),
    ("To + Pending In", True, "Both"),
    ("From", False, NO_CHANGE),
    ("From + Pending Out", False, NO_CHANGE),
    ("Both", False, NO_CHANGE),
]
A_2_4_OUT_UNSUBSCRIBED = [
    ("None", True, NO_CHANGE),
    ("None + Pending Out", True, NO_CHANGE),
    ("None + Pending In", True, "None"),
    ("None + Pending Out/In", True, "None + Pending Out"),
    ("To", True, NO_CHANGE),
    ("To + Pending In", True, "To"),
    ("From", True, "None"),
    ("From + Pending Out", True, "None + Pending Out"),
    ("Both", True, "To"),
]
A_3_1_IN_SUBSCRIBE = [
    ("None", True, "None + Pending In"),
    ("None + Pending Out", True, "None + Pending Out/In"),
    ("None + Pending In", False, NO_CHANGE),
    ("None + Pending Out/In", False, NO_CHANGE),
    ("To", True, "To + Pending In"),
    ("To + Pending In", False, NO_CHANGE),
    ("From", False, NO_CHANGE),
    ("From + Pending Out", False, NO_CHANGE),
    ("Both", False, NO_CHANGE),
]
A_3_2_IN_UNSUBSCRIBE = [
    ("None", False, NO_CHANGE),
    ("None + Pending Out", False, NO_CHANGE),
    ("None + Pending In", True, "None"),
    ("None + Pending Out/In", True, "None + Pending Out"),
    ("To", False, NO_CHANGE),
    ("To + Pending In", True, "To"),
    ("From", True, "None"),
    ("From + Pending Out", True, "None + Pending Out"),
    ("Both", True, "To"),
]
A_3_3_IN_SUBSCRIBED = [
    ("None", False, NO_CHANGE),
    ("None + Pending Out", True, "To"),
    ("None + Pending In", False, NO_CHANGE),
    ("None + Pending Out/In", True, "To + Pending In"),
    ("To", False, NO_CHANGE),
    ("To + Pending In", False, NO_CHANGE),
    ("From", False, NO_CHANGE),
    ("From + Pending Out", True, "Both"),
    ("Both", False, NO_CHANGE),
]
A_3_4_IN_UNSUBSCRIBED = [
    ("None", False, NO_CHANGE),
    ("None + Pending Out", True, "None"),
    ("None + Pending In", False, NO_CHANGE),
    ("None + Pending Out/In", True, "None + Pending In"),
    ("To", True, "None"),
    ("To + Pending In", True, "None + Pending In"),
    ("From", False, NO_CHANGE),
    ("From + Pending Out", True, "From"),
    ("Both", True, "From"),
]

OUTBOUND_CASES = (
    [("subscribe", *row) for row in A_2_1_OUT_SUBSCRIBE]
    + [("unsubscribe", *row) for row in A_2_2_OUT_UNSUBSCRIBE]
    + [("subscribed", *row) for row in A_2_3_OUT_SUBSCRIBED]
    + [("unsubscribed", *row) for row in A_2_4_OUT_UNSUBSCRIBED]
)
INBOUND_CASES = (
    [("subscribe", *row) for row in A_3_1_IN_SUBSCRIBE]
    + [("unsubscribe", *row) for row in A_3_2_IN_UNSUBSCRIBE]
    + [("subscribed", *row) for row in A_3_3_IN_SUBSCRIBED]
    + [("unsubscribed", *row) for row in A_3_4_IN_UNSUBSCRIBED]
)


def test_nine_states() -> None:
    assert len(sub.STATES) == 9
    assert set(S) == {"None", "None + Pending Out", "None + Pending In", "None + Pending Out/In",
                      "To", "To + Pending In", "From", "From + Pending Out", "Both"}


@pytest.mark.parametrize(("event", "before", "forward", "after"), OUTBOUND_CASES)
def test_outbound_appendix_a2(event: str, before: str, forward: bool, after: str) -> None:
    t = sub.outbound(S[before], False, event)
    assert t.forward is forward
    assert str(t.after) == (before if after == NO_CHANGE else after)
    assert t.reply is None


@pytest.mark.parametrize(("event", "before", "forward", "after"), INBOUND_CASES)
def test_inbound_appendix_a3(event: str, before: str, forward: bool, after: str) -> None:
    t = sub.inbound(S[before], False, event)
    assert t.forward is forward
    assert str(t.after) == (before if after == NO_CHANGE else after)


@pytest.mark.parametrize("before", ["From", "From + Pending Out", "Both"])
def test_inbound_subscribe_from_a_subscriber_is_auto_answered(before: str) -> None:
    # RFC 6121 §3.1.3: the server replies 'subscribed' on the user's behalf.
    t = sub.inbound(S[before], False, "subscribe")
    assert t.reply == "subscribed"
    assert not t.forward and not t.changed


@pytest.mark.parametrize("before", ["None", "None + Pending Out", "To"])
def test_outbound_subscribed_without_request_pre_approves(before: str) -> None:
    # RFC 6121 §3.4.1: not routed, the item is marked approved.
    t = sub.outbound(S[before], False, "subscribed")
    assert not t.forward
    assert t.approved and t.changed
    assert str(t.after) == before


@pytest.mark.parametrize(("before", "after"), [
    ("None", "From"), ("None + Pending Out", "From + Pending Out"), ("To", "Both"),
])
def test_pre_approved_subscribe_is_accepted_by_the_server(before: str, after: str) -> None:
    # RFC 6121 §3.4.2: not delivered, answered 'subscribed', approval consumed.
    t = sub.inbound(S[before], True, "subscribe")
    assert not t.forward
    assert t.reply == "subscribed"
    assert str(t.after) == after
    assert not t.approved
    assert t.gained_from


def test_unsubscribed_withdraws_a_pre_approval() -> None:
    t = sub.outbound(sub.NONE, True, "unsubscribed")
    assert not t.approved and t.changed and t.forward


def test_pre_approval_is_kept_by_unrelated_events() -> None:
    t = sub.inbound(sub.NONE_OUT, True, "subscribed")
    assert str(t.after) == "To" and t.approved


def test_gained_and_lost_from() -> None:
    assert sub.outbound(sub.NONE_IN, False, "subscribed").gained_from
    assert sub.outbound(sub.BOTH, False, "unsubscribed").lost_from
    assert sub.inbound(sub.FROM, False, "unsubscribe").lost_from
    assert not sub.inbound(sub.TO, False, "unsubscribed").lost_from


@pytest.mark.parametrize(("subscription", "ask", "expected"), [
    ("none", "none", "None"), ("none", "out", "None + Pending Out"),
    ("none", "in", "None + Pending In"), ("none", "both", "None + Pending Out/In"),
    ("to", "none", "To"), ("to", "in", "To + Pending In"), ("to", "out", "To"),
    ("to", "both", "To + Pending In"), ("from", "none", "From"),
    ("from", "out", "From + Pending Out"), ("from", "in", "From"),
    ("from", "both", "From + Pending Out"), ("both", "both", "Both"),
])
def test_normalize_stored_pairs(subscription: str, ask: str, expected: str) -> None:
    assert str(sub.normalize(subscription, ask)) == expected
