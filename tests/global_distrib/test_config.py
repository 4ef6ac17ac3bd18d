"""mod_global_distrib's options: MongooseIM 6.4's names and defaults, and each problem named
at its TOML path (no Redis, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.config import ConfigError, parse_config

BASE = """
[general]
hosts = ["example.com", "dc1.example.com"]
default_server_domain = "example.com"

[outgoing_pools.redis.global_distrib.connection]
host = "127.0.0.1"
"""


def _problems(module: str) -> set[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "[modules.mod_global_distrib]\n" + module, Path("."))
    return {str(p) for p in err.value.problems}


def test_defaults_are_those_of_6_4() -> None:
    cfg = parse_config(BASE + """
[modules.mod_global_distrib]
global_host = "example.com"
local_host = "dc1.example.com"
""", Path("."))
    opts = cfg["modules"]["mod_global_distrib"]
    assert opts["message_ttl"] == 4
    assert opts["hosts_refresh_interval"] == 3000
    assert opts["connections"]["connections_per_endpoint"] == 1
    assert opts["connections"]["endpoint_refresh_interval"] == 60
    assert opts["connections"]["endpoint_refresh_interval_when_empty"] == 3
    assert opts["connections"]["disabled_gc_interval"] == 60
    assert opts["connections"]["advertised_endpoints"] is False
    assert "tls" not in opts["connections"]
    assert opts["redis"] == {"pool": "global_distrib", "expire_after": 120, "refresh_after": 60}
    assert opts["cache"] == {"cache_missed": True, "domain_lifetime_seconds": 600,
                             "jid_lifetime_seconds": 5, "max_jids": 10000}
    assert opts["bounce"] == {"enabled": True, "resend_after_ms": 200, "max_retries": 4}


def test_problems_are_named_at_their_toml_path() -> None:
    found = _problems("""
global_host = "example.com"
local_host = "dc9.example.com"
message_ttl = -1
connections.endpoints = [{host = "10.0.0.1", port = 70000}]
connections.advertised_endpoints = true
connections.tls.keyfile = "nothing.key"
redis.pool = "other"
bounce.max_retries = "4"
""")
    p = "modules.mod_global_distrib"
    assert f"{p}.local_host: 'dc9.example.com' is not one of general.hosts" in found
    assert any(x.startswith(f"{p}.message_ttl: ") for x in found)
    assert any(x.startswith(f"{p}.connections.endpoints[0].port: ") for x in found)
    assert any(x.startswith(f"{p}.connections.advertised_endpoints: ") for x in found)
    assert any(x.startswith(f"{p}.connections.tls.keyfile: ") for x in found)
    assert f"{p}.redis.pool: pool 'other' is not defined in [outgoing_pools.redis]" in found
    assert any(x.startswith(f"{p}.bounce.max_retries: ") for x in found)


def test_tls_needs_the_certificate_the_endpoints_present(tmp_path: Path) -> None:
    from tests.s2s.pki import CertificateAuthority
    authority = CertificateAuthority(tmp_path)
    ca = Path(authority.certfile)
    found = _problems(f"""
global_host = "example.com"
local_host = "dc1.example.com"
connections.tls.cacertfile = "{ca}"
""")
    assert ("modules.mod_global_distrib.connections.tls.certfile: required: the endpoints "
            "present this certificate to the other data centres' connections") in found


def test_global_and_local_host_differ() -> None:
    found = _problems('global_host = "example.com"\nlocal_host = "example.com"\n')
    assert "modules.mod_global_distrib.local_host: must differ from global_host" in found


def test_unreachable_global_redis_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.e2e.harness import free_port

    config = tmp_path / "dc1.toml"
    config.write_text(BASE.replace('host = "127.0.0.1"',
                                   f'host = "127.0.0.1"\nport = {free_port()}') + f"""
[[listen.c2s]]
port = {free_port()}
ip_address = "127.0.0.1"

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp_path / 'suricate.db'}"

[modules.mod_global_distrib]
global_host = "example.com"
local_host = "dc1.example.com"
connections.endpoints = [{{host = "127.0.0.1", port = 0}}]
""")
    done = subprocess.run([sys.executable, "-m", "suricate", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("suricate: cannot start: mod_global_distrib's Redis "
                           "(outgoing_pools.redis.global_distrib): "), done.stderr
