"""mod_muc_log with real slixmpp clients: a logged room's day file (both dirtypes), HTML
escaping, a room without logging writes nothing, access_log refuses others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from tests.e2e.harness import disconnect, running_server
from tests.muc.conftest import SERVICE, create_room, muc_toml, next_groupchat, presence_from, user

ADMINS = """
[acl]
admin = [{user = "alice"}]
[access]
muc_admin = [{acl = "admin", value = "allow"}]
"""

LOGGED = {"muc#roomconfig_enablelogging": True}


def log_toml(options: str = "") -> str:
    return muc_toml() + "[modules.mod_muc_log]\n" + options


async def wait_for_text(path: Path, text: str, timeout: float = 5.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        content = path.read_text(encoding="utf-8") if path.exists() else ""
        if text in content or loop.time() > deadline:
            return content
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("dirtype", ["subdirs", "plain"])
async def test_logged_room_writes_the_day_file(tmp_path: Any, dirtype: str) -> None:
    options = f'outdir = "logs"\ndirtype = "{dirtype}"\ntimezone = "universal"\n'
    async with running_server(tmp_path, extra=ADMINS, modules=log_toml(options)) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = f"logged@{SERVICE}"
        await create_room(alice, room, "Alice", LOGGED)
        pres, _, _, _ = await bob.plugin["xep_0045"].join_muc_wait(SJID(room), "Bob",
                                                                   timeout=5)
        assert "170" in {str(c) for c in pres["muc"]["status_codes"]}  # §7.2.12
        alice.make_message(mto=room, mbody="hello <script>alert(1)</script> & bye",
                           mtype="groupchat").send()
        await next_groupchat(bob)
        bob.make_message(mto=room, mbody="see https://example.org/?a=1&b=2",
                         mtype="groupchat").send()
        await next_groupchat(alice)
        alice.plugin["xep_0045"].set_subject(SJID(room), "Today: <b>news</b>")
        bob.plugin["xep_0045"].leave_muc(SJID(room), "Bob")
        await presence_from(alice, f"{room}/Bob", "unavailable")
        day = datetime.now(UTC)
        base = tmp_path / "logs" / room
        path = base / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}.html" if dirtype == "subdirs" \
            else base / f"{day:%Y-%m-%d}.html"
        content = await wait_for_text(path, "Bob leaves")
        assert path.exists(), sorted(str(p) for p in tmp_path.rglob("*"))
        assert "<script>" not in content and "<b>news" not in content
        assert "hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; bye" in content
        assert "&lt;Alice&gt;" in content and "&lt;Bob&gt;" in content
        assert "Today: &lt;b&gt;news&lt;/b&gt;" in content
        assert "Bob joins the room" in content and "Bob leaves the room" in content
        assert 'href="https://example.org/?a=1&amp;b=2" rel="nofollow"' in content
        await disconnect(alice, bob)


async def test_plaintext_and_room_without_logging(tmp_path: Any) -> None:
    options = 'file_format = "plaintext"\ndirtype = "plain"\n'
    async with running_server(tmp_path, extra=ADMINS, modules=log_toml(options)) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        quiet, logged = f"quiet@{SERVICE}", f"text@{SERVICE}"
        await create_room(alice, quiet, "Alice", {})
        await create_room(alice, logged, "Alice", LOGGED)
        await bob.plugin["xep_0045"].join_muc_wait(SJID(quiet), "Bob", timeout=5)
        alice.make_message(mto=quiet, mbody="not logged", mtype="groupchat").send()
        await next_groupchat(bob)
        alice.make_message(mto=logged, mbody="a <b> & c", mtype="groupchat").send()
        await next_groupchat(alice)
        # A nick change (§7.6) and a kick with its reason (§8.2) are logged too.
        await bob.plugin["xep_0045"].join_muc_wait(SJID(logged), "Bob", timeout=5)
        bob.send_presence(pto=f"{logged}/Robert")
        await presence_from(alice, f"{logged}/Robert")
        await alice.plugin["xep_0045"].set_role(SJID(logged), "Robert", "none",
                                                reason="calm down", timeout=5)
        path = tmp_path / "www" / "muc" / logged / f"{datetime.now():%Y-%m-%d}.txt"
        content = await wait_for_text(path, "has been kicked")
        assert "[" in content and "<Alice> a <b> & c" in content
        assert "Bob is now known as Robert" in content
        assert "Robert has been kicked: calm down" in content
        await asyncio.sleep(0.2)
        assert not (tmp_path / "www" / "muc" / quiet).exists()
        await disconnect(alice, bob)


async def test_access_log_refuses_others(tmp_path: Any) -> None:
    async with running_server(tmp_path, extra=ADMINS, modules=log_toml()) as server:
        bob = await user(server, "bob")
        room = f"bobs@{SERVICE}"
        with pytest.raises(IqError) as err:
            await create_room(bob, room, "Bob", LOGGED)
        assert err.value.condition == "forbidden"
        # Other settings are his to change.
        form = bob.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="muc#roomconfig_roomname", value="Bob's")
        await bob.plugin["xep_0045"].set_room_config(SJID(room), form, timeout=5)
        await asyncio.sleep(0.1)
        assert not (tmp_path / "www").exists()
        await disconnect(bob)
