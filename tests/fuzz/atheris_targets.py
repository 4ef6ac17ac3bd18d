"""Coverage-guided fuzzing with atheris (libFuzzer) for long local runs; not part of CI.

    pip install atheris
    python -m tests.fuzz.atheris_targets parser -atheris_runs=1000000
    python -m tests.fuzz.atheris_targets proxy -max_total_time=600

Targets: ``parser`` (the stream parser after a header, under a stanza limit), ``jid``,
``scram`` (a SCRAM-SHA-256 client-first then client-final), ``proxy`` (the PROXY header).
Any exception other than the documented refusals is a crash libFuzzer reports with its input.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from suricate import sasl
    from suricate.jid import JID, InvalidJID
    from suricate.net import proxy_protocol
    from suricate.protocol.errors import STREAM_CONDITIONS
    from suricate.xml.parser import StreamParser, XMLStreamError

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
CONTEXT = sasl.SaslContext(server="localhost", scram_iterations=16)


def parser(data: bytes) -> None:
    p = StreamParser(4096)
    try:
        p.feed(HEADER)
        cut = len(data) // 2
        p.feed(data[:cut])
        p.feed(data[cut:])
    except XMLStreamError as exc:
        if exc.condition not in STREAM_CONDITIONS:
            raise


def jid(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parsed = JID.parse(text)
    except InvalidJID:
        return
    if JID.parse(str(parsed)) != parsed:
        raise AssertionError(f"not idempotent: {text!r}")


def scram(data: bytes) -> None:
    first, _, final = data.partition(b"\n")
    mech = sasl.create_mechanism("SCRAM-SHA-256", CONTEXT)
    result = mech.step(first)
    if isinstance(result, sasl.NeedCredentials):
        result = mech.credentials(None)
    if isinstance(result, sasl.Challenge):
        result = mech.step(final)
    if isinstance(result, sasl.Success):
        raise AssertionError("success without an account")


def proxy(data: bytes) -> None:
    with contextlib.suppress(proxy_protocol.ProxyProtocolError):
        proxy_protocol.parse(data)


TARGETS = {"parser": parser, "jid": jid, "scram": scram, "proxy": proxy}

if __name__ == "__main__":
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
