"""TLS over a memory BIO (pyOpenSSL), driven by our asyncio protocol.

Why not the stdlib ``ssl`` module: it cannot export keying material, and RFC 9266
``tls-exporter`` channel binding needs it (DESIGN §4). A memory BIO also lets the same
connection object switch to TLS in place for STARTTLS (RFC 6120 §5.4.3.3), and OpenSSL's
``MODE_RELEASE_BUFFERS`` frees the record buffers of idle connections.

The rest of the server only sees ``TLSLayer``: ``receive``/``send`` for bytes and
``binding()``, ``version``, ``alpn``, ``server_name``, ``peer_certificate`` for facts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL, crypto

from suricate.config.pem import read_crls

try:  # cryptography's bundled OpenSSL bindings, through pyOpenSSL
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib

    _BIO_get_mem_data = _lib.BIO_get_mem_data
    _NO_DATA = _ffi.NULL
except (ImportError, AttributeError):  # pragma: no cover - older bindings: exceptions then
    _BIO_get_mem_data = None
    _NO_DATA = None

log = logging.getLogger("suricate.tls")

_VERSIONS = {"tlsv1.2": SSL.TLS1_2_VERSION, "tlsv1.3": SSL.TLS1_3_VERSION}
# Secure defaults (issue: TLS 1.2+ only, AEAD suites with forward secrecy for TLS 1.2; TLS 1.3
# suites are fixed by OpenSSL and all fine).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
)
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"  # RFC 9266 §2


class TLSError(Exception):
    """The TLS handshake or a record failed; the connection must close."""


def _reason(exc: Exception) -> str:
    """OpenSSL's reasons (pyOpenSSL gives a list of (lib, func, reason)), or the message."""
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return ", ".join(str(item[-1]) for item in args)
    return str(exc) or type(exc).__name__


def _is_self_signed(certfile: str) -> bool:
    """True when the first certificate of ``certfile`` names itself as its issuer and has no
    CA above it that a client could trust (RFC 5280 §6.1: a self-issued end certificate)."""
    with open(certfile, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    return cert.issuer == cert.subject


def server_end_point_hash(cert_der: bytes) -> bytes:
    """RFC 5929 §4.1: hash the certificate with its signature hash; MD5/SHA-1 become SHA-256."""
    cert = x509.load_der_x509_certificate(cert_der)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        return hashlib.sha256(cert_der).digest()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return digest.finalize()


@dataclass(slots=True)
class CertKey:
    certfile: str
    keyfile: str


class TLSConfig:
    """One listener's TLS settings, turned into OpenSSL contexts once at start-up."""

    __slots__ = ("context", "mode", "alpn", "_by_name", "_end_point", "_verify_after_handshake",
                 "host_type_of", "_opts", "_certs_by_name", "self_signed")

    def __init__(self, opts: Mapping[str, Any], alpn: Sequence[bytes] = (),
                 certs_by_name: Mapping[str, CertKey] | None = None,
                 verify_after_handshake: bool = False) -> None:
        self.mode: str = opts.get("mode") or "starttls"
        self.alpn = tuple(alpn)
        # s2s: ask for the peer's certificate but never fail the handshake on it; the stream
        # decides afterwards (SASL EXTERNAL when it proves the domain, dialback otherwise).
        self._verify_after_handshake = verify_after_handshake
        self._opts = opts
        self._certs_by_name = certs_by_name or {}
        self._end_point: dict[int, bytes] = {}
        #: The host type of a served domain (the name itself for any other name): a
        #: certificate given for a host type serves its domains, added at run time too.
        self.host_type_of: Callable[[str], str] | None = None
        #: The default certificate is its own issuer (the embedded default's generated one):
        #: no client can verify it, so each asks its user first (libpurple, Gajim, profanity).
        self.self_signed = False
        self.context, self._by_name = self._load()

    def _load(self) -> tuple[SSL.Context, dict[str, SSL.Context]]:
        opts = self._opts
        default = CertKey(opts["certfile"], opts.get("keyfile") or opts["certfile"])
        context = self._make_context(opts, default)
        self.self_signed = _is_self_signed(default.certfile)
        # Certificate per domain chosen by SNI (RFC 6066 §3); the default serves the rest.
        by_name = {name.lower(): self._make_context(opts, ck)
                   for name, ck in self._certs_by_name.items()}
        if by_name:
            context.set_tlsext_servername_callback(self._select_by_sni)
        return context, by_name

    def reload(self) -> None:
        """Read the certificate, key, CA and CRL files again (a renewed certificate): new
        handshakes use them, established connections keep theirs. When a file cannot be
        used, raises TLSError and keeps the contexts in use."""
        try:
            context, by_name = self._load()
        except (OSError, ValueError, SSL.Error, crypto.Error) as exc:
            raise TLSError(f"{self._opts.get('certfile')}: {_reason(exc)}") from None
        # Connections still on the old contexts keep their tls-server-end-point hashes.
        self.context, self._by_name = context, by_name

    def _make_context(self, opts: Mapping[str, Any], cert: CertKey) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        versions = [_VERSIONS[v] for v in (opts.get("versions") or ["tlsv1.2", "tlsv1.3"])]
        ctx.set_min_proto_version(min(versions))
        ctx.set_max_proto_version(max(versions))
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_NO_RENEGOTIATION)
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        ctx.set_cipher_list((opts.get("ciphers") or DEFAULT_CIPHERS).encode())
        # A session resumes only where its context id matches; OpenSSL refuses to resume at
        # all, failing the handshake, when it is unset and peer certificates are asked for
        # (verify_mode peer, s2s): clients resuming from a session ticket were cut off.
        ctx.set_session_id(hashlib.sha256(b"suricate:" + cert.certfile.encode()).digest())
        password = opts.get("password")
        if password:
            ctx.set_passwd_cb(lambda *_: password.encode())
        ctx.use_certificate_chain_file(cert.certfile)
        ctx.use_privatekey_file(cert.keyfile)
        ctx.check_privatekey()
        if opts.get("crl_files"):
            add_crls(ctx.get_cert_store(), opts["crl_files"])
        verify_mode = opts.get("verify_mode") or "none"
        if verify_mode == "none":
            ctx.set_verify(SSL.VERIFY_NONE, None)
        elif self._verify_after_handshake:
            ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        else:
            # Ask for a client certificate, do not require one: a c2s client normally logs in
            # with SASL; the certificate is only evidence for SASL EXTERNAL.
            accept_self_signed = verify_mode == "selfsigned_peer"
            ctx.set_verify(SSL.VERIFY_PEER,
                           lambda _c, _x, errno, _d, ok: bool(ok) or (
                               accept_self_signed and errno in (18, 19)))
            if opts.get("cacertfile"):
                ctx.load_verify_locations(opts["cacertfile"])
            else:
                ctx.set_default_verify_paths()  # CA certificates from the OS
        if self.alpn:
            ctx.set_alpn_select_callback(self._select_alpn)
        with open(cert.certfile, "rb") as pem:
            x509_cert = crypto.load_certificate(crypto.FILETYPE_PEM, pem.read())
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, x509_cert)
        self._end_point[id(ctx)] = server_end_point_hash(der)
        self._finish_context(ctx)
        return ctx

    def _finish_context(self, ctx: SSL.Context) -> None:
        """What a subclass adds to each context (0-RTT early data)."""

    def _select_alpn(self, conn: SSL.Connection, offered: list[bytes]) -> Any:
        for proto in self.alpn:
            if proto in offered:
                return proto
        # XEP-0368 §3: a client that offers no matching protocol is still served (ALPN is
        # optional for it); OpenSSL then proceeds without ALPN.
        return SSL.NO_OVERLAPPING_PROTOCOLS

    def _select_by_sni(self, conn: SSL.Connection) -> None:
        name = conn.get_servername()
        if name:
            text = name.decode("ascii", "replace").lower()
            ctx = self._by_name.get(text)
            if ctx is None and self.host_type_of is not None:
                ctx = self._by_name.get(self.host_type_of(text))
            if ctx is not None:
                conn.set_context(ctx)

    def end_point_hash(self, ctx: SSL.Context) -> bytes:
        return self._end_point[id(ctx)]

    def new_session(self) -> TLSLayer:
        return TLSLayer(self)


def add_crls(store: Any, crl_files: Sequence[str]) -> None:
    """``tls.crl_files``: the peer's certificate is checked against these CRLs (RFC 5280
    §6.3) wherever ``store`` verifies: revoked, or issued by a CA with no CRL here, it fails
    (OpenSSL's CRL_CHECK, on the peer's own certificate as 6.4's OTP ssl ``crl_check``)."""
    for path in crl_files:
        for crl in read_crls(path):
            store.add_crl(crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)


class TLSClientConfig:
    """TLS for connections we open (s2s outgoing): one OpenSSL context, one session per
    connection naming the server it expects (SNI, RFC 6066 §3).

    The server's certificate is not judged during the handshake: the stream checks it
    afterwards against the trust store and the domain (RFC 6120 §13.7.2, ``peer_cert``), so
    that ``verify_mode`` is applied in one place and its failure can be reported clearly."""

    __slots__ = ("context", "mode", "opts", "_alpn")

    def __init__(self, opts: Mapping[str, Any], alpn: Sequence[bytes] = ()) -> None:
        self.opts = opts
        self._alpn = tuple(alpn)
        self.mode: str = opts.get("mode") or "starttls"
        self.context = self._make_context()

    def reload(self) -> None:
        """Read our certificate again (``tls.certfile``); TLSError, and the context in use
        stays, when it cannot be used."""
        try:
            self.context = self._make_context()
        except (OSError, ValueError, SSL.Error, crypto.Error) as exc:
            raise TLSError(f"{self.opts.get('certfile')}: {_reason(exc)}") from None

    def _make_context(self) -> SSL.Context:
        opts, alpn = self.opts, self._alpn
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        versions = [_VERSIONS[v] for v in (opts.get("versions") or ["tlsv1.2", "tlsv1.3"])]
        ctx.set_min_proto_version(min(versions))
        ctx.set_max_proto_version(max(versions))
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        ctx.set_cipher_list((opts.get("ciphers") or DEFAULT_CIPHERS).encode())
        password = opts.get("password")
        if password:
            ctx.set_passwd_cb(lambda *_: password.encode())
        if opts.get("certfile"):
            # Our certificate, the evidence for SASL EXTERNAL (XEP-0178).
            ctx.use_certificate_chain_file(opts["certfile"])
            ctx.use_privatekey_file(opts.get("keyfile") or opts["certfile"])
            ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        if alpn:
            ctx.set_alpn_protos(list(alpn))
        return ctx

    @property
    def has_certificate(self) -> bool:
        return bool(self.opts.get("certfile"))

    def for_server(self, name: str) -> TLSClientTarget:
        return TLSClientTarget(self, name)


class TLSClientTarget:
    """A client config bound to the server name it will send in SNI."""

    __slots__ = ("config", "server_name")

    def __init__(self, config: TLSClientConfig, server_name: str) -> None:
        self.config = config
        self.server_name = server_name

    def new_session(self) -> TLSLayer:
        sni = self.config.opts.get("server_name_indication") or {}
        name = self.server_name
        if sni.get("enabled", True) is False:
            name = ""
        elif sni.get("host"):
            name = sni["host"]
        return TLSLayer(self.config, client_server_name=name)


class TLSLayer:
    """One connection's TLS state over memory BIOs (server side, or client side for the
    connections we open)."""

    __slots__ = ("config", "conn", "established", "closed", "client", "_pending", "_cb_types")

    def __init__(self, config: TLSConfig | TLSClientConfig,
                 client_server_name: str | None = None) -> None:
        self.config = config
        self.conn = SSL.Connection(config.context, None)
        self.client = client_server_name is not None
        if self.client:
            if client_server_name:
                self.conn.set_tlsext_host_name(client_server_name.encode("idna"))
            self.conn.set_connect_state()
        else:
            self.conn.set_accept_state()
        self.established = False
        self.closed = False
        self._cb_types: tuple[str, ...] | None = None  # once established (the version is set)
        # Plaintext written before the handshake finished (a client writes its stream header
        # right after <proceed/>): sent once the handshake completes.
        self._pending: list[bytes] = []

    def start(self) -> bytes:
        """The bytes that open the handshake: the ClientHello on the client side."""
        if not self.client:
            return b""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            raise TLSError(str(exc)) from None
        return self._drain()

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed ciphertext; return (plaintext for the parser, ciphertext to write back)."""
        self.conn.bio_write(data)
        return self._advance(), self._drain()

    def _advance(self) -> bytes:
        """Go on with what OpenSSL was fed: finish the handshake (then encrypt what was sent
        before it), return the plaintext now readable."""
        conn = self.conn
        plain = []
        try:
            if not self.established:
                try:
                    conn.do_handshake()
                    self.established = True
                except SSL.WantReadError:
                    pass
                if self.established and self._pending:
                    pending, self._pending = b"".join(self._pending), []
                    self._write_all(pending)
            if self.established and not self._input_consumed():
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except SSL.WantReadError:
                        break
                    except SSL.ZeroReturnError:
                        self.closed = True  # close_notify from the peer
                        break
                    if not chunk:
                        break
                    plain.append(chunk)
                    if self._input_consumed():
                        break
        except SSL.Error as exc:
            raise TLSError(str(exc)) from None
        return b"".join(plain)

    def send(self, data: bytes) -> bytes:
        """Encrypt ``data``; return the records to write."""
        if not self.established:
            self._pending.append(data)
            return self._drain()
        self._write_all(data)
        return self._drain()

    def _write_all(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                sent = self.conn.send(view[:16384])
                view = view[sent:]
        except SSL.Error as exc:
            raise TLSError(str(exc)) from None

    def shutdown(self) -> bytes:
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()
        return self._drain()

    def _drain(self) -> bytes:
        conn = self.conn
        if _BIO_get_mem_data is not None:
            # How much the memory BIO holds, read in one call: pyOpenSSL reports an empty BIO
            # with an exception, and a handshake drains an empty one a dozen times.
            size = _BIO_get_mem_data(conn._from_ssl, _NO_DATA)  # noqa: SLF001
            return conn.bio_read(size) if size > 0 else b""
        out = []
        while True:
            try:
                out.append(conn.bio_read(65536))
            except SSL.WantReadError:
                break
        return b"".join(out)

    def _input_consumed(self) -> bool:
        """OpenSSL holds no more input: no ciphertext left in the memory BIO, no decrypted
        bytes waiting (without read-ahead, OpenSSL reads records from the BIO exactly)."""
        if _BIO_get_mem_data is None:
            return False
        conn = self.conn
        return (_BIO_get_mem_data(conn._into_ssl, _NO_DATA) <= 0  # noqa: SLF001
                and conn.pending() <= 0)

    # -- facts for SASL channel binding and the rest of the server --------------------------
    @property
    def version(self) -> str:
        return self.conn.get_protocol_version_name()

    @property
    def tls_version(self) -> str:
        return self.version

    @property
    def alpn(self) -> bytes | None:
        proto = self.conn.get_alpn_proto_negotiated()
        return proto or None

    @property
    def server_name(self) -> str | None:
        name = self.conn.get_servername()
        return name.decode("ascii", "replace") if name else None

    def peer_certificate(self) -> x509.Certificate | None:
        cert = self.conn.get_peer_certificate()
        return cert.to_cryptography() if cert is not None else None

    def peer_chain(self) -> list[x509.Certificate]:
        """The peer's certificate followed by the intermediates it sent."""
        leaf = self.conn.get_peer_certificate()
        if leaf is None:
            return []
        chain = [c.to_cryptography() for c in (self.conn.get_peer_cert_chain() or [])]
        first = leaf.to_cryptography()
        return [first] + [c for c in chain if c != first]

    def binding(self, cb_type: str) -> bytes | None:
        """Channel-binding data of ``cb_type`` (RFC 5929, RFC 9266), or None if unavailable."""
        if not self.established:
            return None
        if cb_type == "tls-exporter":
            return self.conn.export_keying_material(EXPORTER_LABEL, 32)
        if cb_type == "tls-server-end-point":
            if not isinstance(self.config, TLSConfig):
                return None
            return self.config.end_point_hash(self.conn.get_context())
        if cb_type == "tls-unique":
            # RFC 5929 §3.1: the first Finished message of the handshake; on a full handshake
            # the client's. Undefined on TLS 1.3 (RFC 9266 §1), whatever OpenSSL returns.
            if self.version != "TLSv1.2":
                return None
            return self.conn.get_peer_finished()
        return None

    def channel_binding_types(self) -> list[str]:
        if not self.established:
            return []
        types = self._cb_types
        if types is None:
            # Asked several times per login; the version cannot change once the handshake
            # is done (no renegotiation: OP_NO_RENEGOTIATION, and none in TLS 1.3).
            if self.version == "TLSv1.3":
                types = ("tls-exporter", "tls-server-end-point")
            else:
                # TLS 1.2: tls-exporter is only safe with the extended master secret (RFC
                # 9266 §3), which we cannot check through pyOpenSSL; the two classic types.
                types = ("tls-unique", "tls-server-end-point")
            self._cb_types = types
        return list(types)


# -- stdlib ssl for the HTTP listeners ----------------------------------------------------------
_STDLIB_VERSIONS = {"tlsv1.2": "TLSv1_2", "tlsv1.3": "TLSv1_3"}


class ReloadableStdlibContext:
    """The stdlib context an HTTPS listener was started with, made to hand each new
    handshake to the context of the latest ``reload()`` (the server's socket keeps the
    first one; its SNI callback, called for every ClientHello, switches)."""

    __slots__ = ("opts", "first", "current")

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.opts = opts
        self.first = stdlib_server_context(opts)
        self.current = self.first
        self.first.sni_callback = self._use_current

    def _use_current(self, ssl_object: Any, _name: str | None, ctx: Any) -> None:
        if ctx is not self.current:
            ssl_object.context = self.current

    def reload(self) -> None:
        """As ``TLSConfig.reload``: TLSError, and the context in use stays, on failure."""
        try:
            self.current = stdlib_server_context(self.opts)
        except (OSError, ValueError) as exc:
            raise TLSError(f"{self.opts.get('certfile')}: {exc}") from None


def stdlib_server_context(opts: Mapping[str, Any]) -> Any:
    """An ``ssl.SSLContext`` from ``listen.http[].tls``: aiohttp's server takes stdlib contexts
    only (no memory BIO), so HTTPS is the one place where stdlib ``ssl`` serves. Same options,
    same meaning as ``TLSConfig``: versions, ciphers, verify_mode with cacertfile, password,
    dhfile. ``selfsigned_peer`` is refused by the configuration (stdlib ssl has no verify
    callback)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = [getattr(ssl.TLSVersion, _STDLIB_VERSIONS[v])
                for v in (opts.get("versions") or ["tlsv1.2", "tlsv1.3"])]
    ctx.minimum_version = min(versions)
    ctx.maximum_version = max(versions)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.set_ciphers(opts.get("ciphers") or DEFAULT_CIPHERS)
    ctx.load_cert_chain(opts["certfile"], opts.get("keyfile") or opts["certfile"],
                        password=opts.get("password"))
    if opts.get("dhfile"):
        ctx.load_dh_params(opts["dhfile"])
    if (opts.get("verify_mode") or "none") == "none":
        ctx.verify_mode = ssl.CERT_NONE
    else:
        # Ask for a client certificate, do not require one (as TLSConfig does for c2s).
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if opts.get("cacertfile"):
            ctx.load_verify_locations(opts["cacertfile"])
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx
