"""X-OAUTH, MongooseIM's token-based reconnection mechanism (mod_auth_token).

One message, no challenge: the client's initial response is the token itself (the binary
token, i.e. the base64 text the token IQ handed out is exactly the <auth/> element's
content). The token names the account, so there is no authcid.

The mechanism is pure: it parses the token (``suricate.modules.mod_auth_token.token``) far
enough to name the user (``NeedCredentials``); the module that offers it checks the MAC, the
expiry and the revocation state and hands back the result (``verified``).
"""

from __future__ import annotations

from suricate.jid import JID, InvalidJID, nameprep
from suricate.sasl.base import (
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    SaslContext,
    SaslStateError,
)

__all__ = ["XOAuth"]

_MAX_TOKEN = 4096


class XOAuth(Mechanism):
    """One X-OAUTH attempt; ``token`` is the client's raw token once ``step`` asked for
    credentials."""

    name = "X-OAUTH"

    def __init__(self, context: SaslContext) -> None:
        super().__init__(context)
        self.token = b""
        self.username = ""
        self._state = "start"

    def step(self, data: bytes) -> Result:
        if self._state != "start":
            raise SaslStateError(f"X-OAUTH step in state {self._state}")
        self._state = "failed"
        if not data or len(data) > _MAX_TOKEN:
            return Failure("malformed-request", "expected a token")
        fields = data.split(b"\x00")
        if len(fields) < 4:
            return Failure("not-authorized")
        try:
            jid = JID.parse(fields[1].decode("utf-8"))
        except (UnicodeDecodeError, InvalidJID):
            return Failure("not-authorized")
        if jid.local is None or jid.domain != nameprep(self.context.server):
            return Failure("not-authorized", "the token is for another domain")
        self.token = data
        self.username = jid.local
        self._state = "need_verification"
        return NeedCredentials(self.username)
