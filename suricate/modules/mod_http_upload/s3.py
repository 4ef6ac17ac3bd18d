"""Presigned S3 URLs (AWS Signature Version 4, query-string authentication).

The XMPP server never touches the file: it hands the client a PUT URL that the S3-compatible
store accepts until it expires, and a GET URL for the recipients. Signing is done here (a few
HMACs, no SDK) following AWS's "Authenticating Requests: Using Query Parameters": the request
is reduced to a canonical form, hashed, and signed with a key derived from the secret, the
date, the region and the service.

The PUT signature covers `host`, `content-length` and `content-type`, so the store refuses an
upload whose size or type differs from the slot the client asked for: the size limit holds
without the XMPP server seeing a byte. `x-amz-acl=public-read` (MongooseIM's `s3.add_acl`)
goes in the query string, signed too, because XEP-0363 §4 lets the service give the client
only the Authorization, Cookie and Expires headers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"


def _uri_encode(value: str, safe: str = "") -> str:
    # AWS SigV4: encode every byte except the unreserved characters A-Z a-z 0-9 - _ . ~
    return quote(value, safe="-_.~" + safe)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, SERVICE)
    return _hmac(key, "aws4_request")


def presign(method: str, bucket_url: str, key: str, *, region: str, access_key_id: str,
            secret_access_key: str, expires: int, now: datetime | None = None,
            headers: Mapping[str, str] | None = None,
            query: Mapping[str, str] | None = None) -> str:
    """The URL at which ``method`` on object ``key`` of the bucket is allowed for ``expires``
    seconds, the given ``headers`` (besides host) being part of the signature."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urlsplit(bucket_url.rstrip("/"))
    host = parts.netloc
    path = parts.path + "/" + key
    canonical_uri = _uri_encode(path, safe="/")
    signed = {"host": host, **{k.lower(): v.strip() for k, v in (headers or {}).items()}}
    signed_names = ";".join(sorted(signed))
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{access_key_id}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": signed_names,
        **(query or {}),
    }
    canonical_query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}"
                               for k, v in sorted(params.items()))
    canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in sorted(signed))
    canonical_request = "\n".join([method, canonical_uri, canonical_query, canonical_headers,
                                   signed_names, "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical_request.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_access_key, date, region), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return (f"{parts.scheme}://{host}{canonical_uri}?{canonical_query}"
            f"&X-Amz-Signature={signature}")


def object_url(bucket_url: str, key: str) -> str:
    """The plain (unsigned) URL of an object: what recipients GET (MongooseIM does the same;
    with `add_acl` the object is public-read)."""
    parts = urlsplit(bucket_url.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{_uri_encode(parts.path + '/' + key, safe='/')}"
