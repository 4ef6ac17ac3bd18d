"""A SASL2 / FAST test client over real TLS (pyOpenSSL, blocking; tests run it in a thread),
for what no client library does: every HT-* mechanism with its channel binding, tampered
bindings, replay counters, exact round trips, TLS 1.3 early data."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from suricate.sasl.ht import ht_initiator_message, ht_responder_message, parse_ht_name
from tests.e2e.tls_client import TestClient

SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
BIND2 = "urn:xmpp:bind:0"
SM = "urn:xmpp:sm:3"


@dataclass
class Outcome:
    ok: bool
    xml: str  # the server's <success/> or <failure/>
    round_trips: int  # <authenticate/> ... <success/> exchanges the client waited for

    @property
    def jid(self) -> str | None:
        m = re.search(r"<authorization-identifier>(.*?)</authorization-identifier>", self.xml)
        return m.group(1) if m else None

    @property
    def token(self) -> tuple[str, str] | None:
        m = re.search(r"<token [^>]*>", self.xml)
        if not m:
            return None
        attrs = dict(re.findall(r"(\w+)='([^']*)'", m.group(0)))
        return attrs["token"], attrs["expiry"]

    def condition(self) -> str | None:
        m = re.search(r"<failure[^>]*><([a-z-]+)", self.xml)
        return m.group(1) if m else None


def ht_response(user: str, token: str, mechanism: str, cb_data: bytes) -> bytes:
    parsed = parse_ht_name(mechanism)
    assert parsed is not None
    return user.encode() + b"\0" + ht_initiator_message(parsed[0], token.encode(), cb_data)


def authenticate_xml(mechanism: str, initial: bytes | None, agent: str | None = "agent-1",
                     inline: str = "") -> str:
    init = ("<initial-response>" + (base64.b64encode(initial).decode() or "=")
            + "</initial-response>") if initial is not None else ""
    ua = (f"<user-agent id='{agent}'><software>suricate-tests</software>"
          "<device>ci</device></user-agent>") if agent else ""
    return f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>{init}{ua}{inline}</authenticate>"


class Sasl2Client(TestClient):
    __test__ = False

    def _recv(self, timeout: float) -> bytes | None:
        # Our serializer quotes attributes with ", the expectations here are written
        # with ': one spelling for the regular expressions (no quote appears in text we check).
        data = super()._recv(timeout)
        return data.replace(b'"', b"'") if data else data

    def features(self) -> str:
        return self.open_stream()

    def sasl2(self, mechanism: str, initial: bytes | None, agent: str | None = "agent-1",
              inline: str = "") -> Outcome:
        """One SASL2 exchange that needs no challenge (PLAIN, HT-*)."""
        self.send(authenticate_xml(mechanism, initial, agent, inline))
        m = self.expect(r"<(success|failure|challenge)[^>]*xmlns='urn:xmpp:sasl:2'[^>]*"
                        r"(/>|>.*?</\1>)")
        return Outcome(m.group(1) == "success", m.group(0), 1)

    def plain(self, user: str, password: str, inline: str = "",
              agent: str | None = "agent-1") -> Outcome:
        return self.sasl2("PLAIN", f"\0{user}\0{password}".encode(), agent, inline)

    def fast(self, user: str, token: str, mechanism: str, inline: str = "",
             count: int | None = None, invalidate: bool = False, tamper: bool = False,
             agent: str | None = "agent-1") -> Outcome:
        cb_type = parse_ht_name(mechanism)
        assert cb_type is not None
        cb = self.binding(cb_type[1]) if cb_type[1] else b""
        if tamper:
            cb = bytes([cb[0] ^ 1]) + cb[1:] if cb else b"\1"
        attrs = f" count='{count}'" if count is not None else ""
        if invalidate:
            attrs += " invalidate='true'"
        fast = f"<fast xmlns='{FAST}'{attrs}/>"
        outcome = self.sasl2(mechanism, ht_response(user, token, mechanism, cb), agent,
                             inline + fast)
        if outcome.ok:
            # mutual authentication (draft-schmaus-kitten-sasl-ht §3)
            m = re.search(r"<additional-data>(.*?)</additional-data>", outcome.xml)
            assert m, "HT success must carry the responder message"
            parsed = parse_ht_name(mechanism)
            assert parsed is not None
            expected = ht_responder_message(parsed[0], token.encode(), cb)
            assert base64.b64decode(m.group(1)) == expected, "bad responder message"
        return outcome


def request_token(mechanism: str) -> str:
    return f"<request-token xmlns='{FAST}' mechanism='{mechanism}'/>"


def bind2(tag: str = "phone", extra: str = "") -> str:
    return f"<bind xmlns='{BIND2}'><tag>{tag}</tag>{extra}</bind>"
