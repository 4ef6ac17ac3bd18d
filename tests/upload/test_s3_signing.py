"""Our SigV4 presigned URLs equal botocore's (the AWS SDK) for the same request and instant."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from suricate.modules.mod_http_upload import s3

NOW = datetime(2026, 12, 3, 12, 30, 45, tzinfo=UTC)


def _botocore(method: str, url: str, headers: dict[str, str], expires: int) -> str:
    request = AWSRequest(method=method, url=url, headers=headers)
    auth = S3SigV4QueryAuth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), "s3",
                            "eu-west-1", expires=expires)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        auth.add_auth(request)
    return request.url


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_put_url_matches_botocore() -> None:
    bucket = "https://files.example.com:9000/my-bucket"
    key = "0a1b2c/holiday photo ü.jpg"
    headers = {"content-length": "23456", "content-type": "image/jpeg"}
    ours = s3.presign("PUT", bucket, key, region="eu-west-1", access_key_id="AKIDEXAMPLE",
                      secret_access_key="wJalrXUtnFEMI/K7MDENG", expires=60, now=NOW,
                      headers=headers)
    theirs = _botocore("PUT", s3.object_url(bucket, key), headers, 60)
    assert urlsplit(ours).path == urlsplit(theirs).path == (
        "/my-bucket/0a1b2c/holiday%20photo%20%C3%BC.jpg")
    ours_q, theirs_q = _query(ours), _query(theirs)
    assert ours_q["X-Amz-SignedHeaders"] == theirs_q["X-Amz-SignedHeaders"]
    assert ours_q["X-Amz-Credential"] == ["AKIDEXAMPLE/20261203/eu-west-1/s3/aws4_request"]
    assert ours_q == theirs_q  # same signature: the store will accept ours


def test_signature_changes_with_what_it_covers() -> None:
    args = {"region": "eu-west-1", "access_key_id": "A", "secret_access_key": "S",
            "expires": 60, "now": NOW}
    base = s3.presign("PUT", "http://h/b", "k/f", headers={"content-length": "1"}, **args)
    for other in (
        s3.presign("PUT", "http://h/b", "k/f", headers={"content-length": "2"}, **args),
        s3.presign("PUT", "http://h/b", "k/g", headers={"content-length": "1"}, **args),
        s3.presign("GET", "http://h/b", "k/f", headers={"content-length": "1"}, **args),
        s3.presign("PUT", "http://h/b", "k/f", headers={"content-length": "1"},
                   query={"x-amz-acl": "public-read"}, **args),
    ):
        assert _query(other)["X-Amz-Signature"] != _query(base)["X-Amz-Signature"]
