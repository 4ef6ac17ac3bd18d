"""SASL server mechanisms as pure objects (no I/O): PLAIN, ANONYMOUS, SCRAM-*(-PLUS).

Entry points: `create_mechanism(name, context)`, `mechanism_names(...)` for the stream
features, `channel_binding_types(tls_version)` for XEP-0440. See `base` for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from suricate.sasl.anonymous import Anonymous
from suricate.sasl.base import (
    CONDITIONS,
    Challenge,
    ChannelBindingSource,
    CredentialRecord,
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    SaslContext,
    SaslStateError,
    Success,
)
from suricate.sasl.channel_binding import CB_TYPES, channel_binding_types, server_end_point_hash
from suricate.sasl.external import External
from suricate.sasl.plain import Plain
from suricate.sasl.scram import SCRAM_HASHES, Scram, ssdp_hash

__all__ = [
    "CB_TYPES",
    "CONDITIONS",
    "CONFIG_NAMES",
    "Challenge",
    "ChannelBindingSource",
    "CredentialRecord",
    "Failure",
    "Mechanism",
    "NeedCredentials",
    "Plain",
    "Result",
    "SUPPORTED_MECHANISMS",
    "SaslContext",
    "SaslStateError",
    "Success",
    "UnknownMechanism",
    "channel_binding_types",
    "create_mechanism",
    "mechanism_names",
    "server_end_point_hash",
    "ssdp_hash",
]


class UnknownMechanism(ValueError):
    """Not a mechanism we implement (the stream answers RFC 6120 §6.5.5 invalid-mechanism)."""


def _registry() -> dict[str, Callable[..., Mechanism]]:
    reg: dict[str, Callable[..., Mechanism]] = {"PLAIN": Plain, "ANONYMOUS": Anonymous,
                                                "EXTERNAL": External}
    for sasl, mongoose in SCRAM_HASHES.items():
        for plus in (False, True):

            def make(ctx: SaslContext, _h: str = mongoose, _p: bool = plus, **kw: Any) -> Mechanism:
                return Scram(ctx, _h, _p, **kw)

            reg[f"SCRAM-{sasl}{'-PLUS' if plus else ''}"] = make
    return reg


_REGISTRY = _registry()
SUPPORTED_MECHANISMS: frozenset[str] = frozenset(_REGISTRY)

# MongooseIM `auth.sasl_mechanisms` names -> SASL mechanism names.
CONFIG_NAMES: dict[str, str] = {
    **{
        f"scram_{mongoose if mongoose != 'sha' else 'sha1'}{suffix}": f"SCRAM-{sasl}{plus}"
        for sasl, mongoose in SCRAM_HASHES.items()
        for suffix, plus in (("", ""), ("_plus", "-PLUS"))
    },
    "plain": "PLAIN",
    "anonymous": "ANONYMOUS",
    "external": "EXTERNAL",
    "oauth": "X-OAUTH",
    "digest": "DIGEST-MD5",
}


def create_mechanism(name: str, context: SaslContext, **kwargs: Any) -> Mechanism:
    """A fresh mechanism for one attempt. kwargs: `server_nonce=` for SCRAM (tests).

    Raises UnknownMechanism.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownMechanism(name)
    return factory(context, **kwargs)


def mechanism_names(
    config_names: Sequence[str],
    tls: bool,
    cb_types: Sequence[str],
    password_format: str = "scram",
    hashes: Sequence[str] = tuple(SCRAM_HASHES.values()),
    *,
    implemented_only: bool = True,
) -> list[str]:
    """SASL names to advertise, in configuration order.

    -PLUS variants need TLS and at least one channel-binding type; with SCRAM storage, only
    the stored hashes (`hashes`, MongooseIM names) can be used. Unknown config names raise
    ValueError; names we do not implement here (EXTERNAL, X-OAUTH, DIGEST-MD5) are dropped
    unless implemented_only is False.
    """
    out: list[str] = []
    for cfg in config_names:
        name = CONFIG_NAMES.get(cfg)
        if name is None:
            raise ValueError(f"unknown SASL mechanism {cfg!r}")
        if implemented_only and name not in SUPPORTED_MECHANISMS:
            continue
        if name.endswith("-PLUS") and not (tls and cb_types):
            continue
        if name.startswith("SCRAM-") and password_format == "scram":
            sasl_hash = name.removeprefix("SCRAM-").removesuffix("-PLUS")
            if SCRAM_HASHES[sasl_hash] not in hashes:
                continue
        if name not in out:
            out.append(name)
    return out
