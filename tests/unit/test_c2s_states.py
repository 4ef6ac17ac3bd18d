"""The c2s state machine as data (DESIGN §2.1)."""

from __future__ import annotations

import pytest

from suricate.protocol.c2s import TRANSITIONS, C2SState, C2SStateMachine
from suricate.protocol.fsm import InvalidTransition

S = C2SState


def test_every_state_is_reachable_and_can_close() -> None:
    reachable = {S.CONNECT}
    frontier = [S.CONNECT]
    while frontier:
        state = frontier.pop()
        for nxt in TRANSITIONS[state]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(S)
    for state in S:
        if state is not S.CLOSED:
            assert S.CLOSED in TRANSITIONS[state], state


def test_login_path() -> None:
    fsm = C2SStateMachine()
    for state in (S.WAIT_FOR_STREAM, S.WAIT_FOR_FEATURE_BEFORE_AUTH, S.WAIT_FOR_STREAM,
                  S.WAIT_FOR_FEATURE_BEFORE_AUTH, S.WAIT_FOR_SASL_RESPONSE, S.WAIT_FOR_STREAM,
                  S.WAIT_FOR_FEATURE_AFTER_AUTH, S.SESSION_ESTABLISHED, S.CLOSED):
        fsm.goto(state)
    assert fsm.state is S.CLOSED


@pytest.mark.parametrize(("start", "bad"), [
    (S.CONNECT, S.SESSION_ESTABLISHED),
    (S.WAIT_FOR_FEATURE_BEFORE_AUTH, S.SESSION_ESTABLISHED),
    (S.SESSION_ESTABLISHED, S.WAIT_FOR_STREAM),
    (S.CLOSED, S.WAIT_FOR_STREAM),
])
def test_invalid_transitions_raise(start: C2SState, bad: C2SState) -> None:
    fsm = C2SStateMachine()
    fsm.state = start
    with pytest.raises(InvalidTransition):
        fsm.goto(bad)
