"""mod_event_pusher's sns backend without AWS: its SigV4 signature equals botocore's (the AWS
SDK) for the same request and instant, and a real server publishes the events real slixmpp
clients cause to a local SNS look-alike (aiohttp) that checks each request's signature with
botocore, fails the first one (6.4's retries), and records the Publish calls."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from suricate.modules.mod_event_pusher import sns
from tests.e2e.harness import connect, disconnect, free_port, running_server
from tests.mobile.conftest import add_user, modules_toml

NOW = datetime(2026, 12, 5, 6, 1, 2, tzinfo=UTC)
KEY_ID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def _botocore(url: str, body: bytes, when: datetime) -> str:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": CONTENT_TYPE})
    auth = SigV4Auth(Credentials(KEY_ID, SECRET), "sns", "eu-west-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        auth.add_auth(request)
    return str(request.headers["Authorization"])


def test_signature_matches_botocore() -> None:
    url = "https://sns.eu-west-1.amazonaws.com/"
    body = (
        b"Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aeu-west-1%3A1%3At"
        b"&Message=%7B%22message%22%3A+%22z%C3%BC%22%7D"
    )
    ours = sns.sign(
        "POST",
        url,
        {"Content-Type": CONTENT_TYPE},
        body,
        region="eu-west-1",
        service="sns",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        now=NOW,
    )
    assert ours["X-Amz-Date"] == "20261205T060102Z"
    assert ours["Authorization"] == _botocore(url, body, NOW)


async def test_events_published_to_sns(tmp_path: Path) -> None:
    published: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    calls: list[int] = []

    async def publish(request: web.Request) -> web.Response:
        body = await request.read()
        when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        url = f"http://{request.headers['Host']}/"
        assert request.headers["Authorization"] == _botocore(url, body, when.replace(tzinfo=UTC))
        calls.append(1)
        if len(calls) == 1:  # the first call fails: tried again after the back-off
            return web.Response(status=500, text="<Error>InternalError</Error>")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        published.put_nowait(form)
        return web.Response(text="<PublishResponse/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/", publish)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    modules = modules_toml(f"""
[modules.mod_event_pusher.sns]
presence_updates_topic = "user_presence_updated"
pm_messages_topic = "user_message_sent"
sns_host = "http://127.0.0.1:{port}"
region = "eu-west-1"
access_key_id = "{KEY_ID}"
secret_access_key = "{SECRET}"
account_id = "123456789012"
""")
    try:
        async with running_server(tmp_path, modules=modules) as server:
            await add_user(server, "alice")
            await add_user(server, "bob")
            alice = await connect(server, "alice@localhost/a", "secret")
            try:
                alice.send_presence()
                alice.send_message(mto="bob@localhost/x", mbody="via SNS", mtype="chat")
                alice.send_message(mto="bob@localhost", mtype="chat")  # no body: no event
                got = [await asyncio.wait_for(published.get(), 5) for _ in range(2)]
            finally:
                await disconnect(alice)
            got.append(await asyncio.wait_for(published.get(), 5))
            await asyncio.sleep(0.2)
            assert published.empty()
    finally:
        await runner.cleanup()
    arn = "arn:aws:sns:eu-west-1:123456789012:"
    assert all(f["Action"] == "Publish" and f["Version"] == "2010-03-31" for f in got)
    events = sorted(((f["TopicArn"], json.loads(f["Message"])) for f in got), key=str)
    assert events == sorted(
        [
            (arn + "user_presence_updated", {"user_id": "alice@localhost", "present": True}),
            (
                arn + "user_message_sent",
                {
                    "from_user_id": "alice@localhost",
                    "to_user_id": "bob@localhost",
                    "message": "via SNS",
                },
            ),
            (arn + "user_presence_updated", {"user_id": "alice@localhost", "present": False}),
        ],
        key=str,
    )
    assert len(calls) == 4  # one failed, tried again
