"""An external component (XEP-0114) of one Suricate reached by the users of another over s2s:
its domain is authenticated with dialback like any domain of the server, and once the
component is gone, stanzas to it on the stream already authenticated come back with
service-unavailable (RFC 6120 §8.3.3.19): the stream stays up, nothing vanishes."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import disconnect, eventually, free_port
from tests.e2e.test_component import SECRET, handshake_digest, raw_component
from tests.s2s.harness import federated_server, federated_toml, login, register

ALPHA, BETA, GATEWAY = "alpha.test", "beta.test", "gateway.alpha.test"


async def test_a_remote_user_gets_an_error_once_the_component_is_gone(tmp_path: Path) -> None:
    ports = {d: (free_port(), free_port()) for d in (ALPHA, BETA)}
    component = free_port()
    alpha_toml = federated_toml(
        tmp_path / ALPHA,
        ALPHA,
        *ports[ALPHA],
        {BETA: ("127.0.0.1", ports[BETA][1])},
        "dialback",
        None,
        extra=f"""
[[listen.component]]
port = {component}
ip_address = "127.0.0.1"
password = "{SECRET}"
""",
    )
    # beta reaches the component's domain at alpha's s2s port, as DNS would say
    beta_toml = federated_toml(
        tmp_path / BETA,
        BETA,
        *ports[BETA],
        {ALPHA: ("127.0.0.1", ports[ALPHA][1]), GATEWAY: ("127.0.0.1", ports[ALPHA][1])},
        "dialback",
        None,
    )
    async with (
        federated_server(tmp_path / ALPHA, ALPHA, alpha_toml, *ports[ALPHA]) as alpha,
        federated_server(tmp_path / BETA, BETA, beta_toml, *ports[BETA]) as beta,
    ):
        raw, stream_id = await raw_component(component, GATEWAY)
        await raw.send(f"<handshake>{handshake_digest(stream_id)}</handshake>")
        await raw.expect("<handshake/>")
        await register(beta, "bob")
        bob = await login(beta, f"bob@{BETA}/b")
        try:
            bob.send_message(mto=f"bot@{GATEWAY}", mbody="hello", mtype="chat")
            await raw.expect(r"<message [^>]*from=\"bob@beta.test/b\"[^>]*>.*?</message>", 10)
            await raw.send(
                f"<message from='bot@{GATEWAY}' to='bob@{BETA}/b' type='chat'>"
                "<body>hi bob</body></message>"
            )
            assert (await bob.next_message(10))["body"] == "hi bob"
            await raw.close()
            await eventually(lambda: alpha.components.lookup(GATEWAY) is None)
            bob.send_message(mto=f"bot@{GATEWAY}", mbody="still there?", mtype="chat")
            err = await bob.next_message(10)
            assert (str(err["from"]), err["type"]) == (f"bot@{GATEWAY}", "error")
            assert err["error"]["condition"] == "service-unavailable"
            assert err["body"] == "still there?"
            # the incoming stream that carried it is still up
            assert any(GATEWAY in {local for local, _ in s.pairs} for s in alpha.s2s.incoming)
        finally:
            await disconnect(bob)
