"""SASL EXTERNAL for clients (RFC 4422 Appendix A; RFC 6120 §6.3.8): the identity comes from
the TLS client certificate the handshake verified, not from the SASL exchange.

The stream layer works out which usernames the certificate proves (``SaslContext.
cert_usernames``: xmppAddr identities of this domain, or the subject CN, per MongooseIM 6.4's
``auth.sasl_external``) and whether any authzid is acceptable (``auth_id`` mode).
"""

from __future__ import annotations

from suricate.jid import JID, InvalidJID, nameprep, nodeprep
from suricate.sasl.base import Failure, Mechanism, Result, SaslContext, SaslStateError, Success

__all__ = ["External"]


class External(Mechanism):
    name = "EXTERNAL"

    def __init__(self, context: SaslContext) -> None:
        super().__init__(context)
        self._done = False

    def step(self, data: bytes) -> Result:
        if self._done:
            raise SaslStateError("EXTERNAL takes one message")
        self._done = True
        try:
            authzid = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("malformed-request", "not UTF-8")
        usernames = list(self.context.cert_usernames)
        if not authzid:
            # RFC 6120 §6.3.8: no authzid: the identity the certificate gives, if only one.
            if len(usernames) == 1:
                return Success(usernames[0])
            if not usernames:
                return Failure("not-authorized", "the certificate names no user here")
            return Failure("invalid-authzid", "the certificate names several users")
        try:
            j = JID.parse(authzid) if "@" in authzid else JID._prepared(
                nodeprep(authzid), nameprep(self.context.server), None)
        except InvalidJID:
            return Failure("invalid-authzid")
        if j.local is None or j.resource is not None \
                or j.domain != nameprep(self.context.server):
            return Failure("invalid-authzid")
        if j.local in usernames or (self.context.cert_any_authzid and self.context.cert_verified):
            return Success(j.local, authzid)
        return Failure("invalid-authzid", "the certificate does not name this user")
