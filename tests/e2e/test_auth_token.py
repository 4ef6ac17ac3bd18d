"""mod_auth_token + mod_keystore (MongooseIM's token-based reconnection) with real clients over
TLS: slixmpp logs in with the password and asks for tokens, then a raw client authenticates
with SASL X-OAUTH using them; revoked, expired, tampered and foreign tokens are refused."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, Client, RawClient, connect, disconnect, running_server

NS = "erlang-solutions.com:xmpp:token-auth:0"


def modules(access: str = "{value = 1, unit = \"hours\"}", key: str = 'type = "ram"') -> str:
    return MODULES_TOML + f"""
[modules.mod_keystore]
keys = [{{name = "token_secret", {key}}}]

[modules.mod_auth_token]
validity_period.access = {access}
validity_period.refresh = {{value = 1, unit = "days"}}
"""


async def request_tokens(client: Client) -> tuple[str, str]:
    iq = client.make_iq_get(ito="alice@localhost")
    iq.append(ET.Element(f"{{{NS}}}query"))
    result: Any = await iq.send(timeout=5)
    items = result.xml.find(f"{{{NS}}}items")
    assert items is not None
    access = items.findtext(f"{{{NS}}}access_token")
    refresh = items.findtext(f"{{{NS}}}refresh_token")
    assert access and refresh
    return access, refresh


async def features(raw: RawClient) -> str:
    await raw.send("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    return await raw.expect(r"<stream:features.*?(</stream:features>|<stream:features/>)")


async def x_oauth(server: Any, token: str) -> tuple[str, RawClient]:
    """Authenticate a new TLS connection with X-OAUTH; the server's answer (<success/> or
    <failure/>) and the client."""
    raw = await RawClient.open(server.tls_port, tls=True)
    assert "<mechanism>X-OAUTH</mechanism>" in await features(raw)
    await raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-OAUTH'>"
                   f"{token}</auth>")
    answer = await raw.expect(r"<success[^>]*/>|<success.*?</success>|<failure.*?</failure>")
    return answer, raw


async def bind(raw: RawClient) -> str:
    await raw.open_stream()
    await raw.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   "<resource>tok</resource></bind></iq>")
    return await raw.expect(r"<iq [^>]*id=.b1.*?</iq>")


async def test_access_and_refresh_tokens_log_in_revocation_and_tampering(
        tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules()) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        access, refresh = await request_tokens(alice)
        assert base64.b64decode(access).startswith(b"access\0alice@localhost\0")
        assert base64.b64decode(refresh).startswith(b"refresh\0alice@localhost\0")
        await disconnect(alice)

        # The access token logs in and binds.
        answer, raw = await x_oauth(server, access)
        assert answer.startswith("<success"), answer
        assert "<jid>alice@localhost/tok</jid>" in await bind(raw)
        await raw.close()

        # The refresh token too, and <success/> carries a new access token.
        answer, raw = await x_oauth(server, refresh)
        assert answer.startswith("<success"), answer
        new_access = answer.split(">", 1)[1].rsplit("<", 1)[0].strip()
        assert base64.b64decode(new_access).startswith(b"access\0alice@localhost\0")
        assert "<jid>alice@localhost/tok</jid>" in await bind(raw)
        await raw.close()
        answer, raw = await x_oauth(server, new_access)
        assert answer.startswith("<success"), answer
        await raw.close()

        # A tampered token (another user, same MAC) fails.
        forged = base64.b64decode(access).replace(b"alice@", b"bobby@")
        answer, raw = await x_oauth(server, base64.b64encode(forged).decode())
        assert "<not-authorized/>" in answer, answer
        await raw.close()
        # Garbage too.
        answer, raw = await x_oauth(server, base64.b64encode(b"nonsense").decode())
        assert "<failure" in answer, answer
        await raw.close()

        # Revoked: the refresh token fails; the access token (never stored) still works.
        assert await server.modules.get("mod_auth_token").revoke_token(
            JID.parse("alice@localhost"))
        answer, raw = await x_oauth(server, refresh)
        assert "<not-authorized/>" in answer, answer
        await raw.close()
        answer, raw = await x_oauth(server, access)
        assert answer.startswith("<success"), answer
        await raw.close()

        # A new refresh token (issued after the revocation) works.
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        _, refresh2 = await request_tokens(alice)
        await disconnect(alice)
        answer, raw = await x_oauth(server, refresh2)
        assert answer.startswith("<success"), answer
        await raw.close()

        # The account removed: its row goes with it, and no token logs in any more.
        assert await server.auth.remove(JID.parse("alice@localhost"))
        store = server.modules.get("mod_auth_token").store
        assert await store.get_seq_no("localhost", "alice") is None
        for token in (access, refresh2):
            answer, raw = await x_oauth(server, token)
            assert "<not-authorized/>" in answer, answer
            await raw.close()


async def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules('{value = 1, unit = "seconds"}')) \
            as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        access, _ = await request_tokens(alice)
        await disconnect(alice)
        await asyncio.sleep(2.1)
        answer, raw = await x_oauth(server, access)
        assert "<not-authorized/>" in answer, answer
        await raw.close()


async def test_a_file_key_survives_a_restart_and_x_oauth_needs_tls(tmp_path: Path) -> None:
    key = tmp_path / "token.key"
    key.write_bytes(b"a secret shared by every node" * 2)
    toml = modules(key=f'type = "file", path = "{key}"')
    async with running_server(tmp_path, modules=toml) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        access, _ = await request_tokens(alice)
        await disconnect(alice)
        # Not offered before TLS (like PLAIN).
        raw = await RawClient.open(server.c2s_port)  # type: ignore[attr-defined]
        assert "X-OAUTH" not in await features(raw)
        await raw.close()
    async with running_server(tmp_path, modules=toml) as server:
        answer, raw = await x_oauth(server, access)
        assert answer.startswith("<success"), answer
        await raw.close()


async def test_a_ram_key_ends_the_tokens_at_restart(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=modules()) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        access, _ = await request_tokens(alice)
        await disconnect(alice)
    async with running_server(tmp_path, modules=modules()) as server:
        # A new random key: the old token's MAC no longer matches.
        answer, raw = await x_oauth(server, access)
        assert "<not-authorized/>" in answer, answer
        await raw.close()
