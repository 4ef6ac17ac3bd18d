"""The configuration schema: every section and option Suricate understands.

Names, defaults and value sets follow MongooseIM 6.4 (doc/configuration/*.md). Options MongooseIM
has but Suricate does not implement are refused with "not available in this version" rather than
ignored, so a config never silently means less than it says. The few accepted so that MongooseIM
configurations load unchanged but without effect are `Option(..., inert=True)`: they warn.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import warnings
from collections.abc import Mapping
from typing import Any

from suricate.config.catalog import CATALOG, ModuleCatalog, ModuleNotLoadable, module_options
from suricate.config.modules_spec import UNAVAILABLE_MODULES
from suricate.config.pem import read_crls
from suricate.config.spec import (
    DEFAULTS,
    INVALID,
    OMIT,
    AnyScalar,
    Bool,
    Context,
    Domain,
    FilePath,
    Int,
    IntOrInfinity,
    IPAddress,
    ListOf,
    LocalPart,
    MapOf,
    OneOf,
    Option,
    PostHook,
    Regexp,
    Section,
    Spec,
    Str,
    at,
    ip_version_of,
    join,
)

NOT_AVAILABLE = "not available in this version of Suricate"

# 6.4's documentation recommends CETS for new clusters: say what to write instead.
_CETS_SM = ("'cets' is " + NOT_AVAILABLE + ': use "mnesia" (one node: the table is in its '
            'memory) or "redis" (several nodes, docs/cluster.md)')
_CETS_LOCAL = ("'cets' is " + NOT_AVAILABLE + ': use "mnesia" (or leave it out): each node '
               "keeps these in its own process, with sessions shared through sm_backend "
               '= "redis"')

LOGLEVELS = [
    "none",
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
    "all",
]

AUTH_METHODS = ["internal", "rdbms", "anonymous", "dummy", "http", "jwt", "external", "pki",
                "ldap"]
UNAVAILABLE_AUTH_METHODS: list[str] = []

#: Advertisement order: strongest first, as in MongooseIM's default list.
SASL_MECHANISMS = [
    "scram_sha512_plus",
    "scram_sha512",
    "scram_sha384_plus",
    "scram_sha384",
    "scram_sha256_plus",
    "scram_sha256",
    "scram_sha224_plus",
    "scram_sha224",
    "scram_sha1_plus",
    "scram_sha1",
    "plain",
    "anonymous",
    "oauth",
    "external",
]
# MongooseIM 6.4's default list; "oauth" (X-OAUTH) is only offered with mod_auth_token.
DEFAULT_SASL_MECHANISMS = [m for m in SASL_MECHANISMS if m.startswith("scram")] + [
    "plain",
    "anonymous",
    "oauth",
]

PASSWORD_HASHES = ["sha", "sha224", "sha256", "sha384", "sha512"]
TLS_VERSIONS = ["tlsv1.2", "tlsv1.3"]
TLS_MODES = ["tls", "starttls", "starttls_required"]
VERIFY_MODES = ["peer", "selfsigned_peer", "none"]

#: Built-in shapers (bytes per second). MongooseIM 6.4's default config defines "normal" at
#: 16384 (raised from 1000 in 6.4) and "fast" at 50000; a config may redefine them.
DEFAULT_SHAPERS: dict[str, dict[str, Any]] = {
    "normal": {"max_rate": 16384},
    "fast": {"max_rate": 50000},
}

#: Access rules present even when not configured, matching MongooseIM 6.4's default config.
DEFAULT_ACCESS: dict[str, list[dict[str, Any]]] = {
    "c2s": [{"acl": "all", "value": "allow"}],
    "register": [{"acl": "all", "value": "allow"}],
    "max_user_sessions": [{"acl": "all", "value": 10}],
    "max_user_offline_messages": [{"acl": "all", "value": 100}],
}

ACL_CONDITIONS = [
    "user",
    "server",
    "resource",
    "user_regexp",
    "server_regexp",
    "resource_regexp",
    "user_glob",
    "server_glob",
    "resource_glob",
]

# --------------------------------------------------------------------------------------------
# TLS


def _tls_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # A combined PEM (certificate followed by key) is the common case: no keyfile means
    # "the key is in the certfile" rather than "no key".
    if out.get("keyfile") is None and out.get("certfile") is not None:
        out["keyfile"] = out["certfile"]
    _check_tls_files(out, raw, path, ctx)
    if out.get("early_data"):
        # 0-RTT needs a ticket from an earlier connection (RFC 8446 §2.3) and only makes sense
        # where the handshake comes first (direct TLS, XEP-0368): refuse rather than ignore.
        if out.get("session_tickets") != "stateless":
            ctx.error(join(path, "early_data"), 'needs session_tickets = "stateless"')
        if out.get("mode", "tls") != "tls":
            ctx.error(join(path, "early_data"), 'needs mode = "tls" (direct TLS)')


def _openssl_reason(exc: Exception) -> str:
    """The last OpenSSL reason of a pyOpenSSL error (``no start line``), else the message."""
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [e[2] for e in errors if isinstance(e, tuple) and len(e) == 3 and e[2]]
    return reasons[0] if reasons else str(exc) or type(exc).__name__


def _check_tls_files(out: Mapping[str, Any], raw: Mapping[str, Any], path: str,
                     ctx: Context) -> None:
    """Load the certificate, key, CA file and cipher string once into a throwaway OpenSSL
    context, as the listener will at start-up: a corrupt or unreadable PEM, a key that is not
    the certificate's, a wrong key password or a cipher string OpenSSL rejects is a problem
    at its TOML path (and for check-config), not a traceback out of ``serve``."""
    certfile, keyfile = out.get("certfile"), out.get("keyfile")
    cafile, ciphers = out.get("cacertfile"), out.get("ciphers")
    files = [(k, v) for k, v in (("certfile", certfile), ("keyfile", keyfile),
                                 ("cacertfile", cafile)) if isinstance(v, str)]
    if not files and not isinstance(ciphers, str) and not out.get("crl_files"):
        return
    for key, name in files:
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            ctx.error(join(path, key), f'cannot read "{name}": {exc.strerror or exc}')
            return
    from OpenSSL import SSL  # only a configuration with TLS files pays for the import

    ssl_ctx = SSL.Context(SSL.TLS_METHOD)
    password = out.get("password")
    # Always a callback: without one OpenSSL asks for the password of an encrypted key on
    # the terminal, and start-up would hang waiting for it. The listener loads the key with
    # the same (deprecated) call, so that this check and start-up agree.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ssl_ctx.set_passwd_cb(lambda *_: (password or "").encode())
    if isinstance(ciphers, str):
        try:
            ssl_ctx.set_cipher_list(ciphers.encode())
        except SSL.Error as exc:
            ctx.error(join(path, "ciphers"),
                      f"OpenSSL accepts no cipher of {ciphers!r} ({_openssl_reason(exc)})")
    if isinstance(certfile, str):
        try:
            ssl_ctx.use_certificate_chain_file(certfile)
        except SSL.Error as exc:
            ctx.error(join(path, "certfile"), f'"{certfile}" is not a PEM certificate '
                                              f"({_openssl_reason(exc)})")
            return
        if isinstance(keyfile, str):
            mismatch = (f'the key in "{keyfile}" is not the key of the certificate in '
                        f'"{certfile}"')
            with open(keyfile, "rb") as pem:
                has_key = b"PRIVATE KEY-----" in pem.read()
            if not has_key:
                if keyfile == certfile and "keyfile" not in raw:
                    # keyfile defaults to certfile (a combined PEM, as 6.4's OTP ssl reads it)
                    ctx.error(join(path, "certfile"), f'"{certfile}" holds no private key: '
                              "give tls.keyfile, or append the key to this file")
                else:
                    ctx.error(join(path, "keyfile"), f'"{keyfile}" holds no PEM private key')
                return
            try:
                ssl_ctx.use_privatekey_file(keyfile)
            except SSL.Error as exc:
                reason = _openssl_reason(exc)
                if "mismatch" in reason:  # OpenSSL compares the key with the certificate
                    ctx.error(join(path, "keyfile"), mismatch)
                    return
                hint = "is tls.password right?" if password else (
                    "an encrypted key needs tls.password")
                ctx.error(join(path, "keyfile"), f'"{keyfile}" holds no usable PEM private '
                                                 f"key ({reason}; {hint})")
                return
            try:
                ssl_ctx.check_privatekey()
            except SSL.Error:
                ctx.error(join(path, "keyfile"), mismatch)
    for index, crl_file in enumerate(out.get("crl_files") or []):
        if not isinstance(crl_file, str):
            continue
        try:
            read_crls(crl_file)
        except (OSError, ValueError) as exc:
            ctx.error(at(join(path, "crl_files"), index),
                      f'"{crl_file}" holds no certificate revocation list (PEM or DER): {exc}')
    if isinstance(cafile, str):
        try:
            ssl_ctx.load_verify_locations(cafile)
        except SSL.Error as exc:
            ctx.error(join(path, "cacertfile"), f'"{cafile}" holds no PEM CA certificate '
                                                f"({_openssl_reason(exc)})")


def _tls_common() -> dict[str, Option]:
    return {
        "certfile": Option(FilePath(), None, "Certificate (PEM); may also contain the key."),
        "keyfile": Option(
            FilePath(), None, "Private key (PEM).", default_doc="the value of `certfile`"
        ),
        "cacertfile": Option(
            FilePath(),
            None,
            "CA certificates (PEM) used to verify peers; the OS store is used when absent.",
        ),
        "password": Option(Str(nonempty=False), None, "Password of an encrypted private key."),
        "verify_mode": Option(
            OneOf(VERIFY_MODES),
            "peer",
            "Peer certificate verification: `peer` verifies against the CA certificates, "
            "`selfsigned_peer` also accepts self-signed ones, `none` does not verify.",
        ),
        "ciphers": Option(Str(), None, "OpenSSL cipher string (TLS 1.2 and older)."),
        "versions": Option(
            ListOf(OneOf(TLS_VERSIONS), unique=True, nonempty=True),
            list(TLS_VERSIONS),
            "Allowed protocol versions.",
        ),
    }


def listener_tls(default_mode: str) -> Section:
    """`tls.*` of an XMPP listener; the default mode differs per listener type."""
    options = _tls_common()
    options["certfile"] = Option(
        FilePath(), doc="Certificate (PEM); may also contain the private key."
    )
    options.update(
        {
            "mode": Option(
                OneOf(TLS_MODES),
                default_mode,
                "`tls`: Direct TLS from the first byte (XEP-0368); `starttls`: optional "
                "STARTTLS; `starttls_required`: STARTTLS before authentication.",
            ),
            "dhfile": Option(FilePath(), None, "Diffie-Hellman parameters (PEM).", inert=True),
            "crl_files": Option(
                ListOf(FilePath()),
                [],
                "Certificate revocation lists (PEM or DER) checked for peers' certificates "
                "(with verify_mode peer; RFC 5280 §6.3): a revoked one fails verification, "
                "and so does one whose issuer has no CRL in these files.",
            ),
            "disconnect_on_failure": Option(
                Bool(), True, "Close the connection when peer verification fails.", inert=True
            ),
            "early_data": Option(
                Bool(), False, "Accept TLS 1.3 0-RTT data (meant for FAST on Direct TLS)."
            ),
            "session_tickets": Option(
                OneOf(["stateless"]), None, "TLS 1.3 session tickets; needed for early_data."
            ),
        }
    )
    return Section(options, doc="TLS settings.", post=_tls_post)


def http_tls() -> Section:
    options = _tls_common()
    options["certfile"] = Option(FilePath(), doc="Certificate (PEM); may also contain the key.")
    options["dhfile"] = Option(FilePath(), None, "Diffie-Hellman parameters (PEM).")
    return Section(options, doc="HTTPS settings.", post=_http_tls_post)


def _http_tls_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    _tls_post(out, raw, path, ctx)
    if out.get("verify_mode") == "selfsigned_peer":
        # HTTPS is served by stdlib ssl (aiohttp), which has no verification callback.
        ctx.error(join(path, "verify_mode"), 'HTTP listeners support "peer" and "none" only')


def outgoing_tls(with_mode: bool, mode_default: str = "starttls") -> Section:
    options = _tls_common()
    options["server_name_indication"] = Option(
        Section(
            {
                "enabled": Option(Bool(), True, "Send SNI."),
                "host": Option(
                    Str(), None, "Name sent in SNI.", default_doc="the host connected to"
                ),
                "protocol": Option(
                    OneOf(["default", "https"]),
                    "default",
                    '"https" applies HTTPS-style hostname checks.',
                ),
            }
        ),
        DEFAULTS,
        "Server Name Indication.",
    )
    if with_mode:
        options["mode"] = Option(
            OneOf(TLS_MODES), mode_default, "Direct TLS or STARTTLS (optional or required)."
        )
    else:
        options["required"] = Option(Bool(), False, "Refuse to connect without TLS.")
    return Section(options, doc="TLS settings for outgoing connections.", post=_tls_post)


# --------------------------------------------------------------------------------------------
# Listeners


def _listener_address_post(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context
) -> None:
    # MongooseIM derives the IP version from the address and binds the all-zeros address
    # of the requested version when no address is given.
    if out["ip_address"] is None:
        out["ip_address"] = "::" if out["ip_version"] == 6 else "0.0.0.0"
    actual = ip_version_of(out["ip_address"])
    if out["ip_version"] is None:
        out["ip_version"] = actual
    elif out["ip_version"] != actual:
        ctx.error(
            join(path, "ip_version"),
            f'ip_version {out["ip_version"]} does not match ip_address "{out["ip_address"]}"',
        )


def _base_listener_options() -> dict[str, Option]:
    return {
        "port": Option(Int(min=1, max=65535), doc="TCP port to listen on."),
        "ip_address": Option(
            IPAddress(),
            None,
            "Address to bind.",
            default_doc='"0.0.0.0" ("::" when ip_version = 6)',
        ),
        "ip_version": Option(
            OneOf([4, 6]), None, "IP version.", default_doc="derived from ip_address"
        ),
        "proto": Option(OneOf(["tcp"]), "tcp", "Transport protocol; only TCP is supported."),
        "hibernate_after": Option(
            Int(min=0, unit="milliseconds"),
            0,
            "Idle time after which a connection drops its per-connection buffers "
            "(parser, TLS buffers) to save memory.",
        ),
    }


def _xmpp_listener_options(default_tls_mode: str) -> dict[str, Option]:
    options = _base_listener_options()
    options.update(
        {
            "backlog": Option(Int(min=1), 1024, "Listen backlog of the socket."),
            "max_connections": Option(
                IntOrInfinity(min=1),
                None,
                "Soft limit of open connections.",
                default_doc='"infinity"',
            ),
            "num_acceptors": Option(Int(min=1), 100, "Number of accepting processes.", inert=True),
            "reuse_port": Option(Bool(), False, "Set SO_REUSEPORT on the socket."),
            "proxy_protocol": Option(
                Bool(), False, "Expect an HAProxy PROXY protocol (v1 or v2) header."
            ),
            "shaper": Option(
                Str(),
                "none",
                'Name of a shaper from [shaper] limiting incoming traffic, or "none".',
            ),
            "max_stanza_size": Option(
                IntOrInfinity(min=1, unit="bytes"),
                None,
                "Largest accepted stanza; bigger ones close the stream (policy-violation).",
                default_doc='"infinity"',
            ),
            "state_timeout": Option(
                Int(min=0, unit="milliseconds"),
                5000,
                "Time allowed for each step of stream negotiation and authentication; 0: no limit.",
            ),
            "tls": Option(
                listener_tls(default_tls_mode),
                None,
                "TLS settings; without this table the listener offers no TLS.",
                default_doc="none (no TLS)",
            ),
        }
    )
    return options


def _c2s_listener() -> Section:
    options = _xmpp_listener_options("starttls")
    options.update(
        {
            "access": Option(
                Str(), "all", 'Access rule deciding who may connect ("all" allows everyone).'
            ),
            "backwards_compatible_session": Option(
                Bool(), True, "Accept the obsolete RFC 3921 session establishment IQ."
            ),
            "allowed_auth_methods": Option(
                ListOf(
                    OneOf(
                        AUTH_METHODS,
                        UNAVAILABLE_AUTH_METHODS,
                        "method '{value}' is not available in this version",
                    ),
                    unique=True,
                    item_paths=False,
                ),
                None,
                "Auth methods usable on this listener; a subset of auth.methods.",
                default_doc="all methods from auth.methods",
            ),
            # Not in MongooseIM 6.4: a phone that vanishes (a tunnel, no FIN, no RST) must not
            # stay online for ever, nor take fifteen minutes of retransmissions to be noticed
            # (docs/delivery.md, "Phones on bad networks").
            "tcp_keepalive": Option(
                Int(min=0, unit="seconds"),
                300,
                "Idle time after which the kernel probes a silent client (SO_KEEPALIVE, "
                "TCP_KEEPIDLE); 0: no probes. An idle client that vanished is dropped after "
                "this plus tcp_user_timeout.",
            ),
            "tcp_user_timeout": Option(
                Int(min=0, unit="seconds"),
                0,
                "How long data sent to a client may stay unacknowledged before the connection "
                "is dropped (TCP_USER_TIMEOUT); 0: the kernel's default (about 15 minutes). "
                "It also ends an idle connection at the first unanswered keepalive probe once "
                "this long has passed without a packet from the client: keep it above "
                "tcp_keepalive + 120 to survive a lost probe.",
            ),
        }
    )
    return Section(options, doc="Client-to-server listener.", post=_listener_address_post)


def _not_hibernating(options: dict[str, Option]) -> dict[str, Option]:
    """Only c2s connections hibernate (core/hibernation.py): the option does nothing elsewhere."""
    options["hibernate_after"].inert = True
    return options


def _s2s_listener() -> Section:
    return Section(
        _not_hibernating(_xmpp_listener_options("starttls")),
        doc="Server-to-server listener (most S2S options are in [s2s]).",
        post=_listener_address_post,
    )


def _component_listener() -> Section:
    options = _xmpp_listener_options("tls")
    options.update(
        {
            "password": Option(Str(), doc="Shared secret of the XEP-0114 handshake."),
            "access": Option(
                Str(),
                "all",
                "Access rule deciding who may send stanzas to the components of this listener "
                "(others get a forbidden error); it does not limit which components connect.",
            ),
            "check_from": Option(
                Bool(), True, "Check that stanzas from the component use its own domain."
            ),
            "hidden_components": Option(
                Bool(),
                False,
                "Mark this listener's components hidden: users do not see them in the "
                "server's disco#items when modules.mod_disco.users_can_see_hidden_services "
                "is false (servers and components always do).",
            ),
            "conflict_behaviour": Option(
                OneOf(["disconnect", "kick_old"]),
                "disconnect",
                "What happens when a component connects with a domain already in use.",
            ),
        }
    )
    return Section(
        _not_hibernating(options),
        doc="External component (XEP-0114) listener.",
        post=_listener_address_post,
    )


def _handler(extra: dict[str, Option] | None = None, post: PostHook | None = None) -> ListOf:
    options: dict[str, Option] = {
        "host": Option(Str(), doc='Host name served ("_" matches any).'),
        "path": Option(Str(), doc="URL path."),
    }
    options.update(extra or {})
    return ListOf(Section(options, post=post))


def _graphql_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # Only the admin endpoint has its own credentials; the others authenticate users/domains.
    has_user, has_password = out["username"] is not None, out["password"] is not None
    if out["schema_endpoint"] != "admin":
        for key in ("username", "password"):
            if key in raw:
                ctx.error(join(path, key), 'only allowed when schema_endpoint is "admin"')
    elif has_user != has_password:
        missing = "password" if has_user else "username"
        ctx.error(join(path, missing), "username and password must be given together")


#: The ``handlers`` of ``mongoose_admin_api`` and ``mongoose_client_api`` (6.4's names).
REST_ADMIN_HANDLERS = ["contacts", "users", "sessions", "messages", "stanzas", "muc_light",
                       "muc", "inbox", "domain", "metrics"]
REST_CLIENT_HANDLERS = ["sse", "messages", "contacts", "rooms", "rooms_config",
                        "rooms_users", "rooms_messages"]


def _rest_admin_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                     ctx: Context) -> None:
    if (out["username"] is None) != (out["password"] is None):
        missing = "password" if out["username"] is not None else "username"
        ctx.error(join(path, missing), "username and password must be given together")


def _http_listener_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                        ctx: Context) -> None:
    _listener_address_post(out, raw, path, ctx)
    handlers = out.get("handlers") or {}
    if not (handlers.get("mod_websockets") or handlers.get("mod_bosh")):
        # The page takes its endpoints from its own listener: with neither, Converse.js
        # loads and cannot connect (operations.md's snippet once showed /chat alone).
        for i, handler in enumerate(handlers.get("mod_conversejs") or ()):
            if handler.get("websocket_url") is None and handler.get("bosh_service_url") is None:
                ctx.warn(at(join(join(path, "handlers"), "mod_conversejs"), i),
                         "the web client has no endpoint to connect to: add a "
                         "[[listen.http.handlers.mod_websockets]] (or mod_bosh) to this "
                         "listener, or set websocket_url")
    if ipaddress.ip_address(out["ip_address"]).is_loopback:
        return
    # An admin endpoint without credentials administers the server for whoever reaches the
    # port (6.4 allows it; its docs and ours say to keep it on a loopback address then).
    for kind, open_ in (("mongoose_graphql_handler",
                         lambda h: h.get("schema_endpoint") == "admin"),
                        ("mongoose_admin_api", lambda h: True)):
        for i, handler in enumerate(handlers.get(kind) or ()):
            if open_(handler) and handler.get("username") is None:
                ctx.warn(at(join(join(path, "handlers"), kind), i),
                         f"the admin API here has no username and password, on "
                         f"{out['ip_address']}: anyone who reaches port {out['port']} "
                         "administers the server; set them, or bind the listener to "
                         "127.0.0.1")


def _http_listener() -> Section:
    options = _base_listener_options()
    options.update(
        {
            "transport": Option(
                Section(
                    {
                        "num_acceptors": Option(
                            Int(min=1),
                            100,
                            "Number of acceptors (meaningless here: one asyncio loop accepts).",
                            inert=True,
                        ),
                        "max_connections": Option(
                            IntOrInfinity(min=1), 1024, "Maximum open connections."
                        ),
                    }
                ),
                DEFAULTS,
                "Socket settings.",
            ),
            "protocol": Option(
                Section(
                    {
                        "compress": Option(
                            Bool(),
                            False,
                            "Compress responses (gzip/deflate as the client accepts; "
                            "not WebSocket messages).",
                        )
                    }
                ),
                DEFAULTS,
                "HTTP protocol settings.",
            ),
            "tls": Option(http_tls(), None, "HTTPS settings; plain HTTP without this table."),
            "handlers": Option(
                Section(
                    {
                        "mod_bosh": Option(
                            _handler(), [], "XMPP over BOSH (XEP-0124/0206), see http.md."
                        ),
                        "mod_websockets": Option(
                            _handler(
                                {
                                    "timeout": Option(
                                        IntOrInfinity(min=1, unit="milliseconds"),
                                        60000,
                                        "Idle timeout: when nothing (not even a pong) arrived "
                                        "for this long, the stream ends with connection-timeout, "
                                        "or, when the client negotiated stream resumption, the "
                                        "WebSocket closes (1001) and the session waits for it.",
                                    ),
                                    "ping_rate": Option(
                                        Int(min=1, unit="milliseconds"),
                                        None,
                                        "Interval of WebSocket pings; none by default. A "
                                        "ping unanswered for half the interval closes.",
                                    ),
                                    "max_stanza_size": Option(
                                        IntOrInfinity(min=1, unit="bytes"),
                                        None,
                                        "Largest accepted stanza.",
                                        default_doc='"infinity"',
                                    ),
                                    "state_timeout": Option(
                                        Int(min=0, unit="milliseconds"),
                                        5000,
                                        "Time allowed for each negotiation step; 0: no limit.",
                                    ),
                                    "backwards_compatible_session": Option(
                                        Bool(), True, "Accept the RFC 3921 session IQ."
                                    ),
                                }
                            ),
                            [],
                            "XMPP over WebSocket (RFC 7395), see http.md.",
                        ),
                        "mongoose_graphql_handler": Option(
                            _handler(
                                {
                                    "schema_endpoint": Option(
                                        OneOf(["admin", "domain_admin", "user"]),
                                        doc="Which GraphQL schema is served.",
                                    ),
                                    "username": Option(Str(), None, "Admin endpoint user."),
                                    "password": Option(Str(), None, "Admin endpoint password."),
                                    "allowed_categories": Option(
                                        ListOf(Str(), unique=True),
                                        None,
                                        "Categories exposed; all when absent.",
                                    ),
                                    "sse_idle_timeout": Option(
                                        IntOrInfinity(min=1, unit="milliseconds"),
                                        3600000,
                                        "A subscription's stream (GET `{path}/sse`) ends "
                                        "after this long without an event; the client "
                                        "reconnects (6.4: the stream's idle timeout).",
                                    ),
                                },
                                post=_graphql_post,
                            ),
                            [],
                            "GraphQL API.",
                        ),
                        "mongoose_prometheus_handler": Option(
                            _handler(), [], "Prometheus metrics endpoint."
                        ),
                        "mongoose_admin_api": Option(
                            _handler(
                                {
                                    "username": Option(Str(), None, "Basic auth user."),
                                    "password": Option(Str(), None, "Basic auth password."),
                                    "handlers": Option(
                                        ListOf(OneOf(REST_ADMIN_HANDLERS), unique=True),
                                        REST_ADMIN_HANDLERS,
                                        "Parts of the API served.",
                                    ),
                                },
                                post=_rest_admin_post,
                            ),
                            [],
                            "MongooseIM 6.4's REST admin API (without username and "
                            "password it is open); see http.md.",
                        ),
                        "mongoose_client_api": Option(
                            _handler(
                                {
                                    "handlers": Option(
                                        ListOf(OneOf(REST_CLIENT_HANDLERS), unique=True),
                                        REST_CLIENT_HANDLERS,
                                        "Parts of the API served.",
                                    ),
                                    "docs": Option(
                                        Bool(),
                                        True,
                                        "Serve the Swagger pages at `path`/api-docs (not "
                                        "shipped: the option is accepted and does nothing).",
                                        inert=True,
                                    ),
                                }
                            ),
                            [],
                            "MongooseIM 6.4's REST client API (HTTP Basic auth as the "
                            "user's JID and password); see http.md.",
                        ),
                        "mod_http_upload": Option(
                            _handler(), [],
                            "Suricate: PUT and GET of mod_http_upload's disk backend "
                            "(its `disk.base_url` points here); see upload.md.",
                        ),
                        "mod_conversejs": Option(
                            _handler(
                                {
                                    "websocket_url": Option(
                                        Str(),
                                        None,
                                        "WebSocket endpoint the client uses.",
                                        default_doc="the mod_websockets handler of this "
                                        "listener, on the page's own host",
                                    ),
                                    "bosh_service_url": Option(
                                        Str(),
                                        None,
                                        "BOSH endpoint the client uses.",
                                        default_doc="the mod_bosh handler of this listener",
                                    ),
                                    "default_domain": Option(
                                        Str(),
                                        None,
                                        "Domain of the accounts that log in and register.",
                                        default_doc="general.default_server_domain",
                                    ),
                                    "conversejs_resources": Option(
                                        Str(),
                                        None,
                                        "Folder of Converse.js's dist files.",
                                        default_doc="webclient/node_modules/converse.js/dist "
                                        "of the source tree (`make webclient`); an installed "
                                        "package has none: set it (operations.md)",
                                    ),
                                }
                            ),
                            [],
                            "Converse.js web client (as ejabberd's mod_conversejs), see http.md.",
                        ),
                    },
                    unknown_message="unknown handler type",
                ),
                DEFAULTS,
                "Request handlers, as `[[listen.http.handlers.TYPE]]` arrays.",
            ),
        }
    )
    options["hibernate_after"] = Option(
        Int(min=0, unit="milliseconds"),
        0,
        "Idle time after which a WebSocket (mod_websockets) or BOSH (mod_bosh) session drops "
        "its XML parser to save memory, as a c2s connection does.",
    )
    return Section(options, doc="HTTP listener.", post=_http_listener_post)


def _listen() -> Section:
    return Section(
        {
            "c2s": Option(ListOf(_c2s_listener()), [], "Client-to-server listeners."),
            "s2s": Option(ListOf(_s2s_listener()), [], "Server-to-server listeners."),
            "component": Option(ListOf(_component_listener()), [], "Component listeners."),
            "http": Option(ListOf(_http_listener()), [], "HTTP listeners."),
        },
        doc="Listeners, one `[[listen.TYPE]]` table each.",
        unavailable={"service": "renamed to listen.component in MongooseIM 6.4"},
        unknown_message="unknown listener type",
    )


# --------------------------------------------------------------------------------------------
# [general]


def _general_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    if out["hosts"] is None:
        if not out["host_types"]:
            ctx.error(join(path, "hosts"), "missing required option (or define general.host_types)")
            return
        out["hosts"] = []
    # 6.4 refuses a name that is both (process_general): a static host is its own host type,
    # so a host type named like one would share its [[host_config]], modules and data.
    for index, host_type in enumerate(out["host_types"]):
        if host_type in out["hosts"]:
            ctx.error(join(path, f"host_types[{index}]"),
                      f'"{host_type}" is also in general.hosts (a static host is its own host '
                      "type): give the host type another name")
    seen: dict[str, int] = {}
    certs = out.get("domain_certfile")
    for index, entry in enumerate(certs if isinstance(certs, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
            continue
        name, where = entry["domain"], join(path, f"domain_certfile[{index}].domain")
        if name not in out["hosts"] and name not in out["host_types"]:
            ctx.error(where, f'"{name}" is neither one of general.hosts nor of '
                             "general.host_types")
        elif name in seen:
            ctx.error(where, f'"{name}" already has a certificate '
                             f"(domain_certfile[{seen[name]}])")
        seen.setdefault(name, index)
    if out["hosts"] and out["default_server_domain"] not in out["hosts"]:
        ctx.error(
            join(path, "default_server_domain"),
            f'"{out["default_server_domain"]}" is not one of general.hosts',
        )


#: MongooseIM 6.4's routing steps (``mongoose_router:default_routing_modules/0``).
DEFAULT_ROUTING_MODULES = [
    "mongoose_router_global",
    "mongoose_router_localdomain",
    "mongoose_router_external_localnode",
    "mongoose_router_external",
    "mongoose_router_dynamic_domains",
    "ejabberd_s2s",
]


def _default_routing_modules(value: list[str]) -> str | None:
    # Another list drops or reorders a step (without ejabberd_s2s: no federation); Suricate
    # cannot do that, and ignoring it would route what the operator meant not to.
    if value == DEFAULT_ROUTING_MODULES:
        return None
    return ("only MongooseIM's default list is accepted (Suricate's routing steps are fixed: "
            "local sessions, then services and components, then s2s); to turn federation "
            'off, set [s2s] default_policy = "deny"')


_ROUTE_SUBDOMAINS = Option(
    OneOf(["s2s"]),
    None,
    'With "s2s": a stanza to a subdomain of a served domain (sub.example.com while '
    "example.com is served) that no service or component of this server serves goes over "
    "s2s to the server of that domain. Unset: it is bounced with service-unavailable, as in "
    "MongooseIM (RFC 3920 §10.3: a server's subdomains are its own services).",
    default_doc="not set",
    example='"s2s"',
)


def _domain_cert_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                      ctx: Context) -> None:
    if out.get("keyfile") is None:
        out["keyfile"] = out.get("certfile")  # a combined PEM
    _check_tls_files(out, raw, path, ctx)  # as a listener's own certificate


_DOMAIN_CERT = Section(
    {
        "domain": Option(Str(), doc="A static host (general.hosts) or a host type."),
        "certfile": Option(FilePath(), doc="Certificate (PEM), with its chain."),
        "keyfile": Option(FilePath(), None, "Private key (PEM).",
                          default_doc="the value of `certfile`"),
    },
    doc="One domain's certificate.",
    post=_domain_cert_post,
)

_GENERAL = Section(
    {
        "loglevel": Option(OneOf(LOGLEVELS), "warning", "Verbosity of the log."),
        "hosts": Option(
            ListOf(Domain(), unique=True),
            None,
            "Statically served XMPP domains (lowercased). Required unless host_types is given.",
            default_doc="none",
        ),
        "host_types": Option(
            ListOf(Str(), unique=True), [], "Host types for dynamically added domains."
        ),
        "default_server_domain": Option(
            Domain(), doc="Domain used when no other applies; must be one of hosts."
        ),
        "domain_certfile": Option(
            ListOf(_DOMAIN_CERT),
            [],
            "A certificate per domain, chosen by the name the peer sends in SNI (RFC 6066 "
            "§3) on every TLS listener; the listener's own certificate serves the other "
            "names. `domain` is a static host, or a host type: then the certificate (naming "
            "those domains, or a wildcard) serves every domain of that host type, added at "
            "run time too. MongooseIM 5's option (6.4 has one certificate per listener); "
            "`keyfile` added, as 6.4.1 wants the key apart.",
            example='[{domain = "example.com", certfile = "example.crt", '
                    'keyfile = "example.key"}]',
        ),
        "language": Option(Str(), "en", "Default language of server-generated texts.", inert=True),
        "registration_timeout": Option(
            IntOrInfinity(min=0, unit="seconds"),
            600,
            "Minimum time between two registrations from one IP address (across all nodes "
            'with sm_backend = "redis": a Redis key with this time to live).',
        ),
        "hide_service_name": Option(
            Bool(),
            False,
            "When a peer sends invalid data before authenticating, close the connection "
            "without the stream header and error RFC 6120 asks for, hiding the server's identity.",
        ),
        "replaced_wait_timeout": Option(
            Int(min=1, unit="milliseconds"),
            2000,
            "How long a new session waits for the session it replaces to close.",
            inert=True,
        ),
        "sm_backend": Option(
            OneOf(["mnesia", "redis"], unavailable=["cets"],
                  unavailable_message=_CETS_SM),
            "mnesia",
            'Where the session table lives: "mnesia" is the embedded, in-process table; '
            '"redis" also records every session and the node membership in Redis '
            "(`outgoing_pools.redis.default`); see docs/cluster.md.",
        ),
        # A single 6.4 node keeps these in Mnesia; so does Suricate, in its own process.
        "s2s_backend": Option(
            OneOf(["mnesia"], unavailable=["cets"], unavailable_message=_CETS_LOCAL),
            "mnesia",
            "Where MongooseIM replicates its list of outgoing S2S connections.",
            inert=True,
            inert_reason="Suricate keeps its outgoing connections in its own process",
        ),
        "component_backend": Option(
            OneOf(["mnesia"], unavailable=["cets"], unavailable_message=_CETS_LOCAL),
            "mnesia",
            "Where MongooseIM replicates its list of connected components.",
            inert=True,
            inert_reason="Suricate keeps its components in its own process",
        ),
        "rdbms_server_type": Option(
            OneOf(["pgsql"], unavailable=["mssql"]),
            None,
            "Query variants of MongooseIM for one database (MSSQL through ODBC, PostgreSQL).",
            inert=True,
            inert_reason="Suricate's PostgreSQL queries need no hint",
        ),
        "cluster_address": Option(
            Str(),
            "127.0.0.1",
            'With `sm_backend = "redis"`: the IP address this node listens on for stanzas '
            "from other nodes, advertised to them through Redis (Suricate's counterpart of "
            "the Erlang distribution address); one that the other nodes reach.",
        ),
        "cluster_port": Option(
            Int(min=0, max=65535),
            0,
            "The TCP port of `cluster_address`; 0: any free port (each `--workers` worker "
            "takes its own).",
        ),

        "route_subdomains": _ROUTE_SUBDOMAINS,
        "routing_modules": Option(
            ListOf(Str(), unique=True),
            OMIT,
            "MongooseIM's routing steps (Erlang modules), in order. Suricate's router always "
            "takes the same steps in the same order: the list of 6.4's default "
            f"({', '.join(DEFAULT_ROUTING_MODULES)}) is accepted, with a warning; any other "
            "list is refused.",
            validators=[_default_routing_modules],
            default_doc="MongooseIM's six modules",
            inert=True,
            inert_reason="Suricate's router always routes to local sessions, then to "
            "services and components, then over s2s; it has no routing modules to choose",
        ),
        "http_server_name": Option(
            Str(),
            None,
            "The `Server` header of every HTTP response of every `[[listen.http]]` listener "
            "(MongooseIM's default is \"Cowboy\"; unset: aiohttp's own, "
            "\"Python/3.x aiohttp/3.y\").",
            default_doc="not set",
            example='"Apache"',
        ),
    },
    doc="Basic settings.",
    post=_general_post,
)

# --------------------------------------------------------------------------------------------
# [auth]


def _auth_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # The anonymous method needs its settings even when the table was left out.
    if "anonymous" in out["methods"] and out["anonymous"] is None:
        out["anonymous"] = _ANONYMOUS.normalize({}, join(path, "anonymous"), ctx)
    for name, section in (("dummy", _DUMMY), ("http", _HTTP_AUTH), ("ldap", _LDAP_AUTH)):
        if name in out["methods"] and out[name] is None:
            out[name] = section.normalize({}, join(path, name), ctx)
    for name in ("jwt", "external"):
        if name in out["methods"] and out[name] is None:
            ctx.error(join(path, name), f"missing required section (method '{name}' is enabled)")


_DUMMY = Section(
    {
        "base_time": Option(Int(min=0, unit="milliseconds"), 50,
                            "Fixed part of the delay before each answer."),
        "variance": Option(Int(min=0, unit="milliseconds"), 450,
                           "Random extra delay, up to this much."),
    },
    doc="Settings of the dummy method (load tests: every password is accepted).",
)

_HTTP_AUTH = Section(
    {
        "basic_auth": Option(Str(), OMIT, 'HTTP Basic credentials "user:password" sent to the '
                             "auth service.", default_doc="not set"),
    },
    doc="Settings of the http method (the service is `[outgoing_pools.http.auth]`).",
)


def _jwt_secret_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                     ctx: Context) -> None:
    if len(out) != 1:
        ctx.error(path, 'expected exactly one of "value", "file" or "env"')
    elif "env" in out and out["env"] not in os.environ:
        # Read when the server starts: a missing variable is reported with the config.
        ctx.error(join(path, "env"), f"environment variable {out['env']} is not set")


_JWT = Section(
    {
        "secret": Option(
            Section(
                {
                    "value": Option(Str(), OMIT, "The HMAC secret or public key itself."),
                    "file": Option(FilePath(), OMIT, "File holding the secret or public key."),
                    "env": Option(Str(), OMIT, "Environment variable holding the secret."),
                },
                post=_jwt_secret_post,
            ),
            doc="Where the signing secret (HS*) or public key (RS*, ES*) is.",
        ),
        "algorithm": Option(
            OneOf([f"{k}{n}" for k in ("HS", "RS", "ES") for n in ("256", "384", "386",
                                                                   "512")]),
            doc='Signature algorithm; 6.4\'s "386" spelling means 384.',
        ),
        "username_key": Option(Str(), doc="The claim naming the user."),
    },
    doc="Settings of the jwt method (the PLAIN password is a JSON Web Token).",
)

_EXTERNAL = Section(
    {
        "program": Option(Str(), doc="The extauth program (with arguments, space-separated)."),
        "instances": Option(Int(min=1), 1, "Copies of the program run."),
    },
    doc="Settings of the external method (ejabberd extauth protocol).",
)


def _uid_format_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                     ctx: Context) -> None:
    if str(out["format"]).count("%u") != 1:
        ctx.error(join(path, "format"), 'must contain "%u" exactly once')


def ldap_filter_problem(value: Any) -> str | None:
    """An RFC 4515 filter is one parenthesized item; catch the common slips (missing or
    unbalanced parentheses) at load time rather than at the first login."""
    text = str(value)
    if not text:
        return None
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or (depth == 0 and i < len(text) - 1):
            return "not an LDAP filter: unbalanced parentheses (RFC 4515)"
    if not text.startswith("(") or depth != 0:
        return 'not an LDAP filter: expected "(...)" with balanced parentheses (RFC 4515)'
    return None


def ldap_uids_option() -> Option:
    """The ``uids`` option of 6.4's LDAP sections (the ldap auth method, mod_vcard's ldap
    backend): attributes naming the user, each with the format holding the username."""
    return Option(
        ListOf(Section(
            {
                "attr": Option(Str(), doc="Attribute holding the username."),
                "format": Option(Str(), "%u",
                                 'How the attribute holds it; `%u` is the username '
                                 '(e.g. "%u@example.org").'),
            },
            post=_uid_format_post,
        ), nonempty=True),
        [{"attr": "uid", "format": "%u"}],
        "Attributes naming the user, any of which may match.",
        default_doc='[{attr = "uid", format = "%u"}]',
    )


_LDAP_AUTH = Section(
    {
        "pool_tag": Option(Str(), "default",
                           "The `[outgoing_pools.ldap.TAG]` pool used for searches."),
        "bind_pool_tag": Option(Str(), "bind",
                                "The pool used to bind as the user (checks the password); "
                                "its connections are used for nothing else."),
        "base": Option(Str(), doc="Base DN under which the users are searched."),
        "uids": ldap_uids_option(),
        "filter": Option(Str(nonempty=False), "",
                         'Extra RFC 4515 filter ANDed to the uid match, e.g. '
                         '"(objectClass=inetOrgPerson)".', validators=(ldap_filter_problem,)),
        "dn_filter": Option(
            Section({
                "filter": Option(Str(), doc="Filter searched after the user is found: "
                                 "`%u` username, `%d` domain, `%D` the user's DN, `%s` each "
                                 "value of `attributes` (read from the user's entry).",
                                 validators=(ldap_filter_problem,)),
                "attributes": Option(ListOf(Str()), [], "Attributes of the user's entry "
                                     "substituted for `%s`."),
            }),
            OMIT,
            "A second search that must find something for the user to be valid.",
            default_doc="not set",
        ),
        "local_filter": Option(
            Section({
                "operation": Option(OneOf(["equal", "notequal"]),
                                    doc="Whether the attribute must (equal) or must not "
                                    "(notequal) hold one of the values."),
                "attribute": Option(Str(), doc="Attribute of the user's entry."),
                "values": Option(ListOf(Str(), nonempty=True), doc="Values compared."),
            }),
            OMIT,
            "A check made by Suricate on the user's entry (e.g. a disabled account).",
            default_doc="not set",
        ),
        "deref": Option(OneOf(["never", "always", "finding", "searching"]), "never",
                        "Alias dereferencing during searches (RFC 4511 §4.5.1.3)."),
    },
    doc="Settings of the ldap method (PLAIN: the user's DN is searched, then bound with the "
    "password given).",
)


_ANONYMOUS = Section(
    {
        "allow_multiple_connections": Option(
            Bool(),
            False,
            "With `login_anon`: allow several connections with the same anonymous username "
            "(else a second login with a name in use is refused).",
        ),
        "protocol": Option(
            OneOf(["sasl_anon", "login_anon", "both"]),
            "sasl_anon",
            "`sasl_anon`: SASL ANONYMOUS; `login_anon`: PLAIN with any username no other "
            "method knows and any password; `both`.",
        ),
        "backend": Option(
            OneOf(["mnesia", "cets"]),
            "mnesia",
            "Where MongooseIM keeps the anonymous accounts.",
            inert=True,
            inert_reason="Suricate keeps an anonymous account in the memory of the node "
            "its sessions are on, for as long as they last",
        ),
    },
)

_AUTH = Section(
    {
        "methods": Option(
            ListOf(
                OneOf(
                    AUTH_METHODS,
                    UNAVAILABLE_AUTH_METHODS,
                    "method '{value}' is not available in this version",
                ),
                unique=True,
                item_paths=False,
            ),
            ["rdbms"],
            "Authentication methods, tried in order.",
        ),
        "sasl_mechanisms": Option(
            ListOf(
                OneOf(
                    SASL_MECHANISMS,
                    ["digest"],
                    "mechanism '{value}' is not available in this version",
                ),
                unique=True,
                item_paths=False,
            ),
            list(DEFAULT_SASL_MECHANISMS),
            "SASL mechanisms in advertisement order. The `_plus` variants need TLS (channel binding); "
            "`oauth` (X-OAUTH) is offered only over TLS with mod_auth_token enabled.",
        ),
        "sasl_external": Option(
            ListOf(OneOf(["standard", "common_name", "auth_id"]), unique=True, nonempty=True),
            ["standard"],
            "How SASL EXTERNAL (the pki method) maps a verified client certificate to a user: "
            "`standard`: its xmppAddr identities; `common_name`: its subject CN as the username; "
            "`auth_id`: whatever authzid the client asks for.",
        ),
        "max_users_per_domain": Option(
            IntOrInfinity(min=1),
            None,
            "Registered user limit per domain.",
            default_doc='"infinity"',
        ),
        "password": Option(
            Section(
                {
                    "format": Option(
                        OneOf(["scram", "plain"]), "scram", "How passwords are stored."
                    ),
                    "hash": Option(
                        ListOf(OneOf(PASSWORD_HASHES), unique=True, nonempty=True),
                        list(PASSWORD_HASHES),
                        "SCRAM hash functions stored (needed for the matching mechanisms).",
                    ),
                    "scram_iterations": Option(
                        Int(min=1),
                        10000,
                        "PBKDF2 iteration count for new SCRAM credentials "
                        "(RFC 7677 suggests at least 4096).",
                    ),
                }
            ),
            DEFAULTS,
            "Password storage.",
        ),
        "anonymous": Option(
            _ANONYMOUS,
            None,
            "Settings of the anonymous method.",
            default_doc="filled with defaults when anonymous is in methods",
        ),
        "rdbms": Option(
            Section(
                {
                    "users_number_estimate": Option(
                        Bool(),
                        False,
                        "Estimate user counts instead of counting (PostgreSQL).",
                        inert=True,
                    )
                }
            ),
            DEFAULTS,
            "Settings of the rdbms method.",
        ),
        "internal": Option(Section({}), DEFAULTS, "Settings of the internal method (none)."),
        "pki": Option(Section({}), DEFAULTS, "Settings of the pki method (none)."),
        "dummy": Option(_DUMMY, None, _DUMMY.doc,
                        default_doc="filled with defaults when dummy is in methods"),
        "http": Option(_HTTP_AUTH, None, _HTTP_AUTH.doc,
                       default_doc="filled with defaults when http is in methods"),
        "jwt": Option(_JWT, None, _JWT.doc, default_doc="required when jwt is in methods"),
        "external": Option(_EXTERNAL, None, _EXTERNAL.doc,
                           default_doc="required when external is in methods"),
        "ldap": Option(_LDAP_AUTH, None, _LDAP_AUTH.doc,
                       default_doc="required when ldap is in methods (for `base`)"),
    },
    doc="Client authentication.",
    post=_auth_post,
    unavailable={
        m: f"method '{m}' is not available in this version" for m in UNAVAILABLE_AUTH_METHODS
    },
)

# --------------------------------------------------------------------------------------------
# [s2s]

_S2S = Section(
    {
        "default_policy": Option(
            OneOf(["allow", "deny"]), "allow", "Whether to federate with unlisted servers."
        ),
        "host_policy": Option(
            ListOf(
                Section(
                    {
                        "host": Option(Domain(), doc="Remote domain."),
                        "policy": Option(OneOf(["allow", "deny"]), doc="Decision for it."),
                    }
                )
            ),
            [],
            "Per-domain exceptions to default_policy.",
        ),
        "shared": Option(
            Str(),
            None,
            "Server dialback secret (XEP-0185). When absent: on a single node one is generated "
            "at start-up; the nodes of a cluster (sm_backend = \"redis\", serve --workers) "
            "derive one from the cluster cookie in Redis, so a key made on one node verifies "
            "on any.",
        ),
        "stream_management": Option(
            Bool(),
            True,
            "XEP-0198 acknowledgements on s2s streams (no resumption): offered to incoming "
            "streams, enabled on outgoing ones when the peer offers it; a stanza the peer did "
            "not acknowledge when its stream ends is sent again over a new stream, or bounced "
            "with remote-server-timeout.",
        ),
        "outgoing": Option(
            Section(
                {
                    "ack_timeout": Option(
                        IntOrInfinity(min=1, unit="milliseconds"),
                        60000,
                        "With stream_management: how long the peer may take to answer an "
                        "ack request (<r/>) before the stream is closed and its "
                        "unacknowledged stanzas go over a new one.",
                    ),
                    "address": Option(
                        ListOf(
                            Section(
                                {
                                    "host": Option(Domain(), doc="Remote domain."),
                                    "ip_address": Option(IPAddress(), doc="Address to use."),
                                    "port": Option(
                                        Int(min=1, max=65535),
                                        None,
                                        "Port to use.",
                                        default_doc="outgoing.port",
                                    ),
                                }
                            )
                        ),
                        [],
                        "Fixed addresses for remote domains, bypassing DNS.",
                    ),
                    "connection_timeout": Option(
                        IntOrInfinity(min=1, unit="milliseconds"), 10000, "TCP connect timeout."
                    ),
                    "dns": Option(
                        Section(
                            {
                                "timeout": Option(
                                    Int(min=1, unit="seconds"), 10, "DNS query timeout."
                                ),
                                "retries": Option(Int(min=1), 2, "DNS query attempts."),
                            }
                        ),
                        DEFAULTS,
                        "DNS lookups.",
                    ),
                    "ip_versions": Option(
                        ListOf(OneOf([4, 6]), unique=True, nonempty=True),
                        [4, 6],
                        "IP versions tried, in order, for the addresses a name resolves to "
                        "(an address override is used as it is).",
                    ),
                    "max_retry_delay": Option(
                        Int(min=1, unit="seconds"),
                        300,
                        "Upper bound of the back-off between connection attempts.",
                    ),
                    "max_stanza_size": Option(
                        IntOrInfinity(min=1, unit="bytes"),
                        None,
                        "Largest accepted stanza.",
                        default_doc='"infinity"',
                    ),
                    "port": Option(Int(min=1, max=65535), 5269, "Default remote port."),
                    "shaper": Option(Str(), "none", "Shaper of outgoing connections."),
                    "state_timeout": Option(
                        Int(min=0, unit="milliseconds"), 5000,
                        "Negotiation step timeout; 0: no limit."
                    ),
                    "stream_timeout": Option(
                        IntOrInfinity(min=1, unit="milliseconds"),
                        600000,
                        "Idle time after which an outgoing stream is closed.",
                    ),
                    "tls": Option(
                        outgoing_tls(with_mode=True),
                        None,
                        "TLS of outgoing connections.",
                        default_doc="none (STARTTLS if offered, without a client certificate)",
                    ),
                }
            ),
            DEFAULTS,
            "Outgoing connections.",
        ),
    },
    doc="Federation settings.",
)

# --------------------------------------------------------------------------------------------
# [outgoing_pools]

_CONNECTION_KEYS_NOT_FOR_SQLITE = ("host", "port", "username", "password", "tls")


def _rdbms_connection_post(
    out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context
) -> None:
    if out["driver"] == "sqlite":
        # SQLite is embedded: a file and nothing else. A stray host or password is a sign of a
        # config written for another driver, so refuse it rather than ignore it.
        for key in _CONNECTION_KEYS_NOT_FOR_SQLITE:
            if key in raw:
                ctx.error(join(path, key), "not used by the sqlite driver")
        if out["database"] is None:
            ctx.error(join(path, "database"), "required for the sqlite driver (a file path)")
        else:
            out["database"] = FilePath(must_exist=False).normalize(
                out["database"], join(path, "database"), ctx
            )
        out["port"] = None
        return
    for key in ("host", "database", "username", "password"):
        if out[key] is None:
            ctx.error(join(path, key), f"required for the {out['driver']} driver")
    if out["port"] is None:
        out["port"] = 3306 if out["driver"] == "mysql" else 5432
    tls = out.get("tls")
    if isinstance(tls, dict):
        _rdbms_tls_check(out["driver"], tls, raw.get("tls") or {}, join(path, "tls"), ctx)


def _rdbms_tls_check(driver: str, tls: Mapping[str, Any], raw: Mapping[str, Any], path: str,
                     ctx: Context) -> None:
    """What the database's TLS cannot do here is refused: accepting it would connect in plain
    text, or check less than the operator asked for."""
    if driver == "mysql":
        ctx.error(path, "TLS to MySQL/MariaDB is " + NOT_AVAILABLE + ": the connection "
                  "would be plain text; remove tls (pgsql has it)")
        return
    if tls.get("verify_mode") == "selfsigned_peer":
        ctx.error(join(path, "verify_mode"), '"selfsigned_peer" is ' + NOT_AVAILABLE
                  + ' for the database: give its certificate as cacertfile with '
                  'verify_mode = "peer"')
    sni = raw.get("server_name_indication") or {}
    for key in ("enabled", "host"):
        if key in sni:
            ctx.error(join(join(path, "server_name_indication"), key),
                      f"{NOT_AVAILABLE} for the database: the name sent and checked is "
                      "connection.host")


_RDBMS_POOL = Section(
    {
        "scope": Option(
            OneOf(["global", "host_type"]),
            "global",
            "One pool, or one per host type.",
            inert=True,
        ),
        "workers": Option(Int(min=1), 10, "Number of connections."),
        "strategy": Option(
            OneOf(
                [
                    "best_worker",
                    "random_worker",
                    "next_worker",
                    "available_worker",
                    "next_available_worker",
                ]
            ),
            "best_worker",
            "How a worker is picked for a query.",
            inert=True,
        ),
        "call_timeout": Option(
            Int(min=1, unit="milliseconds"), 60000, "Timeout of a call to a worker.", inert=True
        ),
        "connection": Option(
            Section(
                {
                    "driver": Option(
                        OneOf(
                            ["pgsql", "mysql", "sqlite"],
                            ["cockroachdb", "odbc"],
                            "driver '{value}' is not available in this version",
                        ),
                        doc="Database driver: sqlite (an embedded file), pgsql (PostgreSQL) or "
                        "mysql (MySQL 8.0+ or MariaDB 10.5+); see docs/storage.md.",
                    ),
                    "host": Option(Str(), None, "Database server (pgsql, mysql)."),
                    "port": Option(
                        Int(min=1, max=65535),
                        None,
                        "Database port.",
                        default_doc="5432 (pgsql), 3306 (mysql)",
                    ),
                    "database": Option(
                        Str(),
                        None,
                        "Database name (pgsql, mysql) or file path (sqlite; relative to the config "
                        "file's directory, created when missing).",
                    ),
                    "username": Option(Str(), None, "User name (pgsql, mysql)."),
                    "password": Option(Str(nonempty=False), None, "Password (pgsql, mysql)."),
                    "query_timeout": Option(
                        Int(min=1, unit="milliseconds"), 5000, "Timeout of one query.", inert=True
                    ),
                    "keepalive_interval": Option(
                        Int(min=1, unit="seconds"),
                        None,
                        "Interval of keep-alive queries.",
                        inert=True,
                    ),
                    "max_start_interval": Option(
                        Int(min=1, unit="seconds"),
                        30,
                        "Upper bound of the back-off between connection attempts.",
                        inert=True,
                    ),
                    "tls": Option(
                        outgoing_tls(with_mode=False),
                        None,
                        "TLS to the database (pgsql only): `required = true` refuses a server "
                        "that does not offer TLS, false uses TLS where offered (as 6.4); "
                        "`verify_mode = \"peer\"` checks the server's chain against "
                        "`cacertfile` (the OS store when absent), and its name with "
                        "`server_name_indication.protocol = \"https\"`; `certfile`/`keyfile` "
                        "are a client certificate.",
                    ),
                },
                post=_rdbms_connection_post,
                unavailable={"settings": "ODBC is " + NOT_AVAILABLE + " (`settings` is an "
                             "ODBC connection string, and MSSQL is not supported); use "
                             'driver = "pgsql", "mysql" or "sqlite" with host, database, '
                             "username and password"},
            ),
            doc="How to connect.",
        ),
    },
    doc="An RDBMS connection pool.",
)

def _pool_common(workers: int) -> dict[str, Option]:
    return {
        "scope": Option(OneOf(["global", "host_type"]), "global",
                        "One pool, or one per host type.", inert=True),
        "workers": Option(Int(min=1), workers, "Number of connections kept open at most."),
        "strategy": Option(
            OneOf(["best_worker", "random_worker", "next_worker", "available_worker",
                   "next_available_worker"]),
            "best_worker", "How a worker is picked for a request.", inert=True),
        "call_timeout": Option(Int(min=1, unit="milliseconds"), 5000,
                               "Timeout of a call to a worker.", inert=True),
    }


def _http_url_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    if not str(out["host"]).startswith(("http://", "https://")):
        ctx.error(join(path, "host"), 'expected a URL starting with "http://" or "https://"')


_HTTP_POOL = Section(
    {
        **_pool_common(100),
        "connection": Option(
            Section(
                {
                    "host": Option(Str(), doc='Base URL of the service, e.g. '
                                   '"https://example.com:8443".'),
                    "path_prefix": Option(Str(nonempty=False), "/",
                                          "Prefix of every request path."),
                    "request_timeout": Option(Int(min=1, unit="milliseconds"), 2000,
                                              "Timeout of one request."),
                    "tls": Option(outgoing_tls(with_mode=False), None,
                                  "TLS options for https URLs, used by mod_event_pusher's "
                                  "http handlers and mod_push_service_mongoosepush "
                                  '(verify_mode "selfsigned_peer" verifies as "peer", the '
                                  "server_name_indication options are not applied); HTTP "
                                  "authentication (auth.http, mod_muc's http_auth) does not "
                                  "use them yet (docs/event_pusher.md)."),
                },
                post=_http_url_post,
            ),
            doc="Where requests go.",
        ),
    },
    doc="An HTTP client pool (used by `mod_event_pusher`'s http backend and "
    "`mod_push_service_mongoosepush`).",
)

def _ldap_connection_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                          ctx: Context) -> None:
    # 6.4: TLS when a tls table is given; "encrypt" is MongooseIM's older spelling.
    encrypted = "tls" in out or out.pop("encrypt", "none") == "tls"
    out.pop("encrypt", None)
    out["encrypted"] = encrypted
    if "tls" not in out and encrypted:
        out["tls"] = outgoing_tls(with_mode=False).normalize({}, join(path, "tls"), ctx)
    if out.get("port") is None:
        out["port"] = 636 if encrypted else 389


_LDAP_POOL = Section(
    {
        **_pool_common(5),
        "connection": Option(
            Section(
                {
                    "servers": Option(ListOf(Str(), nonempty=True), ["localhost"],
                                      "Directory servers, tried in order."),
                    "port": Option(Int(min=1, max=65535), None, "Port of the servers.",
                                   default_doc="389, or 636 with TLS"),
                    "rootdn": Option(Str(nonempty=False), "",
                                     "DN bound as for searches; empty: anonymous."),
                    "password": Option(Str(nonempty=False), "", "Password of `rootdn`."),
                    "encrypt": Option(OneOf(["none", "tls"]), OMIT,
                                      'MongooseIM\'s older switch: "tls" is LDAPS with the '
                                      "default TLS options.", default_doc="not set"),
                    "tls": Option(outgoing_tls(with_mode=False), OMIT,
                                  "TLS options; present: the connection is LDAP over TLS "
                                  "(LDAPS, port 636 by default).", default_doc="not set"),
                    "connect_interval": Option(Int(min=1, unit="milliseconds"), 10000,
                                               "After a failed connection, how long requests "
                                               "fail at once before the next attempt."),
                },
                post=_ldap_connection_post,
            ),
            DEFAULTS,
            "How to connect.",
        ),
    },
    doc="An LDAP connection pool; the ldap auth method uses `default` (searches) and `bind` "
    "(password checks).",
)


_RABBIT_POOL = Section(
    {
        **_pool_common(20),
        "connection": Option(
            Section(
                {
                    "host": Option(Str(), "localhost", "RabbitMQ server."),
                    "port": Option(Int(min=1, max=65535), 5672, "AMQP port."),
                    "username": Option(Str(), "guest", "User name."),
                    "password": Option(Str(nonempty=False), "guest", "Password."),
                    "virtual_host": Option(Str(), "/", "AMQP virtual host."),
                    "confirms_enabled": Option(
                        Bool(), False, "Wait for the broker to confirm each publication."),
                    "max_worker_queue_len": Option(
                        IntOrInfinity(min=0), 1000,
                        "Events waiting to be published at most; more are dropped and counted."),
                },
            ),
            DEFAULTS,
            "How to connect.",
        ),
    },
    doc="A RabbitMQ (AMQP 0-9-1) connection pool (used by `mod_event_pusher`'s rabbit "
    "backend through the tag `event_pusher`).",
)

def _host_ports(addresses: list[str]) -> str | None:
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f'"{address}" is not "host:port"'
    return None


_REDIS_POOL = Section(
    {
        **_pool_common(10),
        "connection": Option(
            Section(
                {
                    "host": Option(Str(), "127.0.0.1", "Redis server."),
                    "port": Option(Int(min=1, max=65535), 6379, "Redis port."),
                    "database": Option(Int(min=0), 0, "Redis logical database number."),
                    "password": Option(Str(nonempty=False), "", "Password (AUTH); empty: none."),
                    "sentinels": Option(
                        ListOf(Str(), unique=True), [],
                        'Redis Sentinel addresses, each "host:port" (eredis\' `endpoints`). '
                        "Given: the server is the master Sentinel names for `service_name`, "
                        "found again after a failover, and `host`/`port` are not used; see "
                        "docs/cluster.md.",
                        validators=[_host_ports], example='["10.0.0.5:26379", "10.0.0.6:26379"]'),
                    "service_name": Option(
                        Str(), "mymaster",
                        "With `sentinels`: the master group Sentinel monitors "
                        "(`sentinel monitor <name> ...`; eredis' `master_group`)."),
                    "sentinel_password": Option(
                        Str(nonempty=False), "",
                        "With `sentinels`: the Sentinels' own password (`requirepass` of the "
                        "Sentinel processes); empty: none. `password` stays the master's."),
                },
                unavailable={
                    "tls": "TLS to Redis is " + NOT_AVAILABLE + " (nor in MongooseIM 6.4: "
                    "it came with 6.5); reach Redis over loopback or a private network, or "
                    "through a TLS tunnel (stunnel) on this host",
                    # Redis Cluster: docs/cluster.md, "Redis Sentinel, not Redis Cluster".
                    "cluster": "Redis Cluster is not supported: the session table's Lua "
                    "scripts touch the keys of several users at once, which Redis Cluster "
                    "accepts only within one hash slot; use one Redis, or Sentinel "
                    "(`sentinels`) for failover",
                },
            ),
            DEFAULTS,
            "How to connect.",
        ),
    },
    doc='A Redis connection pool; the `default` tag holds the session table when '
    '`general.sm_backend = "redis"`.',
)


_OUTGOING_POOLS = Section(
    {
        "rdbms": Option(
            MapOf(_RDBMS_POOL, key_doc="TAG"),
            {},
            "RDBMS pools by tag; the `default` tag is used by auth and modules.",
        ),
        "http": Option(MapOf(_HTTP_POOL, key_doc="TAG"), {}, "HTTP client pools by tag."),
        "rabbit": Option(MapOf(_RABBIT_POOL, key_doc="TAG"), {},
                         "RabbitMQ pools by tag; `mod_event_pusher` uses `event_pusher`."),
        "redis": Option(MapOf(_REDIS_POOL, key_doc="TAG"), {},
                        'Redis pools by tag; `default` holds the session table with '
                        '`sm_backend = "redis"`.'),
        "ldap": Option(MapOf(_LDAP_POOL, key_doc="TAG"), {},
                       "LDAP pools by tag; the ldap auth method uses `default` and `bind`."),
    },
    doc="Connection pools to external services.",
    unavailable={
        # In 6.4 only mod_mam's cassandra and elasticsearch backends use these pools.
        "cassandra": "cassandra pools are " + NOT_AVAILABLE + ": no module stores in "
        "Cassandra here; mod_mam archives through the RDBMS pool (PostgreSQL, MySQL or "
        "SQLite, docs/mam.md)",
        "elastic": "elastic pools are " + NOT_AVAILABLE + ": no module stores in "
        "Elasticsearch here; mod_mam archives through the RDBMS pool, with full-text search "
        "(modules.mod_mam.full_text_search)",
    },
    unknown_message="unknown pool type",
)

# --------------------------------------------------------------------------------------------
# [shaper], [acl], [access], [modules]

_SHAPER = MapOf(
    Section({"max_rate": Option(Int(min=1, unit="bytes per second"), doc="Allowed rate.")}),
    doc="Traffic shapers by name.",
    defaults=DEFAULT_SHAPERS,
    reserved={"none": "the name 'none' is reserved (it means no shaping)"},
)


def _acl_pattern_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # Exact, regexp and glob conditions on the same JID part would be ANDed, which is never
    # what was meant; MongooseIM refuses such combinations too.
    for part in ("user", "server", "resource"):
        given = [k for k in (part, f"{part}_regexp", f"{part}_glob") if k in raw]
        if len(given) > 1:
            ctx.error(join(path, given[1]), f"cannot be combined with {given[0]}")


_ACL_PATTERN = Section(
    {
        "match": Option(
            OneOf(["all", "none", "current_domain", "any_hosted_domain"]),
            "current_domain",
            "Which domains match: the current one, any served one, all, or none. "
            "Combined (AND) with the other conditions; `{}` alone means every user of the "
            "current domain.",
        ),
        "user": Option(LocalPart(), None, "Exact user part (lowercased, as JIDs compare)."),
        "server": Option(Domain(), None, "Exact domain."),
        "resource": Option(Str(), None, "Exact resource."),
        "user_regexp": Option(Regexp(), None, "Regexp searched in the user part, ignoring "
                              "case (JID user parts are lowercase)."),
        "server_regexp": Option(Regexp(), None, "Regexp searched in the domain, ignoring case."),
        "resource_regexp": Option(Regexp(), None, "Regexp searched in the resource."),
        "user_glob": Option(Str(), None, "Shell-style glob matching the whole user part, "
                            "ignoring case."),
        "server_glob": Option(Str(), None, "Glob matching the whole domain, ignoring case."),
        "resource_glob": Option(Str(), None, "Glob matching the whole resource."),
    },
    doc="One pattern; all its conditions must hold.",
    post=_acl_pattern_post,
)

_PREDEFINED_ACL = {
    name: [dict({"match": name}, **dict.fromkeys(ACL_CONDITIONS))] for name in ("all", "none")
}

_ACL = MapOf(
    ListOf(_ACL_PATTERN),
    doc="Access classes: a name and a list of patterns (a JID in any of them is in the class).",
    defaults=_PREDEFINED_ACL,
    reserved={n: f"'{n}' is predefined and cannot be redefined" for n in ("all", "none")},
)

_ACCESS_CLAUSES = ListOf(
    Section(
        {
            "acl": Option(Str(), doc='Access class name (or "all"/"none"). A class that [acl] '
                          "does not define matches nobody, as in MongooseIM: accepted, with a "
                          "warning."),
            "value": Option(
                AnyScalar(), doc='Result ("allow", "deny", a number, a shaper...).'
            ),
        }
    )
)

_ACCESS = MapOf(
    _ACCESS_CLAUSES,
    doc="Access rules: ordered clauses; the first whose class matches gives the value.",
    defaults=DEFAULT_ACCESS,
)

_ACCESS_RULES = MapOf(_ACCESS_CLAUSES, doc="Access rules.")

class ModulesSpec(Spec):
    """`[modules]`: one table per enabled module, each validated by the spec its module
    declares (`Module.options`), looked up in the module catalogue by section name."""

    doc = "Extension modules; a module is enabled by its `[modules.NAME]` table."

    def __init__(self, catalog: ModuleCatalog, unavailable: Mapping[str, str]) -> None:
        self.catalog = catalog
        self.unavailable = dict(unavailable)

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self._wrong_type(value, path, ctx)
        before = len(ctx.problems)
        result: dict[str, Any] = {}
        for name, raw in value.items():
            sub = join(path, name)
            if name in self.catalog:
                try:
                    section = module_options(self.catalog, name)
                except ModuleNotLoadable as exc:
                    ctx.error(sub, str(exc))
                    continue
                result[name] = section.normalize(raw, sub, ctx)
            elif name in self.unavailable:
                ctx.error(sub, self.unavailable[name])
            else:
                ctx.error(sub, "unknown module")
        return INVALID if len(ctx.problems) > before else result

    def describe(self) -> str:
        return "a table of module tables"


_MODULES = ModulesSpec(
    CATALOG,
    UNAVAILABLE_MODULES,
)

_INTERNAL_DATABASES = Section(
    {
        # 6.4's default config has an empty [internal_databases.mnesia]; what MongooseIM keeps
        # there (sessions, stream management, BOSH) lives in Suricate's process already.
        "mnesia": Option(
            Section({}),
            OMIT,
            "MongooseIM's Mnesia tables (no options).",
            inert=True,
            inert_reason="Suricate keeps this data in its own process "
            '(or in Redis with sm_backend = "redis")',
        ),
    },
    doc="Internal databases of MongooseIM's nodes. Suricate needs none.",
    unavailable={
        "cets": "CETS is " + NOT_AVAILABLE + "; nodes share their sessions through Redis "
        '(general.sm_backend = "redis", docs/cluster.md)',
    },
)

# --------------------------------------------------------------------------------------------
# [services]: the two that 6.4 configurations carry; Suricate does their work without them.

_SERVICES = Section(
    {
        "service_mongoose_system_metrics": Option(
            Section(
                {
                    "report": Option(Bool(), True, "Send anonymous usage reports."),
                    "initial_report": Option(
                        Int(min=0, unit="milliseconds"), 300_000, "Delay of the first report."
                    ),
                    "periodic_report": Option(
                        Int(min=1, unit="milliseconds"), 10_800_000, "Time between reports."
                    ),
                    "tracking_id": Option(
                        Section(
                            {
                                "id": Option(Str(), doc="Tracking ID."),
                                "secret": Option(Str(), doc="Its secret."),
                            }
                        ),
                        OMIT,
                        "Where MongooseIM sends the reports.",
                    ),
                }
            ),
            OMIT,
            "MongooseIM's anonymous usage reporting (in its default config).",
            inert=True,
            inert_reason="Suricate sends no usage reports",
        ),
        "service_domain_db": Option(
            Section(
                {
                    "db_pool": Option(Str(), "global", "The RDBMS pool holding the domains."),
                    "event_cleaning_interval": Option(
                        Int(min=1, unit="seconds"), 1800, "How often old events are removed."
                    ),
                    "event_max_age": Option(
                        Int(min=1, unit="seconds"), 7200, "Age of the events removed."
                    ),
                }
            ),
            OMIT,
            "MongooseIM's store of dynamic domains (`general.host_types`).",
            inert=True,
            inert_reason="Suricate always keeps dynamic domains in the database; the other "
            "nodes of a cluster re-read them when one changes them, and every 10 s",
        ),
    },
    doc="Services of a MongooseIM node.",
    unavailable={"service_translations": "service_translations is " + NOT_AVAILABLE
                 + ": Suricate's server texts are in English only (general.language has no "
                 "effect either); remove it"},
    unknown_message="unknown service",
)

_INSTRUMENTATION = Section(
    {
        "probe_interval": Option(
            Int(min=1, unit="seconds"),
            15,
            "How often system probes (uptime, memory, "
            "connections, event-loop lag, session counts) are measured.",
        ),
        "prometheus": Option(
            Section({}, doc="Keep every event in memory for `mongoose_prometheus_handler`."),
            OMIT,
            "Enables the Prometheus handler (an empty table); serve it with a "
            "`[[listen.http.handlers.mongoose_prometheus_handler]]`.",
        ),
        "log": Option(
            Section({"level": Option(OneOf(LOGLEVELS), "debug", "Level of the event lines.")}),
            OMIT,
            "Enables the log handler: one log line per event.",
        ),
    },
    doc="Instrumentation: events with labels and typed measurements, sent to the handlers "
    "whose tables are present. Without handlers nothing is measured.",
    unavailable={"exometer": "the exometer handler is " + NOT_AVAILABLE + " (exometer is an "
                 "Erlang metrics library; Suricate has no Graphite reporter either): use "
                 "[instrumentation.prometheus] with a mongoose_prometheus_handler, whose "
                 "metric names and labels are 6.4's, or [instrumentation.log]"},
)

def _root_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    general, pools = out.get("general") or {}, out.get("outgoing_pools") or {}
    if general.get("sm_backend") == "redis" and "default" not in pools.get("redis", {}):
        ctx.error(join(join(path, "general"), "sm_backend"),
                  '"redis" needs a pool [outgoing_pools.redis.default]')
    _host_config_post(out, raw, ctx)


# --------------------------------------------------------------------------------------------
# [[host_config]] (MongooseIM 6.4 doc/configuration/host_config.md)

#: 6.4's rule for host_config.auth: giving any of these replaces all of them (the others not
#: given take their defaults); the other options replace only themselves.
AUTH_REPLACED_TOGETHER = ("sasl_external", "password", "rdbms", "ldap", "jwt", "http",
                          "internal", "pki", "dummy")


class SameAs(Spec):
    """``inner``, documented as "the same as ``as_path``" (host_config repeats whole
    sections whose reference is already written once)."""

    def __init__(self, inner: Spec, as_path: str) -> None:
        self.inner = inner
        self.as_path = as_path
        self.doc = getattr(inner, "doc", "")

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        return self.inner.normalize(value, path, ctx)

    def describe(self) -> str:
        return f"the same as `{self.as_path}`"


class RawTable(Spec):
    """A table kept as written, normalized later by whoever knows what to merge it with
    (``host_config[N].auth`` is merged with the top-level ``[auth]`` first)."""

    doc = ""

    def normalize(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self._wrong_type(value, path, ctx)
        return dict(value)

    def describe(self) -> str:
        return "a table"


def merged_auth_raw(top: Mapping[str, Any], host: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[auth]`` a host sees, as text: 6.4 replaces the options of
    ``AUTH_REPLACED_TOGETHER`` as a group when the host gives any of them, and the others
    (methods, sasl_mechanisms, anonymous, external.instances, ...) one by one."""
    merged = {k: v for k, v in top.items()}
    if any(k in host for k in AUTH_REPLACED_TOGETHER) or "program" in host.get("external", {}):
        for key in AUTH_REPLACED_TOGETHER:
            merged.pop(key, None)
        if isinstance(merged.get("external"), dict):
            merged["external"] = {k: v for k, v in merged["external"].items()
                                  if k != "program"}
    for key, value in host.items():
        if key == "external" and isinstance(value, dict) \
                and isinstance(merged.get("external"), dict):
            merged["external"] = {**merged["external"], **value}
        else:
            merged[key] = value
    return merged


def _host_config_post(out: dict[str, Any], raw: Mapping[str, Any], ctx: Context) -> None:
    """Each host's ``auth``: merged with the top-level ``[auth]`` as text, then validated
    whole at ``host_config[N].auth`` (the host names are checked by the loader)."""
    raw_auth: Mapping[str, Any] = raw["auth"] if isinstance(raw.get("auth"), dict) else {}
    for i, entry in enumerate(out.get("host_config") or []):
        if "auth" in entry:
            merged = merged_auth_raw(raw_auth, entry["auth"])
            auth = _AUTH.normalize(merged, join(f"host_config[{i}]", "auth"), ctx)
            if auth is not INVALID:
                entry["auth"] = auth


def _host_s2s_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                   ctx: Context) -> None:
    # Only what was written: the host's values override the top-level ones key by key.
    for key in list(out):
        if key not in raw:
            del out[key]


_HOST_CONFIG = Section(
    {
        "host": Option(Domain(), OMIT, "The domain (one of general.hosts) configured here.",
                       default_doc="either host or host_type"),
        "host_type": Option(Str(), OMIT, "The host type (one of general.host_types) "
                            "configured here: its dynamic domains.",
                            default_doc="either host or host_type"),
        "general": Option(
            Section(
                {"replaced_wait_timeout": _GENERAL.options["replaced_wait_timeout"],
                 "route_subdomains": dataclasses.replace(
                     _ROUTE_SUBDOMAINS, default=OMIT,
                     default_doc="the top-level general.route_subdomains")},
                unknown_message="not allowed per host (6.4 allows replaced_wait_timeout "
                "and route_subdomains)",
            ),
            OMIT, "Overrides of [general] for this host.", default_doc="not set"),
        "auth": Option(SameAs(RawTable(), "auth"), OMIT,
                       "Overrides of [auth]: any of sasl_external, password.*, and the "
                       "methods' tables (rdbms, ldap, jwt, http, ...) replaces all of these "
                       "(repeat what should stay); methods, sasl_mechanisms, anonymous.* and "
                       "external.instances replace only themselves.", default_doc="not set"),
        "modules": Option(SameAs(_MODULES, "modules"), OMIT,
                          "The modules of this host: replaces [modules] completely.",
                          default_doc="the top-level modules"),
        "acl": Option(SameAs(MapOf(ListOf(_ACL_PATTERN)), "acl"), OMIT,
                      "Access classes merged with [acl]: a class defined in both is the "
                      "union of both.", default_doc="not set"),
        "access": Option(SameAs(_ACCESS_RULES, "access"), OMIT,
                         "Access rules merged with [access]: the host's clauses go after the "
                         "top-level ones, before a final catch-all {acl = \"all\"} clause.",
                         default_doc="not set"),
        "s2s": Option(
            Section(
                {k: dataclasses.replace(_S2S.options[k], default_doc=f"the top-level s2s.{k}")
                 for k in ("default_policy", "host_policy", "shared")},
                post=_host_s2s_post,
                unknown_message="not allowed per host (default_policy, host_policy, shared)",
            ),
            OMIT,
            "Overrides of [s2s]; host_policy entries override the top-level ones host by "
            "host.", default_doc="not set"),
    },
    doc="Per-domain or per-host-type overrides.",
)


ROOT = Section(
    {
        "general": Option(_GENERAL, doc=_GENERAL.doc),
        "listen": Option(_listen(), DEFAULTS, "Listeners."),
        "auth": Option(_AUTH, DEFAULTS, _AUTH.doc),
        "s2s": Option(_S2S, DEFAULTS, _S2S.doc),
        "outgoing_pools": Option(_OUTGOING_POOLS, DEFAULTS, _OUTGOING_POOLS.doc),
        "shaper": Option(_SHAPER, DEFAULTS, _SHAPER.doc),
        "acl": Option(_ACL, DEFAULTS, _ACL.doc),
        "access": Option(_ACCESS, DEFAULTS, _ACCESS.doc),
        "modules": Option(_MODULES, DEFAULTS, _MODULES.doc),
        "internal_databases": Option(_INTERNAL_DATABASES, DEFAULTS, _INTERNAL_DATABASES.doc),
        "services": Option(_SERVICES, DEFAULTS, _SERVICES.doc),
        "instrumentation": Option(_INSTRUMENTATION, OMIT, _INSTRUMENTATION.doc),
        "host_config": Option(ListOf(_HOST_CONFIG), [], _HOST_CONFIG.doc),
    },
    doc="The whole file.",
    post=_root_post,
    unknown_message="unknown section",
)
