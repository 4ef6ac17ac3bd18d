"""TLS 1.3 early data (0-RTT, RFC 8446 §2.3) on a Direct TLS c2s listener, for FAST logins
(XEP-0484 §3.4): ``tls.early_data = true`` with ``tls.session_tickets = "stateless"``.

A client resuming with a session ticket may send its first flight (the stream header and a
SASL2 <authenticate/> with a FAST token) together with its ClientHello; the server reads it
before the handshake finishes and answers as soon as it does. Neither pyOpenSSL nor the
stdlib expose this, so the OpenSSL calls go through cryptography's bundled bindings
(``SSL_read_early_data``, ``SSL_CTX_set_max_early_data``), behind the same ``TLSLayer``
interface the rest of the server uses.

Replay (RFC 8446 §8, §2.3): early data can be replayed by anyone who recorded it. OpenSSL's
own single-use-ticket check only works within one process's session cache, which does not
span worker processes or cluster nodes, so, as in MongooseIM 6.4, it is switched off and the
protection is XEP-0484's counter: a FAST authentication read as early data must carry a
``count`` greater than the last one accepted for that token (mod_fast_auth_token), and
nothing else is accepted as early data (the c2s sees ``in_early_data``). Channel binding is
not available before the handshake finishes, so only HT-*-NONE works in 0-RTT.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from suricate.net.tls import CertKey, TLSConfig, TLSError, TLSLayer

log = logging.getLogger("suricate.tls")

# OpenSSL constants the bindings do not export (openssl/ssl.h, stable since 1.1.1).
SSL_READ_EARLY_DATA_ERROR = 0
SSL_READ_EARLY_DATA_SUCCESS = 1
SSL_READ_EARLY_DATA_FINISH = 2
SSL_OP_NO_ANTI_REPLAY = 1 << 24
MAX_EARLY_DATA = 16384  # one record: a stream header and an <authenticate/> fit easily
_CHUNK = 16384


def early_data_supported() -> bool:
    return hasattr(_lib, "SSL_read_early_data") and hasattr(_lib, "SSL_CTX_set_max_early_data")


def enable_early_data(ctx: SSL.Context) -> None:
    """Accept up to MAX_EARLY_DATA bytes of 0-RTT data on sessions resumed from tickets."""
    raw = ctx._context  # noqa: SLF001 - the bindings need the SSL_CTX pointer
    if _lib.SSL_CTX_set_max_early_data(raw, MAX_EARLY_DATA) != 1:
        raise TLSError("SSL_CTX_set_max_early_data failed")
    _lib.SSL_CTX_set_options(raw, SSL_OP_NO_ANTI_REPLAY)


class EarlyDataTLSConfig(TLSConfig):
    """A listener's TLS settings with 0-RTT accepted (needs TLS 1.3 and session tickets)."""

    def __init__(self, opts: Mapping[str, Any], alpn: Sequence[bytes] = (),
                 certs_by_name: Mapping[str, CertKey] | None = None) -> None:
        if not early_data_supported():
            raise TLSError("this OpenSSL build cannot read TLS 1.3 early data")
        super().__init__(opts, alpn=alpn, certs_by_name=certs_by_name)

    def _finish_context(self, ctx: SSL.Context) -> None:
        enable_early_data(ctx)  # each context, those a reload makes too

    def new_session(self) -> TLSLayer:
        return EarlyDataTLSLayer(self)


class EarlyDataTLSLayer(TLSLayer):
    """Reads early data until OpenSSL says it is over, then finishes the handshake as usual.
    What the server writes meanwhile waits for the end of the handshake (no 0.5-RTT data:
    the client is not authenticated by the handshake yet)."""

    def __init__(self, config: TLSConfig) -> None:
        super().__init__(config)
        self.early_phase = True
        self.early_bytes = 0  # how much 0-RTT data was read (for tests and logs)

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        if not self.early_phase:
            return super().receive(data)
        self.conn.bio_write(data)
        plain = self._read_early()
        out = self._drain()
        if self.early_phase:
            return plain, out
        # Early data is over: go on with the handshake and the application data behind it.
        # (what the server wrote meanwhile is held by TLSLayer until the handshake is done)
        more = self._advance()
        return plain + more, out + self._drain()

    def _read_early(self) -> bytes:
        ssl = self.conn._ssl  # noqa: SLF001 - the bindings need the SSL pointer
        buf = _ffi.new("char[]", _CHUNK)
        size = _ffi.new("size_t *")
        plain: list[bytes] = []
        while True:
            size[0] = 0
            result = _lib.SSL_read_early_data(ssl, buf, _CHUNK, size)
            if result == SSL_READ_EARLY_DATA_SUCCESS:
                # only a success fills the buffer (a retry leaves stale values behind)
                plain.append(bytes(_ffi.buffer(buf, size[0])))
                self.early_bytes += size[0]
                continue
            if result == SSL_READ_EARLY_DATA_FINISH:
                self.early_phase = False  # no (more) early data: a normal handshake follows
                break
            error = _lib.SSL_get_error(ssl, result)
            _lib.ERR_clear_error()  # keep pyOpenSSL's later calls from seeing our errors
            if error in (_lib.SSL_ERROR_WANT_READ, _lib.SSL_ERROR_WANT_WRITE):
                break  # the rest of the ClientHello or of the early data is still coming
            raise TLSError(f"early data read failed (SSL error {error})")
        return b"".join(plain)
