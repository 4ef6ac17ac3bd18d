"""``state_timeout`` means the same on every stream kind (MongooseIM: milliseconds for each
negotiation step): a configured 0 is no deadline at all, on c2s as on s2s and components;
any other value arms a timer of that many milliseconds in each timed state."""

from __future__ import annotations

import types
from typing import Any

import pytest

from suricate.core.c2s import C2S
from suricate.core.component import Component
from suricate.core.s2s_in import S2SIn
from suricate.instrument import Instrumentation


class Loop:
    """The loop a stream asks for timers, recording the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        self.delays.append(delay)
        return types.SimpleNamespace(cancel=lambda: None, when=lambda: delay)

    def time(self) -> float:
        return 0.0


def _conn(loop: Loop) -> Any:
    return types.SimpleNamespace(loop=loop, peer=("192.0.2.1", 1), tls=None)


def _c2s(opts: dict[str, Any], loop: Loop) -> Any:
    return C2S(types.SimpleNamespace(instrument=Instrumentation()), _conn(loop), opts, None)


def _s2s_in(opts: dict[str, Any], loop: Loop) -> Any:
    service = types.SimpleNamespace(server=types.SimpleNamespace())
    return S2SIn(service, _conn(loop), opts, None, None)  # type: ignore[arg-type]


def _component(opts: dict[str, Any], loop: Loop) -> Any:
    return Component(types.SimpleNamespace(), _conn(loop), opts)  # type: ignore[arg-type]


KINDS = [_c2s, _s2s_in, _component]


@pytest.mark.parametrize("make", KINDS, ids=["c2s", "s2s_in", "component"])
def test_zero_means_no_deadline(make: Any) -> None:
    loop = Loop()
    stream = make({"state_timeout": 0, "max_stanza_size": None}, loop)
    assert stream.state.value == "wait_for_stream"
    assert loop.delays == []
    assert stream._timer is None


@pytest.mark.parametrize("make", KINDS, ids=["c2s", "s2s_in", "component"])
def test_milliseconds_everywhere(make: Any) -> None:
    loop = Loop()
    make({"state_timeout": 400, "max_stanza_size": None}, loop)
    assert loop.delays == [0.4]


def test_c2s_and_s2s_agree_on_zero() -> None:
    c2s_loop, s2s_loop = Loop(), Loop()
    _c2s({"state_timeout": 0}, c2s_loop)
    _s2s_in({"state_timeout": 0}, s2s_loop)
    assert c2s_loop.delays == s2s_loop.delays == []


class _RealConn:
    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.peer = ("192.0.2.1", 1)
        self.tls = None
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


async def test_one_timer_per_stream_the_deadline_moves_with_each_state() -> None:
    """A login's steps move the deadline of the one timer armed rather than cancelling it
    and arming another each (the loop's heap, compared in Python); the stream still times
    out ``state_timeout`` after its last step, not after its first."""
    import asyncio

    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_later = loop.call_later

    def counting(delay: float, callback: Any, *args: Any) -> Any:
        armed.append(delay)
        return call_later(delay, callback, *args)

    timed_out: list[float] = []

    class Timed(C2S):
        __slots__ = ()

        def on_timeout(self) -> None:
            timed_out.append(loop.time())

    conn = _RealConn(loop)
    conn.loop = types.SimpleNamespace(call_later=counting, time=loop.time)
    c2s = Timed(types.SimpleNamespace(instrument=Instrumentation()), conn,  # type: ignore[arg-type]
                {"state_timeout": 150, "max_stanza_size": None}, None)
    started = loop.time()
    for _ in range(5):  # five steps 20 ms apart: each gives the state 150 ms again
        await asyncio.sleep(0.02)
        c2s.restart_state_timer()
        assert 0.14 < (c2s.state_time_left() or 0) <= 0.15
    last_step = loop.time()
    assert armed == [0.15]  # one timer so far, whatever the steps
    await asyncio.sleep(0.3)
    assert len(timed_out) == 1
    assert timed_out[0] - last_step >= 0.149 and timed_out[0] - started > 0.249
    assert len(armed) == 2  # fired at 150 ms, re-armed once for the rest
    c2s.extend_state_deadline(10)  # no deadline any more (timed out): nothing to extend
    assert c2s.state_time_left() is None


async def test_a_step_after_an_extended_deadline_gets_state_timeout_again() -> None:
    """A state given longer (``extend_state_deadline``: a person reviews a self-signed
    certificate after STARTTLS) must not leave its long timer to the steps after it: the
    next state times out ``state_timeout`` after it began."""
    import asyncio

    loop = asyncio.get_running_loop()
    timed_out: list[float] = []

    class Timed(C2S):
        __slots__ = ()

        def on_timeout(self) -> None:
            timed_out.append(loop.time())

    c2s = Timed(types.SimpleNamespace(instrument=Instrumentation()),  # type: ignore[arg-type]
                _RealConn(loop), {"state_timeout": 100, "max_stanza_size": None}, None)
    c2s.extend_state_deadline(30)
    await asyncio.sleep(0.15)  # longer than state_timeout: still waiting for the person
    assert timed_out == []
    c2s.restart_state_timer()  # the next step
    step = loop.time()
    await asyncio.sleep(0.3)
    assert len(timed_out) == 1 and 0.099 <= timed_out[0] - step < 0.2
