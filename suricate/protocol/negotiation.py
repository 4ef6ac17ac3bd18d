"""Client stream negotiation as a sans-IO object: SASL (RFC 6120 §6), SASL2 (XEP-0388),
resource binding (RFC 6120 §7) and Bind 2 (XEP-0386).

``SaslNegotiator`` takes the client's elements and returns *actions*: elements to send, the
state to move to, "need the credentials of user U", "authenticated as U", "an authentication
failed" (for logs and metrics), "close with stream error E". It never awaits, never reads a
socket or the database: the c2s (``suricate.core.c2s.negotiation``) executes the actions, looks
credentials up, checks access rules and runs the hooks, then feeds the outcome back. The SASL
mechanisms themselves (``suricate.sasl``) are pure objects in the same style.

The binding helpers below are pure functions: they turn a request into the JID to bind (or the
stanza error to answer), and a bound JID into the answer.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suricate import sasl
from suricate.jid import JID, InvalidJID
from suricate.protocol.c2s import C2SState, sasl2_failure
from suricate.protocol.errors import StanzaError, StreamError
from suricate.protocol.stream import sasl_failure
from suricate.xml import ns
from suricate.xml.element import Element

MAX_AUTH_FAILURES = 3  # RFC 6120 §6.4.5: "at least 2 and no more than 5" retries
# RFC 5802 §7 server-error-values refusing the channel-binding part of a SCRAM
# client-first-message (a type the server does not take; "y" while the server offers -PLUS,
# §6): no credential has been looked at yet.
CB_REFUSALS = frozenset({"unsupported-channel-binding-type",
                         "server-does-support-channel-binding"})
# How many of those a stream gets before they count as failed attempts: one per SCRAM
# mechanism the server offers (5 hashes, each plain and -PLUS), what a client trying them
# one after the other needs before PLAIN.
MAX_CB_REFUSALS = 10

S = C2SState


# -- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``element`` to the client."""

    element: Element


@dataclass(frozen=True, slots=True)
class Goto:
    """Move the stream to ``state``."""

    state: C2SState


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Look up the credentials of ``username`` and call ``SaslNegotiator.credentials`` (or,
    for a mechanism with its own source, ``SaslNegotiator.result``)."""

    username: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The mechanism succeeded for ``result.username``: check access, then call
    ``legacy_success`` or finish SASL2 (``finish``), or ``fail`` when access is denied."""

    result: sasl.Success


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """An authentication attempt failed (already answered by a ``Reply``): log and count."""

    condition: str
    text: str | None

    @property
    def guessed(self) -> bool:
        """A password (or token) was checked and found wrong, or the name is unknown: counts
        towards the per-address and per-account waits (suricate.auth.failures). A refused
        channel binding is not-authorized too, but no credential was read (RFC 5802 §7)."""
        return self.condition == "not-authorized" and self.text not in CB_REFUSALS


@dataclass(frozen=True, slots=True)
class CloseStream:
    """End the stream with ``error``."""

    error: StreamError


Action = Reply | Goto | NeedCredentials | Authenticated | AuthFailed | CloseStream

# What the negotiator asks the c2s for a mechanism name: a mechanism object, or None when the
# name is not on offer (RFC 6120 §6.4.6 invalid-mechanism).
MechanismResolver = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class UserAgent:
    """XEP-0388 §2.4 <user-agent/>: a stable id per client installation (FAST tokens are kept
    per user and agent id), and what the client says it is."""

    id: str | None
    software: str | None = None
    device: str | None = None


# -- SASL and SASL2 ----------------------------------------------------------------------------
class SaslNegotiator:
    """One stream's authentication exchange: legacy SASL (RFC 6120 §6.4) or SASL2 (XEP-0388),
    at most ``max_failures`` failed attempts (§6.4.5)."""

    __slots__ = ("mechanism", "mechanism_name", "sasl2", "failures", "max_failures",
                 "cb_refusals", "sasl2_offered", "sasl2_inline", "username",
                 "_exchanging")

    def __init__(self, max_failures: int = MAX_AUTH_FAILURES) -> None:
        self.mechanism: Any = None
        self.mechanism_name = ""
        # The SASL2 <authenticate/> being processed (its inline requests are answered in
        # <success/>); None for legacy SASL.
        self.sasl2: Element | None = None
        self.failures = 0
        self.max_failures = max_failures
        self.cb_refusals = 0
        self.sasl2_offered = False
        self.sasl2_inline: frozenset[str] = frozenset()
        # The (prepared) username the attempt under way names, once the mechanism read it:
        # for the logs and the failure counts, "" before that.
        self.username = ""
        self._exchanging = False  # in wait_for_sasl_response

    @property
    def sasl_ns(self) -> str:
        return ns.SASL2 if self.sasl2 is not None else ns.SASL

    def offered(self, features: list[Element]) -> None:
        """The features sent before authentication: XEP-0388 <authenticate/> is only valid
        when <authentication/> was offered; remember which inline features (Bind 2, FAST, SM)
        the client may use with it."""
        for el in features:
            if el.name == "authentication" and el.xmlns == ns.SASL2:
                self.sasl2_offered = True
                inline = el.find("inline", ns.SASL2)
                self.sasl2_inline = frozenset(
                    child.xmlns for child in (inline.elements() if inline is not None else ()))

    def auth(self, el: Element, resolve: MechanismResolver, tls_missing: bool) -> list[Action]:
        """RFC 6120 §6.4.2: <auth mechanism=.../> with an optional initial response."""
        self.username = ""
        if tls_missing:
            # §5.3.1: STARTTLS first; not an authentication attempt.
            return [Reply(sasl_failure("encryption-required"))]
        name = el.attrs.get("mechanism", "")
        self.mechanism_name = name
        mechanism = resolve(name)
        if mechanism is None:
            # §6.4.6: a mechanism we did not offer; counts as a failed attempt
            return self.fail("invalid-mechanism")
        try:
            data = b64decode(el.text)
        except ValueError:
            return self.fail("incorrect-encoding")
        return self._start(mechanism, data)

    def authenticate(self, el: Element, resolve: MechanismResolver,
                     tls_missing: bool) -> list[Action]:
        """XEP-0388 §2.5: <authenticate mechanism=...> with inline requests."""
        self.username = ""
        self.sasl2 = el
        if tls_missing:
            return self.fail("encryption-required")
        name = el.attrs.get("mechanism", "")
        self.mechanism_name = name
        mechanism = resolve(name)
        if mechanism is None:
            return self.fail("invalid-mechanism")
        initial = el.find("initial-response", ns.SASL2)
        try:
            # XEP-0388 §2.5: no <initial-response/> is not the same as an empty one; a
            # mechanism that needs one then answers with an (empty) challenge.
            data = b64decode(initial.text) if initial is not None else b""
        except ValueError:
            return self.fail("incorrect-encoding")
        return self._start(mechanism, data)

    def _start(self, mechanism: Any, data: bytes) -> list[Action]:
        self.mechanism = mechanism
        self._exchanging = True
        return [Goto(S.WAIT_FOR_SASL_RESPONSE), *self.result(mechanism.step(data))]

    def accepts(self, el: Element, name: str) -> bool:
        """Whether ``el`` is the <response/> or <abort/> of the exchange in progress."""
        return el.xmlns == self.sasl_ns and el.name == name

    def response(self, el: Element) -> list[Action]:
        """RFC 6120 §6.4.3 / XEP-0388 §2.6.1: the client's answer to a challenge."""
        try:
            data = b64decode(el.text)
        except ValueError:
            return self.fail("incorrect-encoding")
        return self.result(self.mechanism.step(data))

    def abort(self) -> list[Action]:
        """RFC 6120 §6.4.4: the client gives up; not a failed attempt."""
        self.mechanism = None
        failure = self._failure_element("aborted")
        self.sasl2 = None
        self._exchanging = False
        return [Reply(failure), Goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)]

    def credentials(self, record: Any) -> list[Action]:
        """The answer to ``NeedCredentials`` from the account store (None: no such user)."""
        return self.result(self.mechanism.credentials(record))

    def result(self, result: Any) -> list[Action]:
        """What the mechanism said (or a credential source, for FAST tokens)."""
        if isinstance(result, sasl.NeedCredentials):
            self.username = result.username
            return [NeedCredentials(result.username)]
        if isinstance(result, sasl.Challenge):
            return [Reply(Element("challenge", self.sasl_ns, {}, [b64encode(result.data)]))]
        if isinstance(result, sasl.Success):
            return [Authenticated(result)]
        assert isinstance(result, sasl.Failure)
        return self.fail(result.condition, result.text)

    def fail(self, condition: str, text: str | None = None) -> list[Action]:
        """A failed attempt (RFC 6120 §6.5, XEP-0388 §2.6.4); too many end the stream."""
        self.mechanism = None
        # A SCRAM attempt refused for its channel binding (RFC 5802 §6, §7) is refused at the
        # client-first-message, before any credential is read: it guesses nothing.
        # slixmpp 1.8 (poezio 0.14, Debian 12) always binds with tls-unique, which TLS 1.3
        # does not define (RFC 9266 §3), tries every -PLUS mechanism, then every plain SCRAM
        # with "y" (refused: the server does offer -PLUS, §6's downgrade check), then PLAIN.
        # Counted as failures (RFC 6120 §6.4.5 limits retries against guessing) the stream
        # ended after three and the account's login waits grew; bounded on their own.
        cb_refusal = text in CB_REFUSALS and self.cb_refusals < MAX_CB_REFUSALS
        if cb_refusal:
            self.cb_refusals += 1
        else:
            self.failures += 1
        actions: list[Action] = [AuthFailed(condition, text),
                                 Reply(self._failure_element(condition, text))]
        self.sasl2 = None
        exchanging, self._exchanging = self._exchanging, False
        if self.failures >= self.max_failures:
            actions.append(CloseStream(StreamError("policy-violation",
                                                   "too many authentication failures")))
        elif exchanging:
            actions.append(Goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH))
        return actions

    def legacy_success(self, result: sasl.Success) -> list[Action]:
        """RFC 6120 §6.4.6: <success/>, then the client restarts the stream."""
        self.mechanism = None
        self._exchanging = False
        extra = result.additional_data
        return [Reply(Element("success", ns.SASL, {}, [b64encode(extra)] if extra else [])),
                Goto(S.WAIT_FOR_STREAM)]

    def finish(self) -> Element:
        """SASL2 succeeded: the <authenticate/> whose inline requests <success/> answers."""
        request = self.sasl2
        assert request is not None
        self.mechanism = None
        self.sasl2 = None
        self._exchanging = False
        return request

    def _failure_element(self, condition: str, text: str | None = None) -> Element:
        if self.sasl2 is not None:
            return sasl2_failure(condition, text)
        return sasl_failure(condition, text)


def user_agent(authenticate: Element) -> UserAgent | None:
    """XEP-0388 §2.4: the <user-agent/> of an <authenticate/>, if any."""
    agent = authenticate.find("user-agent", ns.SASL2)
    if agent is None:
        return None
    return UserAgent(agent.attrs.get("id"), agent.find_text("software"),
                     agent.find_text("device"))


def sasl2_success(result: sasl.Success, identity: JID, bound: Element | None,
                  extra: list[Element]) -> Element:
    """XEP-0388 §2.6.3: who the client is, with what the inline requests produced."""
    success = Element("success", ns.SASL2)
    if result.additional_data:
        success.add("additional-data", text=b64encode(result.additional_data))
    success.add("authorization-identifier", text=str(identity))
    if bound is not None:
        success.append(bound)
    success.children.extend(extra)
    return success


# -- resource binding --------------------------------------------------------------------------
def bind_request(iq: Element, user: JID) -> JID | StanzaError:
    """RFC 6120 §7: the full JID a <bind/> IQ asks for, or the error to answer."""
    if iq.attrs.get("type") != "set":
        return StanzaError("bad-request")
    bind = iq.find("bind", ns.BIND)
    requested = ((bind.find_text("resource", ns.BIND) if bind is not None else None)
                 or "").strip()
    if requested:
        try:
            return user.with_resource(requested)
        except (InvalidJID, ValueError):
            # §7.7.2.1: a resource that cannot be prepared
            return StanzaError("bad-request", "invalid resource")
    # §7.6.2.1: the server generates a resource
    return user.with_resource(f"{int(time.time())}-{secrets.token_hex(8)}")


def bind_result(iq: Element, full: JID) -> Element:
    """RFC 6120 §7.6.1: the bound JID."""
    reply = Element("iq", ns.CLIENT, {"type": "result"})
    if "id" in iq.attrs:
        reply.attrs["id"] = iq.attrs["id"]
    reply.add("bind", ns.BIND).add("jid", text=str(full))
    return reply


def bind2_resource(bind: Element, user: JID) -> JID:
    """XEP-0386 §3: the client's <tag/> plus a unique suffix (§3.2: the server picks the
    resource, the tag only makes it readable)."""
    tag = (bind.find_text("tag", ns.BIND2) or "").strip()
    suffix = secrets.token_hex(6)
    if tag:
        try:
            return user.with_resource(f"{tag[:64]}.{suffix}")
        except (InvalidJID, ValueError):
            pass  # a tag that cannot be a resource is just not used
    return user.with_resource(f"{int(time.time())}-{suffix}")


# -- base64 (RFC 6120 §6.4.2) ------------------------------------------------------------------
def b64decode(text: str) -> bytes:
    text = text.strip()
    if text in ("", "="):  # RFC 6120 §6.4.2: "=" is an empty initial response
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("bad base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


# -- SASL upgrade tasks (XEP-0480) ---------------------------------------------------------------
#: ``password.hash`` names -> SCRAM mechanism names; SHA-1 is what upgrades move away from.
_UPGRADE_HASHES = {"sha224": "SCRAM-SHA-224", "sha256": "SCRAM-SHA-256",
                   "sha384": "SCRAM-SHA-384", "sha512": "SCRAM-SHA-512"}


def upgrade_task(hash_name: str) -> str | None:
    """XEP-0480 §2: "UPGR-" and the mechanism name without -PLUS (channel binding plays no
    part in an upgrade); None for a hash no task upgrades to."""
    mechanism = _UPGRADE_HASHES.get(hash_name)
    return f"UPGR-{mechanism}" if mechanism else None


def task_hash(task: str) -> str | None:
    """The ``password.hash`` name an upgrade task stores, None for an unknown task."""
    for hash_name, mechanism in _UPGRADE_HASHES.items():
        if task == f"UPGR-{mechanism}":
            return hash_name
    return None


def requested_upgrades(authenticate: Element) -> list[str]:
    """XEP-0480 §3: the tasks a client asks for in its <authenticate/>, in its order."""
    tasks: list[str] = []
    for el in authenticate.find_all("upgrade", ns.SASL_UPGRADE):
        task = el.text.strip()
        if task and task not in tasks:
            tasks.append(task)
    return tasks


def sasl2_continue(result: sasl.Success, task: str) -> Element:
    """XEP-0388 §2.6.2 / XEP-0480 §3: authentication succeeded, one task remains; the
    mechanism's final data (SCRAM's server signature) is sent now, as <success/> would."""
    el = Element("continue", ns.SASL2)
    if result.additional_data:
        el.add("additional-data", text=b64encode(result.additional_data))
    el.add("tasks").add("task", text=task)
    return el


def scram_upgrade_salt(salt: bytes, iterations: int) -> Element:
    """XEP-0480 §4: what the client needs to compute SaltedPassword (RFC 5802 §3)."""
    el = Element("task-data", ns.SASL2)
    el.add("salt", ns.SCRAM_UPGRADE, {"iterations": str(iterations)},
           text=base64.b64encode(salt).decode())
    return el


def scram_upgrade_hash(task_data: Element, digest_size: int) -> bytes | None:
    """XEP-0480 §4: the SaltedPassword the client sent, None when absent or malformed
    (not base64, or not one digest of the task's hash function long)."""
    el = task_data.find("hash", ns.SCRAM_UPGRADE)
    if el is None:
        return None
    try:
        salted = base64.b64decode("".join(el.text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return salted if len(salted) == digest_size else None
