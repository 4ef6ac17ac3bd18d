"""XEP-0363 with the s3 backend against a real S3-compatible server (moto in server mode, on
loopback): slixmpp's xep_0363 finds the service, uploads, and another user downloads the same
bytes; the refusals come back as XEP-0363 §4 errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import boto3
import pytest
import slixmpp
from moto.server import ThreadedMotoServer

from tests.e2e.harness import connect, disconnect, free_port, running_server
from tests.mobile.conftest import add_user, modules_toml

UPLOAD = "urn:xmpp:http:upload:0"


@pytest.fixture
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                          aws_access_key_id="AKID", aws_secret_access_key="SECRET")
    # moto keeps one in-process state for every server it runs: recreate the bucket.
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket="uploads",
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    # Recipients GET without credentials. The slot's signed `x-amz-acl=public-read` query
    # parameter (s3.add_acl) makes each object public on AWS; moto ignores it in a query
    # string, so the bucket is made readable by a policy instead.
    client.put_bucket_policy(Bucket="uploads", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": "arn:aws:s3:::uploads/*"}]}))
    try:
        yield endpoint
    finally:
        server.stop()


def upload_toml(endpoint: str, max_size: int = 100_000) -> str:
    return modules_toml(f"""
[modules.mod_http_upload]
max_file_size = {max_size}
s3.bucket_url = "{endpoint}/uploads"
s3.region = "eu-west-1"
s3.access_key_id = "AKID"
s3.secret_access_key = "SECRET"
s3.add_acl = true
""")


async def test_upload_then_another_user_downloads_the_same_bytes(
        tmp_path: Path, s3_server: str) -> None:
    async with running_server(tmp_path, modules=upload_toml(s3_server)) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        bob = await connect(server, "bob@localhost/b", "secret")
        try:
            data = bytes(range(256)) * 40
            url = await alice.plugin["xep_0363"].upload_file(
                "photo 1.png", size=len(data), content_type="image/png",
                input_file=io.BytesIO(data), timeout=10)
            assert str(alice.plugin["xep_0363"].upload_service) == "upload.localhost"
            assert alice.plugin["xep_0363"].max_file_size == 100_000
            assert url.startswith(f"{s3_server}/uploads/") and url.endswith("/photo%201.png")
            # The object really is in the store, with the type the slot was signed for.
            head = boto3.client("s3", endpoint_url=s3_server, region_name="eu-west-1",
                                aws_access_key_id="AKID", aws_secret_access_key="SECRET"
                                ).head_object(Bucket="uploads", Key=url.split("/uploads/")[1]
                                              .replace("%20", " "))
            assert head["ContentLength"] == len(data) and head["ContentType"] == "image/png"
            alice.send_message(mto="bob@localhost/b", mbody=url, mtype="chat")
            shared = (await bob.next_message())["body"]
            async with aiohttp.ClientSession() as http, http.get(shared) as response:
                assert response.status == 200
                assert await response.read() == data
        finally:
            await disconnect(alice, bob)


async def _slot_error(client: Any, **request: str) -> Any:
    iq = client.make_iq_get(ito="upload.localhost")
    for name, value in request.items():
        iq["http_upload_request"][name.replace("_", "-")] = value
    with pytest.raises(slixmpp.exceptions.IqError) as err:
        await iq.send(timeout=5)
    return err.value.iq


async def test_refusals(tmp_path: Path, s3_server: str) -> None:
    async with running_server(tmp_path, modules=upload_toml(s3_server, max_size=1000)) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            error = await _slot_error(alice, filename="big.bin", size="1001",
                                      content_type="application/octet-stream")
            assert error["error"]["condition"] == "not-acceptable"
            assert error["error"]["type"] == "modify"
            limit = error.xml.find(f".//{{{UPLOAD}}}file-too-large/{{{UPLOAD}}}max-file-size")
            assert limit is not None and limit.text == "1000"
            for bad in ({"filename": "x", "size": "-5"}, {"filename": "", "size": "5"},
                        {"filename": "x", "size": "many"}):
                error = await _slot_error(alice, **bad)
                assert error["error"]["condition"] == "bad-request"
            # A slot of exactly the limit is fine; the service is not an account.
            slot = await alice.plugin["xep_0363"].request_slot(
                slixmpp.JID("upload.localhost"), "ok.bin", 1000, timeout=5)
            assert slot["http_upload_slot"]["put"]["url"].startswith(s3_server)
            with contextlib.suppress(asyncio.TimeoutError):
                alice.send_message(mto="upload.localhost", mbody="hello?")
                reply = await alice.next_message(2)
                assert reply["type"] == "error"
                assert reply["error"]["condition"] == "service-unavailable"
        finally:
            await disconnect(alice)


async def test_a_slot_asked_without_a_content_type_takes_the_puts(
        tmp_path: Path, s3_server: str) -> None:
    """XEP-0363 §6: only a type asked for in the slot request must match the PUT. Converse.js
    asks without one for a file the browser has no type for, then PUTs with whatever it has:
    the presigned URL does not sign a type it was not given."""
    async with running_server(tmp_path, modules=upload_toml(s3_server)) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            iq = alice.make_iq_get(ito="upload.localhost")
            iq["http_upload_request"]["filename"] = "README"
            iq["http_upload_request"]["size"] = "5"
            slot = (await iq.send(timeout=5))["http_upload_slot"]
            # A type in the signed headers would make S3 refuse any other one (moto, here,
            # does not check signatures: the URL says what AWS would hold the PUT to).
            signed = parse_qs(urlsplit(slot["put"]["url"]).query)["X-Amz-SignedHeaders"]
            assert signed == ["content-length;host"]
            async with aiohttp.ClientSession() as http:
                async with http.put(slot["put"]["url"], data=b"hello",
                                    headers={"Content-Type": "text/plain"}) as response:
                    assert response.status == 200, await response.text()
                async with http.get(slot["get"]["url"]) as response:
                    assert await response.read() == b"hello"
        finally:
            await disconnect(alice)
