"""The disk backend walked as chatting users and their clients meet it: two PUTs racing for one
slot, a PUT that stops half-way, a full disk, what a browser gets for an uploaded page, an
account of another server asking for a slot, and what happens to files over time and when
their uploader's account is removed."""

from __future__ import annotations

import asyncio
import errno
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import slixmpp
import slixmpp.exceptions

from suricate.jid import JID
from suricate.modules.mod_http_upload import disk
from tests.e2e.harness import connect, disconnect, free_port, running_server
from tests.mobile.conftest import add_user, make_test_ca
from tests.s2s.harness import login, register, two_servers
from tests.upload.test_upload_disk import _config, _files, _raw_slot, trust


def _trusted_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The disk backend's listener and module sections on a free port, its certificate from a
    test CA this process trusts (clients verify the upload URL's HTTPS)."""
    trust(monkeypatch, make_test_ca(tmp_path / "certs"))
    return _config(tmp_path, free_port())


async def _stalling(first: bytes, gate: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await gate.wait()


async def _wait_for(predicate: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_two_puts_to_one_slot_one_wins_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client retrying a PUT it thinks failed while the first is still running: the second
    # must not write into the first's temporary file (both 201, the file a mix of two bodies).
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            slot = await _raw_slot(alice, "photo.jpg", 10, "image/jpeg")
            gate = asyncio.Event()

            async def slow_put() -> int:
                body = _stalling(b"A" * 5, gate)
                async with (
                    aiohttp.ClientSession() as http,
                    http.put(
                        slot["put"],
                        data=body,
                        headers={"Content-Type": "image/jpeg", "Content-Length": "10"},
                    ) as r,
                ):
                    return r.status

            first = asyncio.create_task(slow_put())
            await _wait_for(
                lambda: any(p.name.endswith(".part") for p in _files(tmp_path / "files"))
            )
            async with aiohttp.ClientSession() as http:
                async with http.put(
                    slot["put"], data=b"B" * 10, headers={"Content-Type": "image/jpeg"}
                ) as r:
                    second = r.status
                gate.set()
                first.cancel()  # its last bytes never come: the server drops the part
                with pytest.raises(asyncio.CancelledError):
                    await first
                assert second == 409  # the slot is being uploaded to
                # the first PUT ended without its body: nothing is kept, the slot still free
                await _wait_for(
                    lambda: not any(p.name.endswith(".part") for p in _files(tmp_path / "files"))
                )
                async with http.put(
                    slot["put"], data=b"C" * 10, headers={"Content-Type": "image/jpeg"}
                ) as r:
                    assert r.status == 201
                async with http.put(
                    slot["put"], data=b"D" * 10, headers={"Content-Type": "image/jpeg"}
                ) as r:
                    assert r.status == 409
                async with http.get(slot["get"]) as r:
                    assert await r.read() == b"C" * 10
        finally:
            await disconnect(alice)


async def test_a_put_that_stops_sending_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A phone going into a tunnel mid-upload: the server must not wait for the rest forever
    # (a connection and an open file per stalled upload).
    monkeypatch.setattr(disk, "IDLE_TIMEOUT", 0.3, raising=False)
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            slot = await _raw_slot(alice, "video.mp4", 1000, "video/mp4")
            gate = asyncio.Event()
            async with aiohttp.ClientSession() as http:
                put = http.put(
                    slot["put"],
                    data=_stalling(b"x" * 100, gate),
                    headers={"Content-Type": "video/mp4", "Content-Length": "1000"},
                )
                async with asyncio.timeout(5):
                    async with put as r:
                        assert r.status == 408
            gate.set()
            assert not any(p.name.endswith(".part") for p in _files(tmp_path / "files"))
            assert _files(tmp_path / "files") == set()
        finally:
            await disconnect(alice)


async def test_a_put_that_trickles_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client sending a few bytes now and then, never long enough apart to look stalled,
    # would hold its connection and file for as long as it likes.
    monkeypatch.setattr(disk, "IDLE_TIMEOUT", 0.3, raising=False)
    monkeypatch.setattr(disk, "MIN_RATE", 1000, raising=False)  # 1000 bytes: 1.3 s at most

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):  # 10 bytes every 0.1 s: 10 s for the whole body
            yield b"x" * 10
            await asyncio.sleep(0.1)

    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            slot = await _raw_slot(alice, "slow.bin", 1000, "application/octet-stream")
            async with aiohttp.ClientSession() as http:
                put = http.put(
                    slot["put"],
                    data=trickle(),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": "1000"},
                )
                async with asyncio.timeout(4):
                    async with put as r:
                        assert r.status == 408
            assert _files(tmp_path / "files") == set()
        finally:
            await disconnect(alice)


async def test_a_full_disk_gets_507_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = open

    class Full:
        """A file on a disk with no room left: the first write fails."""

        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        return Full(handle) if "b" in mode and ("x" in mode or "w" in mode) else handle

    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            slot = await _raw_slot(alice, "big.bin", 1000, "application/octet-stream")
            monkeypatch.setattr(disk, "open", full_open, raising=False)
            async with (
                aiohttp.ClientSession() as http,
                http.put(
                    slot["put"],
                    data=b"x" * 1000,
                    headers={"Content-Type": "application/octet-stream"},
                ) as r,
            ):
                assert r.status == 507, await r.text()
            assert _files(tmp_path / "files") == set()
            # the file fits, its type does not: the client is told, the file is not served
            monkeypatch.setattr(disk, "open", open, raising=False)

            def no_room(*_: Any, **__: Any) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(Path, "write_text", no_room)
            async with aiohttp.ClientSession() as http:
                async with http.put(
                    slot["put"],
                    data=b"x" * 1000,
                    headers={"Content-Type": "application/octet-stream"},
                ) as r:
                    assert r.status == 507, await r.text()
                async with http.get(slot["get"]) as r:
                    assert r.status == 404
            assert _files(tmp_path / "files") == set()
        finally:
            await disconnect(alice)


async def test_served_files_never_run_as_the_servers_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An uploaded page or SVG opened from a chat would otherwise be a page of this origin (the
    # web client at /chat may share it): no scripts, no loads, no forms; a page is a download.
    # Media players seek with Range, and caches revalidate with the ETag.
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            async with aiohttp.ClientSession() as http:
                got: dict[str, Any] = {}
                for name, ctype, body in (
                    ("page.html", "text/html", b"<script>alert(1)</script>"),
                    ("cat.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
                    ("café.png", "image/png", bytes(range(200))),
                ):
                    slot = await _raw_slot(alice, name, len(body), ctype)
                    async with http.put(
                        slot["put"], data=body, headers={"Content-Type": ctype}
                    ) as r:
                        assert r.status == 201
                    async with http.get(slot["get"]) as r:
                        got[name] = r.headers
                    got[name + " url"] = slot["get"]
                for name in ("page.html", "cat.svg", "café.png"):
                    csp = got[name]["Content-Security-Policy"]
                    assert "sandbox" in csp and "default-src 'none'" in csp, csp
                    assert got[name]["X-Content-Type-Options"] == "nosniff"
                assert (
                    got["page.html"]["Content-Disposition"]
                    == "attachment; filename*=UTF-8''page.html"
                )
                assert (
                    got["café.png"]["Content-Disposition"]
                    == "inline; filename*=UTF-8''caf%C3%A9.png"
                )
                url = got["café.png url"]
                async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
                    assert r.status == 206 and await r.read() == bytes(range(10, 20))
                async with http.head(url) as r:
                    assert r.status == 200 and r.headers["Content-Length"] == "200"
                async with http.get(url, headers={"If-None-Match": got["café.png"]["ETag"]}) as r:
                    assert r.status == 304
        finally:
            await disconnect(alice)


async def test_accounts_of_other_servers_get_no_slot(tmp_path: Path) -> None:
    # Over s2s anyone could otherwise store files on our disk and share them from our name.
    upload = """
[modules.mod_http_upload]
backend = "disk"
disk.base_url = "https://alpha.test/upload"
"""
    per_server: dict[str, Any] = {"alpha.test": {"extra": upload}}
    async with two_servers(tmp_path, "dialback", **per_server) as (alpha, beta):
        # beta reaches alpha's upload service at alpha's s2s port, as DNS would tell it
        beta.s2s.overrides["upload.alpha.test"] = beta.s2s.overrides["alpha.test"]
        await register(alpha, "alice")
        await register(beta, "bob")
        bob = await login(beta, "bob@beta.test/b", plugins=("xep_0363",))
        alice = await login(alpha, "alice@alpha.test/a", plugins=("xep_0363",))
        try:
            with pytest.raises(slixmpp.exceptions.IqError) as refused:
                await bob.plugin["xep_0363"].request_slot(
                    slixmpp.JID("upload.alpha.test"), "a.txt", 3, "text/plain", timeout=10
                )
            error = refused.value.iq["error"]
            assert (error["type"], error["condition"]) == ("cancel", "not-allowed")
            slot = await alice.plugin["xep_0363"].request_slot(
                slixmpp.JID("upload.alpha.test"), "a.txt", 3, "text/plain", timeout=10
            )
            assert slot["http_upload_slot"]["get"]["url"].startswith("https://alpha.test/")
        finally:
            await disconnect(bob)
            await disconnect(alice)


async def test_files_go_with_their_uploaders_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GDPR removal: a removed account's shared files stop being served and leave the disk;
    # another user's stay.
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        urls = await _upload_as(server, "alice", "bob")
        assert await server.auth.remove(JID.parse("alice@localhost"))
        assert await _status(urls["alice"]) == 404
        assert await _status(urls["bob"]) == 200
        assert [p.name for p in _files(tmp_path / "files") if not p.name.startswith(".")] == [
            "bob.txt"
        ]


async def test_a_guests_files_stay_after_it_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A guest (SASL ANONYMOUS) is removed with its last session; the pictures it shared in
    # a room stay served, as the room's archive keeps its messages.
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    anon = 'methods = ["rdbms", "anonymous"]\nsasl_mechanisms = ["scram_sha256", "anonymous"]'
    async with running_server(
        tmp_path, extra=listener, modules=modules, auth_extra=anon
    ) as server:
        guest = await connect(server, "localhost", "", sasl_mech="ANONYMOUS",
                              plugins=("xep_0363",))
        who = guest.boundjid.bare
        url = await guest.plugin["xep_0363"].upload_file(
            "guest.txt", size=5, content_type="text/plain",
            input_file=io.BytesIO(b"hello"), timeout=10)
        await disconnect(guest)
        await server.drain()
        assert not await server.user_exists(JID.parse(who))
        assert await _status(url) == 200


async def test_files_older_than_file_ttl_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    modules = modules.replace(
        'disk.directory = "files"', 'disk.directory = "files"\ndisk.file_ttl = 30'
    )
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        urls = await _upload_as(server, "bob")
        module: Any = server.modules["mod_http_upload"]
        # a partial file a crash left behind (no PUT is running for it)
        left = tmp_path / "files" / ("ab" * 32) / ".crash.bin.part"
        left.parent.mkdir()
        left.write_bytes(b"half")
        assert await module.sweep(time.time() + 29 * 86400) == 0
        assert not left.parent.exists()
        assert await _status(urls["bob"]) == 200
        assert await module.sweep(time.time() + 31 * 86400) == 1
        assert await _status(urls["bob"]) == 404
        assert list((tmp_path / "files").iterdir()) == []


async def _upload_as(server: Any, *users: str) -> dict[str, str]:
    urls = {}
    for who in users:
        await add_user(server, who)
        client = await connect(server, f"{who}@localhost/r", "secret", plugins=("xep_0363",))
        try:
            urls[who] = await client.plugin["xep_0363"].upload_file(
                f"{who}.txt",
                size=5,
                content_type="text/plain",
                input_file=io.BytesIO(b"hello"),
                timeout=10,
            )
        finally:
            await disconnect(client)
    return urls


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status


async def test_a_put_expecting_100_continue_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # curl and libcurl-based clients send "Expect: 100-continue" for bodies over 1 MB and wait
    # for the interim answer before sending the body (RFC 9110 §10.1.1); without one each
    # upload stalls (curl: a second; clients that wait longer: until they give up).
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            slot = await _raw_slot(alice, "report.pdf", 50_000, "application/pdf")
            async with aiohttp.ClientSession() as http:
                async with asyncio.timeout(3):
                    async with http.put(
                        slot["put"],
                        data=b"%" * 50_000,
                        expect100=True,
                        headers={"Content-Type": "application/pdf"},
                    ) as r:
                        assert r.status == 201
                # a refused PUT is answered without waiting for its body
                async with asyncio.timeout(3):
                    async with http.put(
                        slot["put"].replace("?v=", "?v=9"),
                        data=b"%" * 50_000,
                        expect100=True,
                        headers={"Content-Type": "application/pdf"},
                    ) as r:
                        assert r.status == 403
        finally:
            await disconnect(alice)


async def test_a_long_name_is_shortened_keeping_its_ending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name saved from a web page can pass the file system's 255 bytes (accented letters are
    # two): the PUT failed (500, "File name too long"). XEP-0363 §4 lets the service alter the
    # name but wants the ending kept.
    listener, modules = _trusted_config(tmp_path, monkeypatch)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret")
        try:
            async with aiohttp.ClientSession() as http:
                for name in ("é" * 130 + ".jpg", "x" * 300):
                    slot = await _raw_slot(alice, name, 3, "image/jpeg")
                    async with http.put(
                        slot["put"], data=b"abc", headers={"Content-Type": "image/jpeg"}
                    ) as r:
                        assert r.status == 201, await r.text()
                    async with http.get(slot["get"]) as r:
                        assert r.status == 200 and await r.read() == b"abc"
            stored = [p.name for p in _files(tmp_path / "files") if not p.name.startswith(".")]
            assert sorted(len(n.encode()) for n in stored) == [200, 200]
            assert any(n.endswith("éé.jpg") for n in stored)
        finally:
            await disconnect(alice)
