"""Configuration of the small modules (no storage, few options): MongooseIM 6.4's options and
defaults, and each refusal naming its TOML path."""

from __future__ import annotations

import pytest

from tests.unit.test_config import parse, refused, warnings_of

# -- mod_offline_stub: no options ------------------------------------------------------------


def test_offline_stub_has_no_options() -> None:
    assert parse("[modules.mod_offline_stub]\n")["modules"]["mod_offline_stub"] == {}
    refused("[modules.mod_offline_stub]\nx = 1\n", "modules.mod_offline_stub.x: unknown option")


# -- mod_amp: no options (MongooseIM 6.4 has none) -------------------------------------------


def test_amp_has_no_options() -> None:
    assert parse("[modules.mod_amp]\n")["modules"]["mod_amp"] == {}
    refused("[modules.mod_amp]\nplugins = []\n", "modules.mod_amp.plugins: unknown option")
    refused("[modules.mod_amp]\niqdisc.type = \"one_queue\"\n",
            "modules.mod_amp.iqdisc: unknown option")


# -- mod_sic: iqdisc only ----------------------------------------------------------------------


def test_sic_options() -> None:
    assert parse("[modules.mod_sic]\n")["modules"]["mod_sic"]["iqdisc"]["type"] == "one_queue"
    refused("[modules.mod_sic]\nx = 1\n", "modules.mod_sic.x: unknown option")
    refused('[modules.mod_sic]\niqdisc.type = "serial"\n',
            "modules.mod_sic.iqdisc.type: expected one of one_queue, no_queue, queues, parallel")


# -- mod_extdisco: [[modules.mod_extdisco.service]] ---------------------------------------------


def test_extdisco_services_accepted() -> None:
    text = """
    [modules.mod_extdisco]
      [[modules.mod_extdisco.service]]
        type = "stun"
        host = "stun.localhost"
        port = 3478
        transport = "udp"
      [[modules.mod_extdisco.service]]
        type = "turn"
        host = "192.168.0.2"
        username = "user"
        password = "pass"
    """
    extdisco = parse(text)["modules"]["mod_extdisco"]
    assert extdisco["iqdisc"]["type"] == "no_queue"  # 6.4's default for this module
    assert extdisco["service"] == [
        {"type": "stun", "host": "stun.localhost", "port": 3478, "transport": "udp",
         "username": None, "password": None, "secret": None, "credentials_lifetime": 86400},
        {"type": "turn", "host": "192.168.0.2", "port": None, "transport": None,
         "username": "user", "password": "pass", "secret": None,
         "credentials_lifetime": 86400},
    ]
    assert parse("[modules.mod_extdisco]\n")["modules"]["mod_extdisco"]["service"] == []


SERVICE = '[[modules.mod_extdisco.service]]\n'


@pytest.mark.parametrize(("text", "expected"), [
    ('host = "turn.localhost"', "modules.mod_extdisco.service[0].type: missing required option"),
    ('type = "turn"', "modules.mod_extdisco.service[0].host: missing required option"),
    ('type = "turn"\nhost = ""',
     "modules.mod_extdisco.service[0].host: expected a non-empty string"),
    ('type = "stun"\nhost = "h"\nport = 70000',
     "modules.mod_extdisco.service[0].port: expected an integer from 0 to 65535, got 70000"),
    ('type = "stun"\nhost = "h"\nport = "3478"',
     "modules.mod_extdisco.service[0].port: expected an integer from 0 to 65535, got a string"),
    ('type = "stun"\nhost = "h"\ntransport = "sctp"',
     "modules.mod_extdisco.service[0].transport: expected one of udp, tcp"),
    ('type = "turn"\nhost = "h"\nusername = ""',
     "modules.mod_extdisco.service[0].username: expected a non-empty string"),
    # As in MongooseIM: credentials are fixed or derived from the secret, never both.
    ('type = "turn"\nhost = "h"\nsecret = "k"\nusername = "u"',
     "modules.mod_extdisco.service[0].username: cannot be set together with secret"),
    ('type = "turn"\nhost = "h"\nsecret = "k"\npassword = "p"',
     "modules.mod_extdisco.service[0].password: cannot be set together with secret"),
    ('type = "turn"\nhost = "h"\nsecret = ""',
     "modules.mod_extdisco.service[0].secret: expected a non-empty string"),
    ('type = "turn"\nhost = "h"\nsecret = "k"\ncredentials_lifetime = 0',
     "modules.mod_extdisco.service[0].credentials_lifetime: expected a positive integer "
     "(seconds), got 0"),
    ('type = "turn"\nhost = "h"\ncredentials_lifetime = 60',
     "modules.mod_extdisco.service[0].credentials_lifetime: only applies to a service with a "
     "secret"),
    ('type = "turn"\nhost = "h"\nexpires = 60',
     "modules.mod_extdisco.service[0].expires: unknown option"),
])
def test_extdisco_service_refused(text: str, expected: str) -> None:
    refused(SERVICE + text + "\n", expected)


def test_extdisco_secret_accepted() -> None:
    service = parse(SERVICE + 'type = "turn"\nhost = "h"\nsecret = "k"\n'
                    'credentials_lifetime = 600\n')["modules"]["mod_extdisco"]["service"][0]
    assert (service["secret"], service["credentials_lifetime"]) == ("k", 600)


@pytest.mark.parametrize(("text", "expected"), [
    ('type = "stun"\nhost = "h"',
     ["modules.mod_extdisco.service[0].port: a stun service without port and transport is "
      "skipped by calling clients (Conversations)"]),
    ('type = "turn"\nhost = "h"\nport = 3478\ntransport = "udp"\nusername = "u"',
     ["modules.mod_extdisco.service[0]: a turn service without username and password (or "
      "secret) is skipped by calling clients (WebRTC needs credentials for TURN)"]),
    ('type = "turns"\nhost = "h"\nport = 5349\ntransport = "udp"\nsecret = "k"',
     ["modules.mod_extdisco.service[0].transport: turns over udp is skipped by calling "
      "clients (Conversations: TLS runs over tcp)"]),
    ('type = "turn"\nhost = "h"\nport = 3478\ntransport = "tcp"\nsecret = "k"', []),
    ('type = "ftp"\nhost = "h"', []),
])
def test_extdisco_warns_of_services_calling_clients_skip(text: str, expected: list[str]) -> None:
    # XEP-0215 allows them; Conversations builds ICE servers only from complete ones.
    assert warnings_of(SERVICE + text + "\n") == expected


def test_extdisco_service_must_be_an_array_of_tables() -> None:
    refused('[modules.mod_extdisco]\nservice = {type = "stun", host = "h"}\n',
            "modules.mod_extdisco.service: expected an array of tables, got a table")


# -- mod_domain_isolation: no options --------------------------------------------------------


def test_domain_isolation_has_no_options() -> None:
    assert parse("[modules.mod_domain_isolation]\n")["modules"]["mod_domain_isolation"] == {}
    refused("[modules.mod_domain_isolation]\nx = 1\n",
            "modules.mod_domain_isolation.x: unknown option")
