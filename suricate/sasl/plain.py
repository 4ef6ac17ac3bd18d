"""SASL PLAIN (RFC 4616)."""

from __future__ import annotations

from suricate.jid import InvalidJID
from suricate.sasl.base import (
    Challenge,
    CredentialRecord,
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    SaslContext,
    SaslStateError,
    Success,
    authzid_ok,
    prepare_authcid,
)
from suricate.sasl.passwords import verify_password, waste_a_check

__all__ = ["Plain"]

# RFC 4616 §2 asks servers to accept at least 255 octets per field; we allow a JID part's worth.
_MAX_FIELD = 1023


class Plain(Mechanism):
    name = "PLAIN"

    def __init__(self, context: SaslContext) -> None:
        super().__init__(context)
        self._state = "start"
        self._username = ""
        self._authzid: str | None = None
        self._password = ""

    def step(self, data: bytes) -> Result:
        if self._state == "start" and not data:
            # RFC 6120 §6.4.2: no initial response -> empty challenge, then the message.
            self._state = "challenged"
            return Challenge(b"")
        if self._state not in ("start", "challenged"):
            raise SaslStateError(f"PLAIN step in state {self._state}")
        self._state = "failed"
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        fields = data.split(b"\x00")
        if len(fields) != 3:
            return Failure("malformed-request", "expected authzid NUL authcid NUL passwd")
        try:
            authzid, authcid, password = (f.decode("utf-8") for f in fields)
        except UnicodeDecodeError:
            return Failure("malformed-request", "not UTF-8")
        if not authcid or not password or any(len(f) > _MAX_FIELD for f in fields):
            return Failure("malformed-request", "empty or oversized field")
        try:
            username = prepare_authcid(authcid, self.context.server)
        except InvalidJID:
            return Failure("not-authorized")
        if not authzid_ok(authzid, username, self.context.server):
            return Failure("invalid-authzid")
        self._username, self._authzid, self._password = username, authzid or None, password
        self._state = "need_credentials"
        return NeedCredentials(username)

    @property
    def pending_password(self) -> str:
        """The password sent, while credentials are awaited: auth methods that only check a
        password (http, jwt, external, dummy) are asked about it instead of handing out a
        record."""
        return self._password if self._state == "need_credentials" else ""

    def credentials(self, record: CredentialRecord | None) -> Result:
        if self._state != "need_credentials":
            raise SaslStateError(f"PLAIN credentials in state {self._state}")
        password, self._password = self._password, ""
        self._state = "failed"
        if record is None:
            # No such user: fail after the time a wrong password takes, not at once.
            ctx = self.context
            if ctx.password_format == "scram":
                waste_a_check(ctx.password_hashes, ctx.scram_iterations)
            return Failure("not-authorized")
        if not verify_password(record.password, record.pass_details, password):
            return Failure("not-authorized")
        self._state = "done"
        return Success(self._username, self._authzid, None)
