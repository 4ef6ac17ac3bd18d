"""mod_ping's timeout_action = "kill" and XEP-0198: a phone in a tunnel answers no ping. Its
connection is dropped, but its session waits for resumption (resume_timeout) like any other
connection that died: the phone resumes and gets what was sent meanwhile, exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from suricate.protocol.c2s import C2SState
from tests.e2e.harness import connect, disconnect, eventually, running_server
from tests.mobile.conftest import add_user, modules_toml
from tests.mobile.test_stream_management import _collect, _no_more, _sm_enabled, _state

PINGS = """
[modules.mod_ping]
send_pings = true
ping_interval = 1
ping_req_timeout = 1
timeout_action = "kill"
"""


async def test_a_ping_timeout_leaves_a_resumable_session_waiting(tmp_path: Path) -> None:
    modules = modules_toml().replace("[modules.mod_ping]\n", "") + PINGS
    async with running_server(tmp_path, modules=modules) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        alice = await connect(server, "alice@localhost/phone", "secret",
                              plugins=("xep_0198", "xep_0199"))
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            await eventually(lambda: _sm_enabled(server, "alice@localhost/phone"))
            resumed = asyncio.get_running_loop().create_future()
            alice.add_event_handler("session_resumed",
                                    lambda _: resumed.done() or resumed.set_result(True))
            # The tunnel: the phone reads nothing and answers nothing any more.
            assert alice.transport is not None
            alice.transport.pause_reading()
            bob.send_message(mto="alice@localhost/phone", mbody="m1", mtype="chat")
            # Pinged after 1 s idle, unanswered 1 s later: the connection is dropped, and the
            # session waits (before, the stream error ended it and m1 went to offline storage).
            await eventually(lambda: _state(server, "alice@localhost/phone")
                             == C2SState.RESUME_SESSION, timeout=6)
            bob.send_message(mto="alice@localhost/phone", mbody="m2", mtype="chat")
            await asyncio.sleep(0.1)
            alice.abort()
            await asyncio.sleep(0)
            alice.connect("127.0.0.1", server.c2s_port)  # type: ignore[attr-defined]
            await asyncio.wait_for(resumed, 10)
            assert await _collect(alice, 2) == ["m1", "m2"]
            await _no_more(alice)
            assert await server.modules["mod_offline"].store.count_offline(
                "localhost", "alice") == 0
        finally:
            await disconnect(alice, bob)
