"""Configuration loader: one accepting and one refusing case per option, errors by TOML path."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from suricate.config import (
    ConfigError,
    Problem,
    load_config,
    load_config_with_warnings,
    parse_config,
    parse_config_with_warnings,
)
from suricate.net.certs import ensure_self_signed

GENERAL = """
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
"""


@pytest.fixture
def certdir(tmp_path: Path) -> Path:
    """A directory with a throwaway self-signed key.pem, cert.pem (the certificate followed by
    its key: a combined PEM, so that cert.pem alone is a usable certfile), ca.pem (the
    certificate alone) and crl.pem (its CA's empty revocation list)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "cert.pem").write_bytes(pem + key_pem)
    (tmp_path / "ca.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    # crl.pem: an empty revocation list of that certificate (tls.crl_files reads it)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return tmp_path


def parse(text: str, base_dir: Path | None = None, general: bool = True) -> dict[str, Any]:
    body = textwrap.dedent(text)
    if general:
        # Tests of [general] options extend the base section instead of declaring it twice.
        if body.startswith("[general]\n"):
            body = GENERAL + body[len("[general]\n") :]
        else:
            body = GENERAL + body
    return parse_config(body, base_dir or Path("/nonexistent"))


def problems(text: str, base_dir: Path | None = None, general: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, base_dir, general)
    return [str(p) for p in info.value.problems]


def refused(text: str, expected: str, base_dir: Path | None = None) -> None:
    found = problems(text, base_dir)
    assert expected in found, found


# --------------------------------------------------------------------------------------------
# Defaults and the overall shape


def test_minimal_config_has_every_section_with_defaults() -> None:
    cfg = parse("")
    assert set(cfg) == {
        "general",
        "listen",
        "auth",
        "s2s",
        "outgoing_pools",
        "shaper",
        "acl",
        "access",
        "modules",
        "internal_databases",
        "services",
        "host_config",
    }
    assert cfg["general"] == {
        "loglevel": "warning",
        "hosts": ["localhost"],
        "host_types": [],
        "default_server_domain": "localhost",
        "domain_certfile": [],
        "language": "en",
        "registration_timeout": 600,
        "hide_service_name": False,
        "replaced_wait_timeout": 2000,
        "sm_backend": "mnesia",
        "s2s_backend": "mnesia",
        "component_backend": "mnesia",
        "rdbms_server_type": None,
        "cluster_address": "127.0.0.1",
        "cluster_port": 0,
        "route_subdomains": None,
        "http_server_name": None,
    }
    assert cfg["listen"] == {"c2s": [], "s2s": [], "component": [], "http": []}
    assert cfg["modules"] == {}
    assert cfg["shaper"] == {"normal": {"max_rate": 16384}, "fast": {"max_rate": 50000}}
    assert cfg["access"]["c2s"] == [{"acl": "all", "value": "allow"}]
    assert cfg["access"]["register"] == [{"acl": "all", "value": "allow"}]
    assert cfg["access"]["max_user_sessions"] == [{"acl": "all", "value": 10}]
    assert cfg["access"]["max_user_offline_messages"] == [{"acl": "all", "value": 100}]
    assert set(cfg["acl"]) == {"all", "none"}
    assert cfg["auth"]["methods"] == ["rdbms"]
    assert cfg["auth"]["anonymous"] is None
    assert cfg["auth"]["password"] == {
        "format": "scram",
        "hash": ["sha", "sha224", "sha256", "sha384", "sha512"],
        "scram_iterations": 10000,
    }
    assert cfg["auth"]["sasl_mechanisms"][0] == "scram_sha512_plus"
    # MongooseIM 6.4's default list ends with oauth (X-OAUTH, offered with mod_auth_token)
    assert cfg["auth"]["sasl_mechanisms"][-3:] == ["plain", "anonymous", "oauth"]
    assert cfg["s2s"]["outgoing"]["port"] == 5269
    assert cfg["s2s"]["outgoing"]["dns"] == {"timeout": 10, "retries": 2}
    assert cfg["outgoing_pools"] == {"rdbms": {}, "http": {}, "rabbit": {}, "redis": {},
                                     "ldap": {}}


def test_c2s_listener_has_every_option() -> None:
    cfg = parse("[[listen.c2s]]\nport = 5222\n")
    assert cfg["listen"]["c2s"] == [
        {
            "port": 5222,
            "ip_address": "0.0.0.0",
            "ip_version": 4,
            "proto": "tcp",
            "hibernate_after": 0,
            "backlog": 1024,
            "max_connections": None,
            "num_acceptors": 100,
            "reuse_port": False,
            "proxy_protocol": False,
            "shaper": "none",
            "max_stanza_size": None,
            "state_timeout": 5000,
            "tls": None,
            "access": "all",
            "backwards_compatible_session": True,
            "allowed_auth_methods": None,
            "tcp_keepalive": 300,
            "tcp_user_timeout": 0,
        }
    ]


# --------------------------------------------------------------------------------------------
# Table-driven option checks: (TOML, path in the result, expected normalized value)

ACCEPTED: list[tuple[str, tuple[Any, ...], Any]] = [
    ('[general]\nloglevel = "debug"', ("general", "loglevel"), "debug"),
    ("[general]\nregistration_timeout = 10", ("general", "registration_timeout"), 10),
    ('[general]\nregistration_timeout = "infinity"', ("general", "registration_timeout"), None),
    ("[general]\nhide_service_name = true", ("general", "hide_service_name"), True),
    ('[general]\nlanguage = "pl"', ("general", "language"), "pl"),
    ("[general]\nreplaced_wait_timeout = 10", ("general", "replaced_wait_timeout"), 10),
    ("[[listen.c2s]]\nport = 5223", ("listen", "c2s", 0, "port"), 5223),
    ('[[listen.c2s]]\nport = 1\nip_address = "::1"', ("listen", "c2s", 0, "ip_version"), 6),
    ("[[listen.c2s]]\nport = 1\nip_version = 6", ("listen", "c2s", 0, "ip_address"), "::"),
    ('[[listen.c2s]]\nport = 1\nproto = "tcp"', ("listen", "c2s", 0, "proto"), "tcp"),
    ("[[listen.c2s]]\nport = 1\nbacklog = 5", ("listen", "c2s", 0, "backlog"), 5),
    ("[[listen.c2s]]\nport = 1\nmax_connections = 9", ("listen", "c2s", 0, "max_connections"), 9),
    (
        '[[listen.c2s]]\nport = 1\nmax_connections = "infinity"',
        ("listen", "c2s", 0, "max_connections"),
        None,
    ),
    ("[[listen.c2s]]\nport = 1\nnum_acceptors = 3", ("listen", "c2s", 0, "num_acceptors"), 3),
    ("[[listen.c2s]]\nport = 1\nreuse_port = true", ("listen", "c2s", 0, "reuse_port"), True),
    (
        "[[listen.c2s]]\nport = 1\nproxy_protocol = true",
        ("listen", "c2s", 0, "proxy_protocol"),
        True,
    ),
    ('[[listen.c2s]]\nport = 1\nshaper = "normal"', ("listen", "c2s", 0, "shaper"), "normal"),
    (
        "[[listen.c2s]]\nport = 1\nmax_stanza_size = 65536",
        ("listen", "c2s", 0, "max_stanza_size"),
        65536,
    ),
    ("[[listen.c2s]]\nport = 1\nstate_timeout = 1", ("listen", "c2s", 0, "state_timeout"), 1),
    ("[[listen.c2s]]\nport = 1\nhibernate_after = 9", ("listen", "c2s", 0, "hibernate_after"), 9),
    ('[[listen.c2s]]\nport = 1\naccess = "c2s"', ("listen", "c2s", 0, "access"), "c2s"),
    (
        "[[listen.c2s]]\nport = 1\nbackwards_compatible_session = false",
        ("listen", "c2s", 0, "backwards_compatible_session"),
        False,
    ),
    (
        '[[listen.c2s]]\nport = 1\nallowed_auth_methods = ["rdbms"]',
        ("listen", "c2s", 0, "allowed_auth_methods"),
        ["rdbms"],
    ),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\nconflict_behaviour = "kick_old"',
        ("listen", "component", 0, "conflict_behaviour"),
        "kick_old",
    ),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\ncheck_from = false',
        ("listen", "component", 0, "check_from"),
        False,
    ),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\nhidden_components = true',
        ("listen", "component", 0, "hidden_components"),
        True,
    ),
    ('[s2s]\ndefault_policy = "deny"', ("s2s", "default_policy"), "deny"),
    (
        '[s2s]\nhost_policy = [{host = "Evil.com", policy = "deny"}]',
        ("s2s", "host_policy"),
        [{"host": "evil.com", "policy": "deny"}],
    ),
    ('[s2s]\nshared = "secret"', ("s2s", "shared"), "secret"),
    (
        '[s2s.outgoing]\naddress = [{host = "a.com", ip_address = "127.0.0.2"}]',
        ("s2s", "outgoing", "address"),
        [{"host": "a.com", "ip_address": "127.0.0.2", "port": None}],
    ),
    (
        "[s2s.outgoing]\nconnection_timeout = 5",
        ("s2s", "outgoing", "connection_timeout"),
        5,
    ),
    ("[s2s.outgoing]\ndns.timeout = 3", ("s2s", "outgoing", "dns", "timeout"), 3),
    ("[s2s.outgoing]\ndns.retries = 5", ("s2s", "outgoing", "dns", "retries"), 5),
    ("[s2s.outgoing]\nip_versions = [6]", ("s2s", "outgoing", "ip_versions"), [6]),
    ("[s2s.outgoing]\nmax_retry_delay = 5", ("s2s", "outgoing", "max_retry_delay"), 5),
    ("[s2s.outgoing]\nport = 5270", ("s2s", "outgoing", "port"), 5270),
    ('[s2s.outgoing]\nshaper = "fast"', ("s2s", "outgoing", "shaper"), "fast"),
    ("[s2s.outgoing]\nstream_timeout = 5", ("s2s", "outgoing", "stream_timeout"), 5),
    ('[s2s.outgoing]\ntls.mode = "tls"', ("s2s", "outgoing", "tls", "mode"), "tls"),
    (
        "[s2s.outgoing]\ntls.server_name_indication.enabled = false",
        ("s2s", "outgoing", "tls", "server_name_indication", "enabled"),
        False,
    ),
    ('[auth]\nmethods = ["internal", "anonymous"]', ("auth", "methods"), ["internal", "anonymous"]),
    (
        '[auth]\nsasl_mechanisms = ["plain", "external"]',
        ("auth", "sasl_mechanisms"),
        ["plain", "external"],
    ),
    ('[auth]\nsasl_external = ["auth_id"]', ("auth", "sasl_external"), ["auth_id"]),
    ("[auth]\nmax_users_per_domain = 5", ("auth", "max_users_per_domain"), 5),
    ('[auth]\npassword.format = "plain"', ("auth", "password", "format"), "plain"),
    ('[auth]\npassword.hash = ["sha256"]', ("auth", "password", "hash"), ["sha256"]),
    ("[auth]\npassword.scram_iterations = 4096", ("auth", "password", "scram_iterations"), 4096),
    (
        '[auth]\nmethods = ["anonymous"]',
        ("auth", "anonymous"),
        {"allow_multiple_connections": False, "protocol": "sasl_anon", "backend": "mnesia"},
    ),
    (
        '[auth]\nanonymous.protocol = "both"',
        ("auth", "anonymous", "protocol"),
        "both",
    ),
    (
        "[auth]\nrdbms.users_number_estimate = true",
        ("auth", "rdbms", "users_number_estimate"),
        True,
    ),
    ("[shaper.slow]\nmax_rate = 10", ("shaper", "slow"), {"max_rate": 10}),
    ("[shaper.normal]\nmax_rate = 10", ("shaper", "normal"), {"max_rate": 10}),
    (
        '[access]\nlimit = [{acl = "all", value = 5}]',
        ("access", "limit"),
        [{"acl": "all", "value": 5}],
    ),
    (
        '[access]\nc2s = [{acl = "all", value = "deny"}]',
        ("access", "c2s"),
        [{"acl": "all", "value": "deny"}],
    ),
    ("[acl]\nlocal = [{}]", ("acl", "local", 0, "match"), "current_domain"),
    ('[acl]\nx = [{match = "any_hosted_domain"}]', ("acl", "x", 0, "match"), "any_hosted_domain"),
    ('[acl]\nx = [{user_regexp = "^a"}]', ("acl", "x", 0, "user_regexp"), "^a"),
    ('[acl]\nx = [{server = "LocalHost"}]', ("acl", "x", 0, "server"), "localhost"),
    ('[acl]\nx = [{user = "Alice"}]', ("acl", "x", 0, "user"), "alice"),
    ('[acl]\nx = [{resource_glob = "mobile*"}]', ("acl", "x", 0, "resource_glob"), "mobile*"),
    ("[internal_databases]", ("internal_databases",), {}),
]


@pytest.mark.parametrize(("text", "where", "expected"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_option_accepted(text: str, where: tuple[Any, ...], expected: Any) -> None:
    value: Any = parse(text + "\n")
    for key in where:
        value = value[key]
    assert value == expected


REFUSED: list[tuple[str, str]] = [
    ("[general]\nhostz = 1", "general.hostz: unknown option"),
    ("[general]\nmax_fsm_queue = 1000", "general.max_fsm_queue: unknown option"),
    (
        '[general]\nsm_backend = "cets"',
        "general.sm_backend: 'cets' is not available in this version of Suricate: use "
        '"mnesia" (one node: the table is in its memory) or "redis" (several nodes, '
        "docs/cluster.md)",
    ),
    (
        '[general]\ns2s_backend = "cets"',
        "general.s2s_backend: 'cets' is not available in this version of Suricate: use "
        '"mnesia" (or leave it out): each node keeps these in its own process, with sessions '
        'shared through sm_backend = "redis"',
    ),
    (
        '[general]\nsm_backend = "redis"',
        'general.sm_backend: "redis" needs a pool [outgoing_pools.redis.default]',
    ),
    (
        '[general]\nloglevel = "verbose"',
        "general.loglevel: expected one of none, emergency, alert, critical, error, warning, "
        "notice, info, debug, all",
    ),
    (
        "[general]\nregistration_timeout = -1",
        'general.registration_timeout: expected a non-negative integer (seconds) or "infinity", '
        "got -1",
    ),
    (
        '[general]\nregistration_timeout = "forever"',
        'general.registration_timeout: expected a non-negative integer (seconds) or "infinity", '
        'got "forever"',
    ),
    (
        '[general]\nhide_service_name = "yes"',
        "general.hide_service_name: expected a boolean, got a string",
    ),
    ("[general]\nlanguage = 1", "general.language: expected a non-empty string, got an integer"),
    (
        "[general]\nreplaced_wait_timeout = 0",
        "general.replaced_wait_timeout: expected a positive integer (milliseconds), got 0",
    ),
    ('[[listen.c2s]]\nip_address = "::"', "listen.c2s[0].port: missing required option"),
    (
        "[[listen.c2s]]\nport = 0",
        "listen.c2s[0].port: expected an integer from 1 to 65535, got 0",
    ),
    (
        '[[listen.c2s]]\nport = "5222"',
        "listen.c2s[0].port: expected an integer from 1 to 65535, got a string",
    ),
    (
        "[[listen.c2s]]\nport = true",
        "listen.c2s[0].port: expected an integer from 1 to 65535, got a boolean",
    ),
    (
        '[[listen.c2s]]\nport = 1\nip_address = "localhost"',
        'listen.c2s[0].ip_address: "localhost" is not a valid IP address',
    ),
    ("[[listen.c2s]]\nport = 1\nip_version = 5", "listen.c2s[0].ip_version: expected one of 4, 6"),
    # A value of another type than the allowed ones: the message shows them as TOML writes
    # them and what was given (6.4's mod_pubsub.last_item_cache is the string "false").
    ('[[listen.c2s]]\nport = 1\nip_version = "6"',
     "listen.c2s[0].ip_version: expected one of 4, 6, got a string"),
    ("[modules.mod_pubsub]\nlast_item_cache = false",
     'modules.mod_pubsub.last_item_cache: expected one of "false", got a boolean'),
    (
        '[[listen.c2s]]\nport = 1\nip_version = 4\nip_address = "::"',
        'listen.c2s[0].ip_version: ip_version 4 does not match ip_address "::"',
    ),
    ('[[listen.c2s]]\nport = 1\nproto = "udp"', "listen.c2s[0].proto: expected one of tcp"),
    (
        "[[listen.c2s]]\nport = 1\nbacklog = 0",
        "listen.c2s[0].backlog: expected a positive integer, got 0",
    ),
    (
        '[[listen.c2s]]\nport = 1\nmax_connections = "lots"',
        'listen.c2s[0].max_connections: expected a positive integer or "infinity", got "lots"',
    ),
    (
        "[[listen.c2s]]\nport = 1\nnum_acceptors = 0",
        "listen.c2s[0].num_acceptors: expected a positive integer, got 0",
    ),
    (
        "[[listen.c2s]]\nport = 1\nreuse_port = 1",
        "listen.c2s[0].reuse_port: expected a boolean, got an integer",
    ),
    (
        "[[listen.c2s]]\nport = 1\nproxy_protocol = 1",
        "listen.c2s[0].proxy_protocol: expected a boolean, got an integer",
    ),
    (
        '[[listen.c2s]]\nport = 1\nshaper = "x"',
        "listen.c2s[0].shaper: shaper 'x' is not defined in [shaper]",
    ),
    (
        "[[listen.c2s]]\nport = 1\nmax_stanza_size = 0",
        'listen.c2s[0].max_stanza_size: expected a positive integer (bytes) or "infinity", got 0',
    ),
    (
        "[[listen.c2s]]\nport = 1\nstate_timeout = -5",
        "listen.c2s[0].state_timeout: expected a non-negative integer (milliseconds), got -5",
    ),
    (
        "[[listen.c2s]]\nport = 1\nhibernate_after = 1.5",
        "listen.c2s[0].hibernate_after: expected a non-negative integer (milliseconds), got a float",
    ),
    (
        '[[listen.c2s]]\nport = 1\naccess = "vip"',
        "listen.c2s[0].access: access rule 'vip' is not defined in [access]",
    ),
    (
        "[[listen.c2s]]\nport = 1\nbackwards_compatible_session = 0",
        "listen.c2s[0].backwards_compatible_session: expected a boolean, got an integer",
    ),
    (
        '[[listen.c2s]]\nport = 1\nallowed_auth_methods = ["internal"]',
        "listen.c2s[0].allowed_auth_methods: method 'internal' is not enabled in auth.methods",
    ),
    (
        '[[listen.c2s]]\nport = 1\nallowed_auth_methods = ["ldap"]',
        "listen.c2s[0].allowed_auth_methods: method 'ldap' is not enabled in auth.methods",
    ),
    ("[[listen.c2s]]\nport = 1\nmax_fsm_queue = 1", "listen.c2s[0].max_fsm_queue: unknown option"),
    ("[listen.c2s]\nport = 1", "listen.c2s: expected an array of tables, got a table"),
    (
        "[[listen.c2s]]\nport = 1\n[[listen.c2s]]\nport = 1",
        "listen.c2s[1].port: port 1 is already used by listen.c2s[0]",
    ),
    (
        "[[listen.service]]\nport = 1",
        "listen.service: renamed to listen.component in MongooseIM 6.4",
    ),
    ("[[listen.xmpp]]\nport = 1", "listen.xmpp: unknown listener type"),
    ("[[listen.component]]\nport = 1", "listen.component[0].password: missing required option"),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\nconflict_behaviour = "kick_new"',
        "listen.component[0].conflict_behaviour: expected one of disconnect, kick_old",
    ),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\ncheck_from = "no"',
        "listen.component[0].check_from: expected a boolean, got a string",
    ),
    (
        '[[listen.component]]\nport = 1\npassword = "s"\nhidden_components = "no"',
        "listen.component[0].hidden_components: expected a boolean, got a string",
    ),
    (
        '[[listen.component]]\nport = 1\npassword = ""',
        "listen.component[0].password: expected a non-empty string",
    ),
    ('[s2s]\ndefault_policy = "maybe"', "s2s.default_policy: expected one of allow, deny"),
    (
        '[s2s]\nhost_policy = [{host = "a.com"}]',
        "s2s.host_policy[0].policy: missing required option",
    ),
    ("[s2s]\nshared = 5", "s2s.shared: expected a non-empty string, got an integer"),
    (
        '[s2s.outgoing]\naddress = [{host = "a.com", ip_address = "x"}]',
        's2s.outgoing.address[0].ip_address: "x" is not a valid IP address',
    ),
    (
        "[s2s.outgoing]\nconnection_timeout = 0",
        's2s.outgoing.connection_timeout: expected a positive integer (milliseconds) or "infinity", got 0',
    ),
    (
        "[s2s.outgoing]\ndns.timeout = 0",
        "s2s.outgoing.dns.timeout: expected a positive integer (seconds), got 0",
    ),
    (
        "[s2s.outgoing]\ndns.retries = 0",
        "s2s.outgoing.dns.retries: expected a positive integer, got 0",
    ),
    ("[s2s.outgoing]\ndns.ttl = 0", "s2s.outgoing.dns.ttl: unknown option"),
    ("[s2s.outgoing]\nip_versions = []", "s2s.outgoing.ip_versions: expected a non-empty array"),
    ("[s2s.outgoing]\nip_versions = [4, 4]", "s2s.outgoing.ip_versions: duplicate value 4"),
    (
        "[s2s.outgoing]\nmax_retry_delay = 0",
        "s2s.outgoing.max_retry_delay: expected a positive integer (seconds), got 0",
    ),
    (
        "[s2s.outgoing]\nport = 99999",
        "s2s.outgoing.port: expected an integer from 1 to 65535, got 99999",
    ),
    ('[s2s.outgoing]\nshaper = "x"', "s2s.outgoing.shaper: shaper 'x' is not defined in [shaper]"),
    (
        '[s2s.outgoing]\ntls.mode = "starttls_optional"',
        "s2s.outgoing.tls.mode: expected one of tls, starttls, starttls_required",
    ),
    (
        '[s2s.outgoing]\ntls.server_name_indication.protocol = "http"',
        "s2s.outgoing.tls.server_name_indication.protocol: expected one of default, https",
    ),
    ('[auth]\nmethods = ["ldap"]', "auth.ldap.base: missing required option"),
    ('[auth]\nmethods = ["kerberos"]', "auth.methods: expected one of internal, rdbms, anonymous, dummy, http, jwt, external, pki, ldap"),
    ('[auth]\nmethods = ["rdbms", "rdbms"]', 'auth.methods: duplicate value "rdbms"'),
    (
        '[auth]\nmethods = "rdbms"',
        "auth.methods: expected an array, each element one of internal, rdbms, anonymous, dummy, "
        "http, jwt, external, pki, ldap, got a string",
    ),
    ('[auth.ldap]\nbase = "x"\nderef = "sometimes"',
     "auth.ldap.deref: expected one of never, always, finding, searching"),
    ('[auth.ldap]\nbase = "x"\ndn_filter = {filter = "uid=%u)"}',
     "auth.ldap.dn_filter.filter: not an LDAP filter: unbalanced parentheses (RFC 4515)"),
    ("[outgoing_pools.ldap.default.connection]\nencrypt = \"ssl\"",
     "outgoing_pools.ldap.default.connection.encrypt: expected one of none, tls"),
    ('[auth]\nmethods = ["jwt"]', "auth.jwt: missing required section (method 'jwt' is enabled)"),
    ('[auth]\nmethods = ["http"]',
     "auth.methods: method 'http' needs the pool [outgoing_pools.http.auth]"),
    ('[auth]\nmethods = ["jwt"]\n[auth.jwt]\nsecret.value = "x"\nsecret.env = "Y"\n'
     'algorithm = "HS256"\nusername_key = "user"',
     'auth.jwt.secret: expected exactly one of "value", "file" or "env"'),
    ('[auth]\nmethods = ["jwt"]\n[auth.jwt]\nsecret.value = "x"\nalgorithm = "none"\n'
     'username_key = "user"', "auth.jwt.algorithm: expected one of HS256, HS384, HS386, HS512, RS256, RS384, RS386, "
     "RS512, ES256, ES384, ES386, ES512"),
    ('[auth]\nmethods = ["jwt"]\n[auth.jwt]\nsecret.env = "SURICATE_NO_SUCH_VAR"\n'
     'algorithm = "HS256"\nusername_key = "user"',
     "auth.jwt.secret.env: environment variable SURICATE_NO_SUCH_VAR is not set"),
    ('[auth]\nmethods = ["external"]\n[auth.external]\ninstances = 0\nprogram = "x"',
     "auth.external.instances: expected a positive integer, got 0"),
    (
        '[auth]\nsasl_mechanisms = ["digest"]',
        "auth.sasl_mechanisms: mechanism 'digest' is not available in this version",
    ),
    (
        '[auth]\nsasl_external = ["cn"]',
        "auth.sasl_external[0]: expected one of standard, common_name, auth_id",
    ),
    (
        "[auth]\nmax_users_per_domain = 0",
        'auth.max_users_per_domain: expected a positive integer or "infinity", got 0',
    ),
    ('[auth]\npassword.format = "bcrypt"', "auth.password.format: expected one of scram, plain"),
    (
        '[auth]\npassword.hash = ["md5"]',
        "auth.password.hash[0]: expected one of sha, sha224, sha256, sha384, sha512",
    ),
    (
        "[auth]\npassword.scram_iterations = 0",
        "auth.password.scram_iterations: expected a positive integer, got 0",
    ),
    (
        '[auth]\nanonymous.protocol = "x"',
        "auth.anonymous.protocol: expected one of sasl_anon, login_anon, both",
    ),
    (
        '[auth]\nanonymous.backend = "rdbms"',
        "auth.anonymous.backend: expected one of mnesia, cets",
    ),
    (
        "[auth]\nrdbms.users_number_estimate = 1",
        "auth.rdbms.users_number_estimate: expected a boolean, got an integer",
    ),
    ("[auth]\ninternal.x = 1", "auth.internal.x: unknown option"),
    (
        "[shaper.slow]\nmax_rate = 0",
        "shaper.slow.max_rate: expected a positive integer (bytes per second), got 0",
    ),
    ("[shaper.slow]\nmaxrate = 1", "shaper.slow.maxrate: unknown option"),
    (
        "[shaper.none]\nmax_rate = 1",
        "shaper.none: the name 'none' is reserved (it means no shaping)",
    ),
    ("[shaper]\nslow = 5", "shaper.slow: expected a table, got an integer"),
    ('[access]\nx = [{acl = "all"}]', "access.x[0].value: missing required option"),
    (
        '[access]\nx = [{acl = "all", value = true}]',
        "access.x[0].value: expected a string or a number, got a boolean",
    ),
    (
        '[acl]\nx = [{user_regexp = "("}]',
        "acl.x[0].user_regexp: invalid regular expression: missing ), unterminated subpattern at position 0",
    ),
    (
        '[acl]\nx = [{match = "some"}]',
        "acl.x[0].match: expected one of all, none, current_domain, any_hosted_domain",
    ),
    (
        '[acl]\nx = [{user = "a", user_glob = "b*"}]',
        "acl.x[0].user_glob: cannot be combined with user",
    ),
    ('[acl]\nx = [{jid = "a@b"}]', "acl.x[0].jid: unknown option"),
    (
        '[acl]\nx = [{user = "alice@localhost"}]',
        "acl.x[0].user: \"alice@localhost\" is not a valid user part ('@' not allowed; write "
        '{user = "alice", server = "localhost"})',
    ),
    ('[acl]\nx = [{server = "a/b"}]', 'acl.x[0].server: "a/b" is not a valid domain name'),
    ('[acl]\nall = [{user = "a"}]', "acl.all: 'all' is predefined and cannot be redefined"),
    (
        "[instrumentation.exometer]",
        "instrumentation.exometer: the exometer handler is not available in this version of "
        "Suricate (exometer is an Erlang metrics library; Suricate has no Graphite reporter "
        "either): use [instrumentation.prometheus] with a mongoose_prometheus_handler, whose "
        "metric names and labels are 6.4's, or [instrumentation.log]",
    ),
    (
        '[[host_config]]\nhost = "elsewhere.example"',
        'host_config[0].host: unknown host "elsewhere.example" (not one of general.hosts)',
    ),
    (
        '[[host_config]]\nhost = "localhost"\nhost_type = "t"',
        'host_config[0]: expected exactly one of "host" or "host_type"',
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[host_config.modules.mod_ping]\nping_interval = -1',
        "host_config[0].modules.mod_ping.ping_interval: expected a positive integer (seconds), "
        "got -1",
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[host_config.auth]\nmethods = ["jwt"]',
        "host_config[0].auth.jwt: missing required section (method 'jwt' is enabled)",
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[host_config.auth]\nmethods = ["http"]',
        "host_config[0].auth.methods: method 'http' needs the pool [outgoing_pools.http.auth]",
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[host_config.auth]\nmethods = ["ldap"]\n'
        'ldap.base = "dc=example"',
        "host_config[0].auth.ldap.pool_tag: method 'ldap' needs the pool "
        "[outgoing_pools.ldap.default]",
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[[host_config]]\nhost = "localhost"',
        'host_config[1].host: "localhost" already has a host_config (host_config[0])',
    ),
    (
        '[[host_config]]\nhost = "localhost"\n[host_config.general]\nhosts = ["x"]',
        "host_config[0].general.hosts: not allowed per host (6.4 allows replaced_wait_timeout "
        "and route_subdomains)",
    ),
    (
        "[services.service_translations]",
        "services.service_translations: service_translations is not available in this version "
        "of Suricate: Suricate's server texts are in English only (general.language has no "
        "effect either); remove it",
    ),
    ("[foo]", "foo: unknown section"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSED, ids=[r[0] for r in REFUSED])
def test_option_refused(text: str, expected: str) -> None:
    refused(text + "\n", expected)


# --------------------------------------------------------------------------------------------
# [general]


def test_hosts_are_lowercased_and_default_domain_must_be_one_of_them() -> None:
    cfg = parse_config(
        '[general]\nhosts = ["Example.COM"]\ndefault_server_domain = "example.com"\n', Path(".")
    )
    assert cfg["general"]["hosts"] == ["example.com"]
    found = problems(
        '[general]\nhosts = ["a.com"]\ndefault_server_domain = "b.com"\n', general=False
    )
    assert found == ['general.default_server_domain: "b.com" is not one of general.hosts']


def test_a_host_type_is_not_named_like_a_host() -> None:
    found = problems('[general]\nhosts = ["a.com"]\nhost_types = ["a.com"]\n'
                     'default_server_domain = "a.com"\n', general=False)
    assert found == ['general.host_types[0]: "a.com" is also in general.hosts (a static host '
                     "is its own host type): give the host type another name"]


def test_domain_certfile_names_a_host_or_host_type(tmp_path: Path) -> None:
    _, per_host = ensure_self_signed(tmp_path, ["a.com"])
    cert = f'certfile = "{per_host["a.com"].certfile}", keyfile = "{per_host["a.com"].keyfile}"'
    general = ('[general]\nhosts = ["a.com"]\nhost_types = ["t"]\n'
               'default_server_domain = "a.com"\n')
    cfg = parse(general + f'domain_certfile = [{{domain = "t", {cert}}}]', general=False)
    assert cfg["general"]["domain_certfile"][0]["keyfile"] == per_host["a.com"].keyfile
    found = problems(general + f'domain_certfile = [{{domain = "b.com", {cert}}}, '
                     f'{{domain = "a.com", {cert}}}, {{domain = "a.com", {cert}}}]',
                     general=False)
    assert found == [
        'general.domain_certfile[0].domain: "b.com" is neither one of general.hosts nor of '
        "general.host_types",
        'general.domain_certfile[2].domain: "a.com" already has a certificate '
        "(domain_certfile[1])"]


def test_hosts_required_unless_host_types() -> None:
    found = problems('[general]\ndefault_server_domain = "a.com"\n', general=False)
    assert found == ["general.hosts: missing required option (or define general.host_types)"]
    cfg = parse(
        '[general]\nhost_types = ["basic"]\ndefault_server_domain = "a.com"\n', general=False
    )
    assert cfg["general"]["hosts"] == []


def test_missing_general_section() -> None:
    assert problems("", general=False) == ["general: missing required section"]


def test_invalid_domain_name() -> None:
    found = problems('[general]\nhosts = ["a b"]\ndefault_server_domain = "a b"\n', general=False)
    assert 'general.hosts[0]: "a b" is not a valid domain name' in found


# --------------------------------------------------------------------------------------------
# TLS


def test_c2s_tls_defaults_and_keyfile_defaults_to_certfile(certdir: Path) -> None:
    cfg = parse('[[listen.c2s]]\nport = 5222\ntls.certfile = "cert.pem"\n', certdir)
    tls = cfg["listen"]["c2s"][0]["tls"]
    assert tls == {
        "certfile": str(certdir / "cert.pem"),
        "keyfile": str(certdir / "cert.pem"),
        "cacertfile": None,
        "password": None,
        "verify_mode": "peer",
        "ciphers": None,
        "versions": ["tlsv1.2", "tlsv1.3"],
        "mode": "starttls",
        "dhfile": None,
        "crl_files": [],
        "disconnect_on_failure": True,
        "early_data": False,
        "session_tickets": None,
    }


@pytest.mark.parametrize(
    ("kind", "extra", "mode"),
    [("c2s", "", "starttls"), ("s2s", "", "starttls"), ("component", 'password = "s"', "tls")],
)
def test_default_tls_mode_per_listener_type(
    certdir: Path, kind: str, extra: str, mode: str
) -> None:
    cfg = parse(f'[[listen.{kind}]]\nport = 1\n{extra}\ntls.certfile = "cert.pem"\n', certdir)
    assert cfg["listen"][kind][0]["tls"]["mode"] == mode


TLS_ACCEPTED: list[tuple[str, str, Any]] = [
    ('mode = "tls"', "mode", "tls"),
    ('mode = "starttls_required"', "mode", "starttls_required"),
    ('keyfile = "key.pem"', "keyfile", "KEY"),
    ('cacertfile = "ca.pem"', "cacertfile", "CA"),
    ('password = "pw"', "password", "pw"),
    ('dhfile = "ca.pem"', "dhfile", "CA"),
    ('verify_mode = "selfsigned_peer"', "verify_mode", "selfsigned_peer"),
    ('verify_mode = "none"', "verify_mode", "none"),
    ('ciphers = "ECDHE+AESGCM"', "ciphers", "ECDHE+AESGCM"),
    ('versions = ["tlsv1.3"]', "versions", ["tlsv1.3"]),
    ('crl_files = ["crl.pem"]', "crl_files", ["CRL"]),
    ("disconnect_on_failure = false", "disconnect_on_failure", False),
    ('early_data = true\nmode = "tls"\nsession_tickets = "stateless"', "early_data", True),
    ('session_tickets = "stateless"', "session_tickets", "stateless"),
]


@pytest.mark.parametrize(
    ("line", "key", "expected"), TLS_ACCEPTED, ids=[t[0] for t in TLS_ACCEPTED]
)
def test_tls_option_accepted(certdir: Path, line: str, key: str, expected: Any) -> None:
    text = f'[[listen.c2s]]\nport = 1\n[listen.c2s.tls]\ncertfile = "cert.pem"\n{line}\n'
    value = parse(text, certdir)["listen"]["c2s"][0]["tls"][key]
    replace = {"KEY": str(certdir / "key.pem"), "CA": str(certdir / "ca.pem"),
               "CRL": str(certdir / "crl.pem")}
    if isinstance(expected, list):
        expected = [replace.get(e, e) for e in expected]
    else:
        expected = replace.get(expected, expected)
    assert value == expected


TLS_REFUSED: list[tuple[str, str]] = [
    ('mode = "ssl"', "mode: expected one of tls, starttls, starttls_required"),
    ('keyfile = "missing.pem"', 'keyfile: file "missing.pem" does not exist'),
    ('cacertfile = "missing.pem"', 'cacertfile: file "missing.pem" does not exist'),
    # a directory where a file is expected is told as such, not "does not exist"
    ('cacertfile = "."', 'cacertfile: file "." is a directory'),
    ("password = 1", "password: expected a string, got an integer"),
    ('dhfile = "missing.pem"', 'dhfile: file "missing.pem" does not exist'),
    ('verify_mode = "strict"', "verify_mode: expected one of peer, selfsigned_peer, none"),
    ("ciphers = []", "ciphers: expected a non-empty string, got an array"),
    ('versions = ["tlsv1.1"]', "versions[0]: expected one of tlsv1.2, tlsv1.3"),
    ("versions = []", "versions: expected a non-empty array"),
    ('crl_files = ["missing.pem"]', 'crl_files[0]: file "missing.pem" does not exist'),
    ('disconnect_on_failure = "yes"', "disconnect_on_failure: expected a boolean, got a string"),
    ("early_data = 1", "early_data: expected a boolean, got an integer"),
    ('session_tickets = "stateful"', "session_tickets: expected one of stateless"),
    ('module = "fast_tls"', "module: unknown option"),
]


@pytest.mark.parametrize(("line", "expected"), TLS_REFUSED, ids=[t[0] for t in TLS_REFUSED])
def test_tls_option_refused(certdir: Path, line: str, expected: str) -> None:
    text = f'[[listen.c2s]]\nport = 1\n[listen.c2s.tls]\ncertfile = "cert.pem"\n{line}\n'
    found = problems(text, certdir)
    assert len(found) == 1, found
    assert found[0].startswith(f"listen.c2s[0].tls.{expected}"), found


@pytest.mark.parametrize("kind", ["c2s", "s2s", "component"])
def test_tls_table_requires_certfile(kind: str) -> None:
    extra = 'password = "s"\n' if kind == "component" else ""
    found = problems(f'[[listen.{kind}]]\nport = 1\n{extra}tls.mode = "tls"\n')
    assert found == [f"listen.{kind}[0].tls.certfile: missing required option"]


def test_missing_certificate_file_is_an_error(tmp_path: Path) -> None:
    found = problems('[[listen.c2s]]\nport = 1\ntls.certfile = "nope.pem"\n', tmp_path)
    assert found == [
        f'listen.c2s[0].tls.certfile: file "nope.pem" does not exist '
        f"(looked for {tmp_path / 'nope.pem'})"
    ]


def test_absolute_cert_path_is_kept(certdir: Path) -> None:
    cert = str(certdir / "cert.pem")
    cfg = parse(f'[[listen.c2s]]\nport = 1\ntls.certfile = "{cert}"\n', Path("/elsewhere"))
    assert cfg["listen"]["c2s"][0]["tls"]["certfile"] == cert


def test_outgoing_s2s_tls(certdir: Path) -> None:
    cfg = parse('[s2s.outgoing]\ntls.cacertfile = "ca.pem"\n', certdir)
    tls = cfg["s2s"]["outgoing"]["tls"]
    assert tls["mode"] == "starttls"
    assert tls["certfile"] is None and tls["keyfile"] is None
    assert tls["cacertfile"] == str(certdir / "ca.pem")
    assert tls["server_name_indication"] == {"enabled": True, "host": None, "protocol": "default"}


# --------------------------------------------------------------------------------------------
# HTTP listener


def test_http_listener_with_handlers(certdir: Path) -> None:
    text = """
    [[listen.http]]
    port = 5280
    transport.num_acceptors = 10
    transport.max_connections = 1024
    protocol.compress = true
    tls.certfile = "cert.pem"

    [[listen.http.handlers.mod_websockets]]
    host = "_"
    path = "/ws-xmpp"

    [[listen.http.handlers.mod_bosh]]
    host = "_"
    path = "/http-bind"

    [[listen.http.handlers.mongoose_graphql_handler]]
    host = "localhost"
    path = "/api/graphql"
    schema_endpoint = "admin"
    username = "admin"
    password = "secret"
    allowed_categories = ["server"]

    [[listen.http.handlers.mongoose_prometheus_handler]]
    host = "_"
    path = "/metrics"
    """
    http = parse(text, certdir)["listen"]["http"][0]
    assert http["transport"] == {"num_acceptors": 10, "max_connections": 1024}
    assert http["protocol"] == {"compress": True}
    assert http["tls"]["certfile"] == str(certdir / "cert.pem")
    handlers = http["handlers"]
    assert handlers["mod_websockets"][0]["path"] == "/ws-xmpp"
    assert handlers["mod_websockets"][0]["state_timeout"] == 5000
    assert handlers["mod_bosh"] == [{"host": "_", "path": "/http-bind"}]
    assert handlers["mongoose_graphql_handler"][0]["schema_endpoint"] == "admin"
    assert handlers["mongoose_prometheus_handler"] == [{"host": "_", "path": "/metrics"}]


def test_rest_api_handlers_default_to_every_part(certdir: Path) -> None:
    text = """
    [[listen.http]]
    port = 8088

    [[listen.http.handlers.mongoose_admin_api]]
    host = "_"
    path = "/api"
    username = "admin"
    password = "secret"

    [[listen.http.handlers.mongoose_client_api]]
    host = "_"
    path = "/api/client"
    handlers = ["messages", "contacts"]
    """
    handlers = parse(text, certdir)["listen"]["http"][0]["handlers"]
    admin = handlers["mongoose_admin_api"][0]
    assert admin["handlers"] == ["contacts", "users", "sessions", "messages", "stanzas",
                                 "muc_light", "muc", "inbox", "domain", "metrics"]
    assert (admin["username"], admin["password"]) == ("admin", "secret")
    client = handlers["mongoose_client_api"][0]
    assert client["handlers"] == ["messages", "contacts"] and client["docs"] is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[listen.http.handlers.mongoose_graphql_handler]]\nhost = "_"\npath = "/g"\n'
            'schema_endpoint = "root"',
            "listen.http[0].handlers.mongoose_graphql_handler[0].schema_endpoint: "
            "expected one of admin, domain_admin, user",
        ),
        (
            '[[listen.http.handlers.mongoose_graphql_handler]]\nhost = "_"\npath = "/g"\n'
            'schema_endpoint = "user"\nusername = "u"',
            "listen.http[0].handlers.mongoose_graphql_handler[0].username: "
            'only allowed when schema_endpoint is "admin"',
        ),
        (
            '[[listen.http.handlers.mongoose_graphql_handler]]\nhost = "_"\npath = "/g"\n'
            'schema_endpoint = "admin"\nusername = "u"',
            "listen.http[0].handlers.mongoose_graphql_handler[0].password: "
            "username and password must be given together",
        ),
        (
            '[[listen.http.handlers.mod_bosh]]\nhost = "_"',
            "listen.http[0].handlers.mod_bosh[0].path: missing required option",
        ),
        (
            '[[listen.http.handlers.mongoose_admin_api]]\nhost = "_"\npath = "/api"\n'
            'username = "admin"',
            "listen.http[0].handlers.mongoose_admin_api[0].password: "
            "username and password must be given together",
        ),
        (
            '[[listen.http.handlers.mongoose_admin_api]]\nhost = "_"\npath = "/api"\n'
            'handlers = ["users", "users"]',
            "listen.http[0].handlers.mongoose_admin_api[0].handlers: duplicate value \"users\"",
        ),
        (
            '[[listen.http.handlers.mongoose_client_api]]\nhost = "_"\npath = "/api"\n'
            'handlers = ["chat"]',
            "listen.http[0].handlers.mongoose_client_api[0].handlers[0]: expected one of sse, "
            "messages, contacts, rooms, rooms_config, rooms_users, rooms_messages",
        ),
        (
            '[[listen.http.handlers.mod_foo]]\nhost = "_"\npath = "/"',
            "listen.http[0].handlers.mod_foo: unknown handler type",
        ),
        (
            "transport.num_acceptors = 0",
            "listen.http[0].transport.num_acceptors: expected a positive integer, got 0",
        ),
        (
            "protocol.compress = 1",
            "listen.http[0].protocol.compress: expected a boolean, got an integer",
        ),
    ],
)
def test_http_listener_refused(text: str, expected: str) -> None:
    refused(f"[[listen.http]]\nport = 5280\n{text}\n", expected)


# --------------------------------------------------------------------------------------------
# Outgoing pools


def test_pgsql_pool() -> None:
    text = """
    [outgoing_pools.rdbms.default]
    workers = 5
    connection.driver = "pgsql"
    connection.host = "localhost"
    connection.database = "suricate"
    connection.username = "suricate"
    connection.password = "secret"
    connection.tls.required = true
    """
    pool = parse(text)["outgoing_pools"]["rdbms"]["default"]
    assert pool["workers"] == 5
    assert pool["scope"] == "global"
    assert pool["call_timeout"] == 60000
    assert pool["connection"]["port"] == 5432
    assert pool["connection"]["tls"]["required"] is True


def test_sqlite_pool_resolves_database_against_config_dir(tmp_path: Path) -> None:
    text = '[outgoing_pools.rdbms.default]\nconnection.driver = "sqlite"\nconnection.database = "data/s.db"\n'
    pool = parse(text, tmp_path)["outgoing_pools"]["rdbms"]["default"]
    assert pool["connection"]["database"] == str(tmp_path / "data" / "s.db")
    assert pool["connection"]["port"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'connection.driver = "odbc"',
            "outgoing_pools.rdbms.default.connection.driver: driver 'odbc' is not available in "
            "this version",
        ),
        (
            'connection.driver = "mysql"\nconnection.database = "d"\nconnection.username = "u"',
            "outgoing_pools.rdbms.default.connection.host: required for the mysql driver",
        ),
        (
            'connection.driver = "oracle"',
            "outgoing_pools.rdbms.default.connection.driver: expected one of pgsql, mysql, sqlite",
        ),
        (
            'connection.driver = "sqlite"\nconnection.database = "x.db"\nconnection.host = "h"',
            "outgoing_pools.rdbms.default.connection.host: not used by the sqlite driver",
        ),
        (
            'connection.driver = "sqlite"',
            "outgoing_pools.rdbms.default.connection.database: required for the sqlite driver "
            "(a file path)",
        ),
        (
            'connection.driver = "pgsql"\nconnection.database = "d"\nconnection.username = "u"\n'
            'connection.password = "p"',
            "outgoing_pools.rdbms.default.connection.host: required for the pgsql driver",
        ),
        ("workers = 0", "outgoing_pools.rdbms.default.workers: expected a positive integer, got 0"),
        ('scope = "host"', "outgoing_pools.rdbms.default.scope: expected one of global, host_type"),
        ("", "outgoing_pools.rdbms.default.connection: missing required section"),
    ],
)
def test_pool_refused(text: str, expected: str) -> None:
    refused(f"[outgoing_pools.rdbms.default]\n{text}\n", expected)


def test_other_pool_types_are_unavailable() -> None:
    refused(
        "[outgoing_pools.cassandra.default]\nworkers = 1\n",
        "outgoing_pools.cassandra: cassandra pools are not available in this version of "
        "Suricate: no module stores in Cassandra here; mod_mam archives through the RDBMS pool "
        "(PostgreSQL, MySQL or SQLite, docs/mam.md)",
    )
    refused(
        "[outgoing_pools.elastic.default]\n",
        "outgoing_pools.elastic: elastic pools are not available in this version of Suricate: "
        "no module stores in Elasticsearch here; mod_mam archives through the RDBMS pool, with "
        "full-text search (modules.mod_mam.full_text_search)",
    )


# --------------------------------------------------------------------------------------------
# Modules


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("mod_ping", {"send_pings": False, "ping_interval": 60, "ping_req_timeout": 32}),
        ("mod_vcard", {"host": "vjud.@HOST@", "search": True, "matches": 30}),
        ("mod_register", {"access": "all", "password_strength": 0, "ip_access": []}),
        ("mod_roster", {"versioning": False, "store_current_id": False, "backend": "rdbms"}),
        (
            "mod_offline",
            {"access_max_user_messages": "max_user_offline_messages", "backend": "rdbms"},
        ),
        ("mod_disco", {"extra_domains": [], "users_can_see_hidden_services": True}),
        ("mod_version", {"os_info": False}),
        ("mod_last", {"backend": "rdbms"}),
        ("mod_private", {"backend": "rdbms"}),
        ("mod_blocking", {"backend": "rdbms"}),
        ("mod_time", {}),
        ("mod_presence", {}),
    ],
)
def test_module_defaults(module: str, expected: dict[str, Any]) -> None:
    options = parse(f"[modules.{module}]\n")["modules"][module]
    for key, value in expected.items():
        assert options[key] == value


def test_module_iqdisc_defaults() -> None:
    modules = parse("[modules.mod_ping]\n[modules.mod_vcard]\n[modules.mod_roster]\n")["modules"]
    assert modules["mod_ping"]["iqdisc"] == {"type": "no_queue", "workers": None}
    assert modules["mod_vcard"]["iqdisc"]["type"] == "parallel"
    assert modules["mod_roster"]["iqdisc"]["type"] == "one_queue"
    cfg = parse('[modules.mod_ping]\niqdisc.type = "queues"\niqdisc.workers = 4\n')
    assert cfg["modules"]["mod_ping"]["iqdisc"] == {"type": "queues", "workers": 4}


def test_module_options_accepted() -> None:
    text = """
    [modules.mod_register]
    welcome_message = {subject = "Hi", body = "Welcome"}
    ip_access = [{address = "127.0.0.0/8", policy = "allow"}, {address = "::1", policy = "deny"}]
    registration_watchers = ["admin@localhost"]
    [modules.mod_vcard]
    matches = "infinity"
    [modules.mod_disco]
    server_info = [{name = "abuse-addresses", urls = ["mailto:abuse@localhost"]}]
    """
    modules = parse(text)["modules"]
    assert modules["mod_register"]["welcome_message"] == {"subject": "Hi", "body": "Welcome"}
    assert modules["mod_register"]["ip_access"][1] == {"address": "::1/128", "policy": "deny"}
    assert modules["mod_vcard"]["matches"] is None
    assert modules["mod_disco"]["server_info"][0]["modules"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[modules.mod_inbox]\nboxes = ["bin"]',
            "modules.mod_inbox.boxes[0]: 'bin' is a reserved box name (inbox, archive and bin "
            "always exist; all means every box)",
        ),
        (
            "[modules.mod_inbox]\ndelete_domain_limit = 0",
            'modules.mod_inbox.delete_domain_limit: expected a positive integer or "infinity", '
            "got 0",
        ),
        (
            '[modules.mod_smart_markers]\nbackend = "mnesia"',
            "modules.mod_smart_markers.backend: backend 'mnesia' is not available in this "
            "version of Suricate",
        ),
        (
            "[modules.mod_muc_light]\nrooms_per_user = 0",
            "modules.mod_muc_light.rooms_per_user: expected a positive integer or \"infinity\", "
            "got 0",
        ),
        (
            '[modules.mod_muc_light]\nconfig_schema = [{field = "x", integer_value = 1, '
            'float_value = 2.0}]',
            "modules.mod_muc_light.config_schema[0]: exactly one of string_value, "
            "integer_value, float_value, boolean_value is required",
        ),
        (
            '[modules.mod_muc]\nhttp_auth_pool = "auth"',
            "modules.mod_muc.http_auth_pool: pool 'auth' is not defined in [outgoing_pools.http]",
        ),
        (
            '[modules.mod_muc]\nroom_shaper = "slow"',
            "modules.mod_muc.room_shaper: shaper 'slow' is not defined in [shaper]",
        ),
        (
            '[modules.mod_muc]\naccess_create = "muc_create"',
            "modules.mod_muc.access_create: access rule 'muc_create' is not defined in [access]",
        ),
        (
            '[modules.mod_stream_management]\nbackend = "rdbms"',
            "modules.mod_stream_management.backend: expected one of mnesia, cets",
        ),
        (
            '[modules.mod_fast_auth_token]\nvalidity_period.access = {value = 3, unit = "weeks"}',
            "modules.mod_fast_auth_token.validity_period.access.unit: expected one of days, "
            "hours, minutes, seconds",
        ),
        ("[modules.mod_foo]", "modules.mod_foo: unknown module"),
        (
            '[modules.mod_ping]\ntimeout_action = "ban"',
            "modules.mod_ping.timeout_action: expected one of none, kill",
        ),
        (
            "[modules.mod_ping]\nping_interval = 0",
            "modules.mod_ping.ping_interval: expected a positive integer (seconds), got 0",
        ),
        (
            '[modules.mod_ping]\niqdisc.type = "queues"',
            'modules.mod_ping.iqdisc.workers: required when iqdisc.type is "queues"',
        ),
        (
            "[modules.mod_ping]\niqdisc.workers = 2",
            'modules.mod_ping.iqdisc.workers: only allowed when iqdisc.type is "queues"',
        ),
        (
            '[modules.mod_ping]\niqdisc.type = "serial"',
            "modules.mod_ping.iqdisc.type: expected one of one_queue, no_queue, queues, parallel",
        ),
        (
            '[modules.mod_roster]\nbackend = "mnesia"',
            "modules.mod_roster.backend: backend 'mnesia' is not available in this version of "
            'Suricate: use "rdbms" (or leave it out): the data goes to '
            "[outgoing_pools.rdbms.default], an SQLite file when no pool is configured",
        ),
        (
            '[modules.mod_register]\naccess = "nobody"',
            "modules.mod_register.access: access rule 'nobody' is not defined in [access]",
        ),
        (
            '[modules.mod_adhoc]\naccess_admin = "admins"',
            "modules.mod_adhoc.access_admin: access rule 'admins' is not defined in [access]",
        ),
        (
            "[modules.mod_adhoc]\nreport_commands_node = 1",
            "modules.mod_adhoc.report_commands_node: expected a boolean, got an integer",
        ),
        (
            "[modules.mod_register]\npassword_strength = -1",
            "modules.mod_register.password_strength: expected a non-negative integer, got -1",
        ),
        (
            '[modules.mod_register]\nip_access = [{address = "x", policy = "allow"}]',
            'modules.mod_register.ip_access[0].address: "x" is not a valid IP address or network',
        ),
        (
            '[modules.mod_register]\nwelcome_message = {title = "x"}',
            "modules.mod_register.welcome_message.title: unknown option",
        ),
        (
            '[modules.mod_offline]\naccess_max_user_messages = "lots"',
            "modules.mod_offline.access_max_user_messages: access rule 'lots' is not defined in [access]",
        ),
        (
            "[modules.mod_vcard]\nmatches = -1",
            'modules.mod_vcard.matches: expected a non-negative integer or "infinity", got -1',
        ),
        ("[modules.mod_presence]\nx = 1", "modules.mod_presence.x: unknown option"),
    ],
)
def test_module_refused(text: str, expected: str) -> None:
    refused(text + "\n", expected)


# --------------------------------------------------------------------------------------------
# Problem collection, syntax errors, files


def test_multiple_problems_are_collected() -> None:
    text = """
    [general]
    hosts = ["localhost"]
    default_server_domain = "localhost"
    hostz = ["x"]
    [[listen.c2s]]
    port = 5222
    shaper = "x"
    [[listen.c2s]]
    port = 5223
    tls.mode = "foo"
    [auth]
    methods = ["kerberos"]
    [modules.mod_global_distrib]
    """
    found = problems(text, general=False)
    assert set(found) >= {
        "general.hostz: unknown option",
        "listen.c2s[0].shaper: shaper 'x' is not defined in [shaper]",
        "listen.c2s[1].tls.mode: expected one of tls, starttls, starttls_required",
        "auth.methods: expected one of internal, rdbms, anonymous, dummy, http, jwt, external, "
        "pki, ldap",
        "modules.mod_global_distrib.global_host: missing required option",
    }


def test_problem_str_and_error_message() -> None:
    problem = Problem("listen.c2s[0].tls.mode", "expected one of tls, starttls, starttls_required")
    assert (
        str(problem) == "listen.c2s[0].tls.mode: expected one of tls, starttls, starttls_required"
    )
    error = ConfigError([problem, Problem("a", "b")])
    assert str(error) == f"{problem}\na: b"


def test_toml_syntax_error_is_one_problem_with_line() -> None:
    found = problems("[general\nhosts = 1\n", general=False)
    assert len(found) == 1
    assert found[0].startswith("<file>: invalid TOML:")
    assert "line 1" in found[0]


def test_load_config_reads_file_relative_to_its_directory(certdir: Path) -> None:
    path = certdir / "suricate.toml"
    path.write_text(GENERAL + '[[listen.c2s]]\nport = 5222\ntls.certfile = "cert.pem"\n')
    cfg = load_config(path)
    assert cfg["listen"]["c2s"][0]["tls"]["certfile"] == str(certdir / "cert.pem")


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.problems[0].message.startswith("cannot read the configuration file")


# --------------------------------------------------------------------------------------------
# The example from the MongooseIM 6.4 release announcement


RELEASE_EXAMPLE = """
[general]
hosts = ["localhost"]
default_server_domain = "localhost"

[[listen.component]]
port = 8190
shaper = "fast"
ip_address = "127.0.0.1"
password = "secret"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"

[[listen.s2s]]
port = 5269
shaper = "fast"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"

[s2s]
default_policy = "allow"

[s2s.outgoing]
port = 5269
shaper = "fast"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"
"""


def test_mongooseim_64_release_example(certdir: Path) -> None:
    ssl = certdir / "priv" / "ssl"
    ssl.mkdir(parents=True)
    (certdir / "cert.pem").rename(ssl / "cert.pem")
    (certdir / "key.pem").rename(ssl / "key.pem")
    path = certdir / "mongooseim.toml"
    path.write_text(RELEASE_EXAMPLE)
    cfg = load_config(path)
    component = cfg["listen"]["component"][0]
    assert component["port"] == 8190
    assert component["ip_address"] == "127.0.0.1"
    assert component["shaper"] == "fast"
    assert component["tls"]["mode"] == "tls"
    assert component["tls"]["keyfile"] == str(ssl / "key.pem")
    s2s = cfg["listen"]["s2s"][0]
    assert s2s["tls"]["mode"] == "starttls"
    assert s2s["tls"]["certfile"] == str(ssl / "cert.pem")
    assert cfg["s2s"]["default_policy"] == "allow"
    assert cfg["s2s"]["outgoing"]["shaper"] == "fast"
    assert cfg["s2s"]["outgoing"]["tls"]["keyfile"] == str(ssl / "key.pem")


def test_release_example_without_cert_files_is_refused(tmp_path: Path) -> None:
    found = problems(RELEASE_EXAMPLE, tmp_path, general=False)
    assert len(found) == 6
    assert all("does not exist" in p for p in found)


def test_early_data_needs_stateless_tickets_and_direct_tls(tmp_path: Path) -> None:
    from suricate.config import ConfigError, parse_config
    from suricate.net.certs import ensure_self_signed

    cert, _ = ensure_self_signed(tmp_path / "c", ["localhost"])
    base = f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
[[listen.c2s]]
port = 5223
tls.certfile = "{cert.certfile}"
tls.keyfile = "{cert.keyfile}"
tls.early_data = true
"""
    ok = base + 'tls.mode = "tls"\ntls.session_tickets = "stateless"\n'
    parse_config(ok, tmp_path)
    with pytest.raises(ConfigError) as exc:
        parse_config(base + 'tls.mode = "starttls"\n', tmp_path)
    messages = [str(p) for p in exc.value.problems]
    assert 'listen.c2s[0].tls.early_data: needs session_tickets = "stateless"' in messages
    assert 'listen.c2s[0].tls.early_data: needs mode = "tls" (direct TLS)' in messages


# --------------------------------------------------------------------------------------------
# Options accepted for MongooseIM compatibility but without effect (Option(inert=True))

INERT = "accepted for compatibility, has no effect in this version"


def warnings_of(text: str) -> list[str]:
    _, found = parse_config_with_warnings(GENERAL + textwrap.dedent(text), Path("/nonexistent"))
    return [str(p) for p in found]


def test_an_inert_option_is_accepted_with_a_warning() -> None:
    text = """
    [[listen.c2s]]
    port = 5222
    num_acceptors = 10
    [modules.mod_ping]
    iqdisc.type = "parallel"
    """
    assert warnings_of(text) == [
        f"listen.c2s[0].num_acceptors: {INERT}",
        f"modules.mod_ping.iqdisc: {INERT}",
    ]
    # Still validated like any option, and still in the result with its value.
    cfg = parse(text)
    assert cfg["listen"]["c2s"][0]["num_acceptors"] == 10
    refused(
        "[[listen.c2s]]\nport = 5222\nnum_acceptors = 0\n",
        "listen.c2s[0].num_acceptors: expected a positive integer, got 0",
    )


def test_used_or_defaulted_options_give_no_warning() -> None:
    # hibernate_after has an effect on c2s listeners (not on s2s ones); an inert option left
    # at its default is not a warning either.
    assert warnings_of("[[listen.c2s]]\nport = 5222\nhibernate_after = 100\n") == []
    assert warnings_of("[[listen.s2s]]\nport = 5269\nhibernate_after = 100\n") == [
        f"listen.s2s[0].hibernate_after: {INERT}"
    ]
    assert warnings_of("") == []


def test_load_config_with_warnings_matches_load_config(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GENERAL + 'language = "fr"\n')
    cfg, found = load_config_with_warnings(path)
    assert cfg == load_config(path)
    assert found == [Problem("general.language", INERT)]


# --------------------------------------------------------------------------------------------
# What MongooseIM 6.4's own default configuration (rel/files/mongooseim.toml) contains: an
# operator who starts from it must get a running server, with a warning where Suricate
# does nothing. These tables are written here, not copied: they use the same options.


def test_access_rule_naming_an_undefined_acl_is_a_warning() -> None:
    # 6.4's default config refers to the classes "admin" and "blocked" without defining
    # them; MongooseIM starts, and such a clause matches nobody. A typo stays visible.
    text = """
    [access]
    c2s = [{acl = "blocked", value = "deny"}, {acl = "all", value = "allow"}]
    max_user_offline_messages = [{acl = "admin", value = 5000}, {acl = "all", value = 100}]
    """
    cfg = parse(text)
    assert cfg["access"]["c2s"][0] == {"acl": "blocked", "value": "deny"}
    assert warnings_of(text) == [
        "access.c2s[0].acl: acl 'blocked' is not defined in [acl]: this clause matches nobody",
        "access.max_user_offline_messages[0].acl: acl 'admin' is not defined in [acl]: "
        "this clause matches nobody",
    ]
    host = """
    [[host_config]]
    host = "localhost"
    [host_config.access]
    c2s = [{acl = "x", value = "deny"}]
    """
    parse(host)
    assert warnings_of(host) == [
        "host_config[0].access.c2s[0].acl: acl 'x' is not defined in [acl] or "
        "host_config[0].acl: this clause matches nobody",
    ]


def test_internal_databases_mnesia_is_accepted_with_a_warning() -> None:
    # 6.4's default config has an empty [internal_databases.mnesia]: Suricate keeps the same
    # data (sessions, stream management) in its own process, so the table changes nothing.
    cfg = parse("[internal_databases.mnesia]\n")
    assert cfg["internal_databases"] == {"mnesia": {}}
    assert warnings_of("[internal_databases.mnesia]\n") == [
        f"internal_databases.mnesia: {INERT}: Suricate keeps this data in its own process "
        '(or in Redis with sm_backend = "redis")',
    ]
    refused("[internal_databases.mnesia]\nx = 1\n", "internal_databases.mnesia.x: unknown option")
    refused(
        "[internal_databases.cets]\n",
        'internal_databases.cets: CETS is not available in this version of Suricate; nodes '
        'share their sessions through Redis (general.sm_backend = "redis", docs/cluster.md)',
    )


def test_services_of_the_64_default_config_are_accepted_with_a_warning() -> None:
    text = """
    [services.service_mongoose_system_metrics]
    report = true
    initial_report = 300_000
    periodic_report = 10_800_000
    tracking_id.id = "G-XXXX"
    tracking_id.secret = "s"

    [services.service_domain_db]
    db_pool = "global"
    event_cleaning_interval = 1800
    event_max_age = 7200
    """
    cfg = parse(text)
    assert cfg["services"]["service_domain_db"]["event_max_age"] == 7200
    assert warnings_of(text) == [
        f"services.service_mongoose_system_metrics: {INERT}: Suricate sends no usage reports",
        f"services.service_domain_db: {INERT}: Suricate always keeps dynamic domains in the "
        "database; the other nodes of a cluster re-read them when one changes them, and every "
        "10 s",
    ]
    assert warnings_of("[services.service_mongoose_system_metrics]\n") == [
        f"services.service_mongoose_system_metrics: {INERT}: Suricate sends no usage reports",
    ]
    refused("[services.service_domain_db]\nevent_max_age = 0\n",
            "services.service_domain_db.event_max_age: expected a positive integer (seconds), "
            "got 0")
    refused("[services.service_mongoose_system_metrics]\nreport = 1\n",
            "services.service_mongoose_system_metrics.report: expected a boolean, got an integer")
    refused("[services.service_x]\n", "services.service_x: unknown service")


def test_listener_shaper_naming_an_access_rule_says_what_64_changed() -> None:
    # Until 6.3 the default config gave c2s and s2s listeners the access rules "c2s_shaper"
    # and "s2s_shaper"; 6.4 wants a shaper there and refuses to start otherwise.
    text = """
    [[listen.c2s]]
    port = 5222
    shaper = "c2s_shaper"
    [access]
    c2s_shaper = [{acl = "all", value = "normal"}]
    """
    assert problems(text) == [
        "listen.c2s[0].shaper: shaper 'c2s_shaper' is not defined in [shaper] (it is an access "
        'rule: since MongooseIM 6.4 a listener names a shaper, e.g. shaper = "normal")',
    ]
    refused("[[listen.s2s]]\nport = 5269\nshaper = \"slow\"\n",
            "listen.s2s[0].shaper: shaper 'slow' is not defined in [shaper]")


def test_general_backends_of_a_single_64_node_are_accepted_with_a_warning() -> None:
    # "mnesia" is what a single MongooseIM node uses (and sm_backend = "mnesia" is already
    # accepted); "cets" is clustering, which Suricate does through Redis.
    text = '[general]\ns2s_backend = "mnesia"\ncomponent_backend = "mnesia"\n' \
        'rdbms_server_type = "pgsql"\n'
    cfg = parse(text)
    assert cfg["general"]["s2s_backend"] == "mnesia"
    assert warnings_of(text.replace("[general]\n", "")) == [
        f"general.s2s_backend: {INERT}: Suricate keeps its outgoing connections in its own "
        "process",
        f"general.component_backend: {INERT}: Suricate keeps its components in its own process",
        f"general.rdbms_server_type: {INERT}: Suricate's PostgreSQL queries need no hint",
    ]
    for key in ("s2s_backend", "component_backend"):
        refused(f'[general]\n{key} = "cets"\n',
                f"general.{key}: 'cets' is not available in this version of Suricate: use "
                '"mnesia" (or leave it out): each node keeps these in its own process, with '
                'sessions shared through sm_backend = "redis"')
    refused('[general]\nrdbms_server_type = "mssql"\n',
            "general.rdbms_server_type: 'mssql' is not available in this version of Suricate")


# --------------------------------------------------------------------------------------------
# MongooseIM 6.4 options Suricate used to refuse with a bare "not available": each now works,
# is accepted with a warning that gives the reason, or is refused saying why and what instead.

ROUTING_MODULES = (
    'routing_modules = ["mongoose_router_global", "mongoose_router_localdomain", '
    '"mongoose_router_external_localnode", "mongoose_router_external", '
    '"mongoose_router_dynamic_domains", "ejabberd_s2s"]\n'
)


def test_general_route_subdomains() -> None:
    assert parse('[general]\nroute_subdomains = "s2s"\n')["general"]["route_subdomains"] == "s2s"
    assert parse("")["general"]["route_subdomains"] is None
    refused('[general]\nroute_subdomains = "c2s"\n',
            "general.route_subdomains: expected one of s2s")


def test_host_config_general_route_subdomains() -> None:
    from suricate.config.host_config import host_view

    text = '[[host_config]]\nhost = "localhost"\n[host_config.general]\nroute_subdomains = "s2s"\n'
    cfg = parse(text)
    assert cfg["host_config"][0]["general"]["route_subdomains"] == "s2s"
    assert host_view(cfg, "localhost")["general"]["route_subdomains"] == "s2s"
    # Not given per host: the host sees the top-level value.
    cfg = parse('[[host_config]]\nhost = "localhost"\n[host_config.general]\n'
                "replaced_wait_timeout = 10\n")
    assert "route_subdomains" not in cfg["host_config"][0]["general"]
    assert host_view(cfg, "localhost")["general"]["route_subdomains"] is None
    refused('[[host_config]]\nhost = "localhost"\n[host_config.general]\n'
            'route_subdomains = "yes"\n',
            "host_config[0].general.route_subdomains: expected one of s2s")


def test_general_http_server_name() -> None:
    cfg = parse('[general]\nhttp_server_name = "Apache"\n')
    assert cfg["general"]["http_server_name"] == "Apache"
    refused('[general]\nhttp_server_name = ""\n',
            "general.http_server_name: expected a non-empty string")


def test_general_routing_modules_default_list_warns_other_lists_refused() -> None:
    assert warnings_of(ROUTING_MODULES) == [
        f"general.routing_modules: {INERT}: Suricate's router always routes to local sessions, "
        "then to services and components, then over s2s; it has no routing modules to choose",
    ]
    found = problems('[general]\nrouting_modules = ["mongoose_router_global", '
                     '"mongoose_router_localdomain"]\n')
    assert found == [
        "general.routing_modules: only MongooseIM's default list is accepted (Suricate's "
        "routing steps are fixed: local sessions, then services and components, then s2s); "
        'to turn federation off, set [s2s] default_policy = "deny"',
    ]


def test_auth_anonymous_backend_warns() -> None:
    text = '[auth]\nmethods = ["anonymous"]\nanonymous.backend = "cets"\n'
    assert parse(text)["auth"]["anonymous"]["backend"] == "cets"
    assert warnings_of(text) == [
        f"auth.anonymous.backend: {INERT}: Suricate keeps an anonymous account in the memory "
        "of the node its sessions are on, for as long as they last",
    ]


def test_mod_stream_management_backend_warns() -> None:
    for value in ("mnesia", "cets"):
        assert warnings_of(f'[modules.mod_stream_management]\nbackend = "{value}"\n') == [
            f"modules.mod_stream_management.backend: {INERT}: Suricate keeps resumable "
            'sessions in its own process; with sm_backend = "redis" they are copied to Redis '
            "(copy_to_redis) so that a client resumes on another node",
        ]
    assert warnings_of("[modules.mod_stream_management]\n") == []


def test_mod_pubsub_pep_mapping() -> None:
    text = ('[modules.mod_pubsub]\npep_mapping = [{namespace = "urn:xmpp:avatar:data", '
            'node = "flat"}]\n')
    assert parse(text)["modules"]["mod_pubsub"]["pep_mapping"] == [
        {"namespace": "urn:xmpp:avatar:data", "node": "flat"}]
    assert warnings_of(text) == []
    refused('[modules.mod_pubsub]\npep_mapping = [{namespace = "urn:xmpp:microblog:0", '
            'node = "mb"}]\n',
            "modules.mod_pubsub.pep_mapping[0].node: node plugin 'mb' is not available in this "
            'version of Suricate (only "flat" and "pep")')
    refused('[modules.mod_pubsub]\npep_mapping = [{namespace = "x"}]\n',
            "modules.mod_pubsub.pep_mapping[0].node: missing required option")


@pytest.mark.parametrize("section", ["modules.mod_mam", "modules.mod_mam.pm",
                                     "modules.mod_mam.muc"])
def test_mod_mam_erlang_and_format_options_refused_with_reason(section: str) -> None:
    text = (f"[{section}]\n" if section == "modules.mod_mam" else
            f"[modules.mod_mam]\n[{section}]\n")
    callback = ("is not available in this version of Suricate: it names an Erlang module (a "
                "MongooseIM callback), which Suricate cannot load; remove it")
    fmt = ("is not available in this version of Suricate: it picks how MongooseIM encodes its "
           "archive tables; Suricate's archive has one format of its own (docs/storage.md), "
           "into which `suricate import-mongooseim` converts a MongooseIM archive "
           "(docs/moving-in.md); remove it")
    for key, value, reason in (
        ("send_message", '"mod_mam_utils"', callback),
        ("extra_fin_element", '"example_mod"', callback),
        ("extra_lookup_params", '"example_mod"', callback),
        ("db_jid_format", '"mam_jid_rfc"', fmt),
        ("db_message_format", '"mam_message_xml"', fmt),
        ("simple", "true", fmt),
    ):
        refused(f"{text}{key} = {value}\n", f"{section}.{key}: '{key}' {reason}")
    refused(f'{text}cache.module = "internal"\n',
            f"{section}.cache: 'cache' is not available in this version of Suricate: it tunes "
            "MongooseIM's cache of archive ids; Suricate keys archives by account and needs "
            "none (cache_users keeps preferences in memory); remove it")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[outgoing_pools.rdbms.default.connection]\ndriver = "pgsql"\nhost = "h"\n'
            'database = "d"\nusername = "u"\npassword = "p"\nsettings = "DSN=mim"\n',
            "outgoing_pools.rdbms.default.connection.settings: ODBC is not available in this "
            "version of Suricate (`settings` is an ODBC connection string, and MSSQL is not "
            'supported); use driver = "pgsql", "mysql" or "sqlite" with host, database, '
            "username and password",
        ),
        (
            "[outgoing_pools.redis.default.connection]\ntls = {}\n",
            "outgoing_pools.redis.default.connection.tls: TLS to Redis is not available in this "
            "version of Suricate (nor in MongooseIM 6.4: it came with 6.5); reach Redis over "
            "loopback or a private network, or through a TLS tunnel (stunnel) on this host",
        ),
        (
            '[modules.mod_jingle_sip]\ntransport = "tls"\n',
            "modules.mod_jingle_sip.transport: expected one of udp, tcp",
        ),
        (
            "[modules.mod_websockets]\n",
            "modules.mod_websockets: not a module, in MongooseIM 6.4 either: WebSockets are "
            "served by a [[listen.http.handlers.mod_websockets]] handler (docs/http.md)",
        ),
        (
            '[[listen.service]]\nport = 8888\npassword = "secret"\n',
            "listen.service: renamed to listen.component in MongooseIM 6.4",
        ),
    ],
)
def test_64_refusals_say_why(text: str, expected: str) -> None:
    refused(text, expected)


def test_an_admin_api_without_credentials_off_loopback_is_a_warning() -> None:
    # 6.4 serves an admin endpoint without username/password; off a loopback address that
    # hands the server to whoever reaches the port, which the operator should hear about.
    def listener(ip: str, handler: str, extra: str = "") -> str:
        return (f'[[listen.http]]\nport = 5551\nip_address = "{ip}"\n'
                f'[[listen.http.handlers.{handler}]]\nhost = "_"\npath = "/api"\n{extra}')

    graphql = ("mongoose_graphql_handler", 'schema_endpoint = "admin"\n')
    (warning,) = warnings_of(listener("0.0.0.0", *graphql))
    assert warning.startswith("listen.http[0].handlers.mongoose_graphql_handler[0]: the admin "
                              "API here has no username and password, on 0.0.0.0")
    assert "127.0.0.1" in warning
    (warning,) = warnings_of(listener("192.0.2.1", "mongoose_admin_api"))
    assert warning.startswith("listen.http[0].handlers.mongoose_admin_api[0]:")
    assert warnings_of(listener("127.0.0.1", *graphql)) == []
    assert warnings_of(listener("::1", *graphql)) == []
    creds = 'schema_endpoint = "admin"\nusername = "a"\npassword = "b"\n'
    assert warnings_of(listener("0.0.0.0", "mongoose_graphql_handler", creds)) == []
    assert warnings_of(listener("0.0.0.0", "mongoose_graphql_handler",
                                'schema_endpoint = "user"\n')) == []


def test_a_web_client_with_no_endpoint_on_its_listener_is_a_warning() -> None:
    # The page takes its WebSocket/BOSH endpoints from its own listener: with neither (the
    # /chat-only snippet operations.md once showed), Converse.js loads and cannot connect.
    def listener(*handlers: str, extra: str = "") -> str:
        return '[[listen.http]]\nport = 5280\n' + "".join(
            f'[[listen.http.handlers.{h}]]\nhost = "_"\npath = "/{h}"\n'
            + (extra if h == "mod_conversejs" else "") for h in handlers)

    (warning,) = warnings_of(listener("mod_conversejs"))
    assert warning.startswith("listen.http[0].handlers.mod_conversejs[0]: the web client has "
                              "no endpoint to connect to: add a "
                              "[[listen.http.handlers.mod_websockets]]")
    assert warnings_of(listener("mod_conversejs", "mod_websockets")) == []
    assert warnings_of(listener("mod_conversejs", "mod_bosh")) == []
    assert warnings_of(listener("mod_conversejs",
                                extra='websocket_url = "wss://xmpp.example.com/ws"\n')) == []
