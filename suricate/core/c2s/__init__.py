"""The client-to-server stream and session (RFC 6120 §4-§8, RFC 6121 for the presence state
kept per session), split by concern; ``client.C2S`` assembles the parts (see its docstring).
"""

from suricate.core.c2s.client import C2S
from suricate.core.c2s.delivery import STREAM_MANAGEMENT
from suricate.core.c2s.negotiation import CredentialSource
from suricate.protocol.negotiation import MAX_AUTH_FAILURES, UserAgent

__all__ = ["C2S", "MAX_AUTH_FAILURES", "STREAM_MANAGEMENT", "CredentialSource", "UserAgent"]
