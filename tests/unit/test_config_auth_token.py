"""[modules.mod_auth_token] and [modules.mod_keystore]: accepted as in MongooseIM 6.4, and what
cannot work is refused at its TOML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import parse
from tests.unit.test_config import problems as problem_list

KEYSTORE = '[modules.mod_keystore]\nkeys = [{name = "token_secret", type = "ram"}]\n'


def problems(text: str) -> str:
    return "\n".join(problem_list(text))


def test_defaults_as_in_mongooseim() -> None:
    cfg = parse(KEYSTORE + "[modules.mod_auth_token]\n")
    opts = cfg["modules"]["mod_auth_token"]
    assert opts["backend"] == "rdbms"
    assert opts["iqdisc"]["type"] == "no_queue"
    assert opts["validity_period"] == {"access": {"value": 1, "unit": "hours"},
                                       "refresh": {"value": 25, "unit": "days"}}
    assert cfg["modules"]["mod_keystore"]["ram_key_size"] == 2048
    assert "oauth" in cfg["auth"]["sasl_mechanisms"]


def test_options_are_read() -> None:
    cfg = parse(
        '[modules.mod_keystore]\nkeys = [{name = "token_secret", type = "file", path = "k"}]\n'
        '[modules.mod_auth_token]\nvalidity_period.access = {value = 13, unit = "minutes"}\n')
    assert cfg["modules"]["mod_auth_token"]["validity_period"]["access"] == {
        "value": 13, "unit": "minutes"}
    assert cfg["modules"]["mod_keystore"]["keys"] == [
        {"name": "token_secret", "type": "file", "path": "k"}]


@pytest.mark.parametrize(("text", "expected"), [
    ("[modules.mod_auth_token]\n",
     "modules.mod_auth_token: needs a key named 'token_secret' in modules.mod_keystore.keys"),
    ('[modules.mod_keystore]\nkeys = [{name = "other", type = "ram"}]\n'
     "[modules.mod_auth_token]\n",
     "modules.mod_auth_token: needs a key named 'token_secret'"),
    (KEYSTORE + '[modules.mod_auth_token]\nbackend = "mnesia"\n',
     "modules.mod_auth_token.backend"),
    (KEYSTORE + '[modules.mod_auth_token]\nvalidity_period.provision = '
     '{value = 1, unit = "days"}\n',
     "modules.mod_auth_token.validity_period.provision: unknown option"),
    (KEYSTORE + '[modules.mod_auth_token]\nvalidity_period.access = '
     '{value = 1, unit = "weeks"}\n',
     "modules.mod_auth_token.validity_period.access.unit"),
    ('[modules.mod_keystore]\nkeys = [{name = "token_secret", type = "file"}]\n',
     'modules.mod_keystore.keys[0].path: required when type is "file"'),
    ('[modules.mod_keystore]\nkeys = [{name = "k", type = "ram", path = "x"}]\n',
     'modules.mod_keystore.keys[0].path: only allowed when type is "file"'),
    ('[modules.mod_keystore]\nkeys = [{name = "k", type = "mnesia"}]\n',
     "modules.mod_keystore.keys[0].type"),
    ('[modules.mod_keystore]\nkeys = [{name = "k", type = "ram"}, {name = "k", type = "ram"}]\n',
     "modules.mod_keystore.keys[1].name: key 'k' is defined twice"),
    ('[general]\nsm_backend = "redis"\n[outgoing_pools.redis.default]\n' + KEYSTORE,
     "modules.mod_keystore.keys[0].type: ram keys differ on every node"),
    ('[auth]\nsasl_mechanisms = ["digest"]\n',
     "auth.sasl_mechanisms: mechanism 'digest' is not available"),
])
def test_refused_at_its_path(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_a_missing_key_file_stops_the_start(tmp_path: Path) -> None:
    import asyncio

    from suricate.config.spec import ConfigError as StartError
    from suricate.modules.mod_keystore import ModKeystore

    class FakeServer:
        base_dir = tmp_path

    mod = ModKeystore(FakeServer(), {"ram_key_size": 16, "keys": [  # type: ignore[arg-type]
        {"name": "token_secret", "type": "file", "path": "missing.key"}]})
    with pytest.raises(StartError) as err:
        asyncio.run(mod.start())
    assert "modules.mod_keystore.keys[0].path: cannot read key file" in str(err.value)
