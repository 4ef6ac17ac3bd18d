"""A small SCRAM client (RFC 5802), for tests and the e2e test client."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from suricate.sasl.passwords import SaslPrepError, hashlib_name, salted_password
from suricate.sasl.scram import SCRAM_HASHES, escape_saslname, scram_mechanism_name

__all__ = ["ScramClient", "ScramClientError"]


class ScramClientError(ValueError):
    """The server's message is malformed or does not continue our exchange."""


def _mongoose_hash(hash_name: str) -> str:
    for sasl, mongoose in SCRAM_HASHES.items():
        if hash_name.upper() == sasl or hash_name.lower() in (mongoose, hashlib_name(mongoose)):
            return mongoose
    raise ValueError(f"unknown SCRAM hash {hash_name!r}")


class ScramClient:
    """Client side of one SCRAM exchange.

    hash_name: 'SHA-256', 'sha256' or 'sha' style. cb_type set -> the -PLUS mechanism with
    that channel binding and cb_data. cb_flag may force the gs2 flag ('y' to claim channel
    binding support without using it, as when no -PLUS was advertised).
    """

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        cb_type: str | None = None,
        cb_data: bytes = b"",
        *,
        authzid: str | None = None,
        nonce: str | None = None,
        cb_flag: str | None = None,
    ) -> None:
        self.hash_name = _mongoose_hash(hash_name)
        self._hashlib = hashlib_name(self.hash_name)
        self.username = username
        self.password = password
        self.cb_type = cb_type
        self.cb_data = cb_data
        self.authzid = authzid
        self.nonce = nonce or secrets.token_urlsafe(18)
        flag = f"p={cb_type}" if cb_type else (cb_flag or "n")
        authz = f"a={escape_saslname(authzid)}" if authzid else ""
        self.gs2_header = f"{flag},{authz},"
        self.mechanism = scram_mechanism_name(self.hash_name, plus=cb_type is not None)
        self._bare = f"n={escape_saslname(username)},r={self.nonce}"
        self._server_signature: bytes | None = None
        self.ssdp_hash: str | None = None  # XEP-0474 "h" seen in server-first, if any
        self.salt: bytes | None = None
        self.iterations: int | None = None

    def first(self) -> bytes:
        return (self.gs2_header + self._bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        try:
            sf = server_first.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramClientError("server-first not UTF-8") from None
        attrs = sf.split(",")
        if attrs[0].startswith("m="):
            raise ScramClientError("mandatory extension not supported")
        if len(attrs) < 3 or [a[:2] for a in attrs[:3]] != ["r=", "s=", "i="]:
            raise ScramClientError("malformed server-first-message")
        nonce = attrs[0][2:]
        if not nonce.startswith(self.nonce) or len(nonce) <= len(self.nonce):
            raise ScramClientError("server nonce does not extend ours")
        try:
            salt = base64.b64decode(attrs[1][2:], validate=True)
            iterations = int(attrs[2][2:])
        except (binascii.Error, ValueError):
            raise ScramClientError("bad salt or iteration count") from None
        if iterations < 1:
            raise ScramClientError("bad iteration count")
        for a in attrs[3:]:
            if a.startswith("h="):
                self.ssdp_hash = a[2:]
        self.salt, self.iterations = salt, iterations
        try:
            salted = salted_password(self.hash_name, self.password, salt, iterations)
        except SaslPrepError:
            salted = hashlib.pbkdf2_hmac(self._hashlib, self.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self._hashlib)
        stored_key = hashlib.new(self._hashlib, client_key).digest()
        cbind = base64.b64encode(self.gs2_header.encode("utf-8") + self.cb_data).decode()
        without_proof = f"c={cbind},r={nonce}"
        auth_message = f"{self._bare},{sf},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self._hashlib)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self._hashlib)
        self._server_signature = hmac.digest(server_key, auth_message, self._hashlib)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        """True when server-final carries the signature we expect (mutual authentication)."""
        if self._server_signature is None:
            return False
        attr = server_final.split(b",", 1)[0]
        if not attr.startswith(b"v="):
            return False
        try:
            v = base64.b64decode(attr[2:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(v, self._server_signature)
