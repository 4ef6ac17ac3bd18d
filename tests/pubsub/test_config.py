"""[modules.mod_pubsub] and [modules.mod_caps]: MongooseIM 6.4 names; what this version does
not implement is refused with the TOML path, never accepted silently."""

from __future__ import annotations

import pytest

from tests.unit.test_config import parse, problems


def test_defaults() -> None:
    opts = parse("[modules.mod_pubsub]\n[modules.mod_caps]\n")["modules"]
    assert opts["mod_pubsub"]["host"] == "pubsub.@HOST@"
    assert opts["mod_pubsub"]["max_items_node"] == 10
    assert opts["mod_pubsub"]["plugins"] == ["flat", "pep"]
    assert opts["mod_caps"]["cache_size"] == 1000


def test_default_node_config_is_checked() -> None:
    opts = parse('[modules.mod_pubsub]\ndefault_node_config = {access_model = "open", '
                 'max_items = "max"}\n')["modules"]["mod_pubsub"]
    assert opts["default_node_config"] == {"access_model": "open", "max_items": "max"}


@pytest.mark.parametrize(("toml", "expected"), [
    ('pep_mapping = [{namespace = "urn:xmpp:microblog:0", node = "mb"}]',
     "modules.mod_pubsub.pep_mapping[0].node: node plugin 'mb' is not available in this "
     "version"),
    ('last_item_cache = "mnesia"',
     "modules.mod_pubsub.last_item_cache: 'mnesia' is not available in this version"),
    ('plugins = ["dag"]', "modules.mod_pubsub.plugins[0]: 'dag' is not available in this version"),
    ('nodetree = "dag"', "modules.mod_pubsub.nodetree: 'dag' is not available in this version"),
    ('backend = "mnesia"', "modules.mod_pubsub.backend: backend 'mnesia' is not available"),
    ("default_node_config = {colour = 1}", "modules.mod_pubsub.default_node_config.colour: "
     "not a node configuration option"),
    ('default_node_config = {access_model = "everyone"}',
     "modules.mod_pubsub.default_node_config.access_model: invalid value 'everyone'"),
])
def test_refused(toml: str, expected: str) -> None:
    found = problems(f"[modules.mod_pubsub]\n{toml}\n")
    assert any(p.startswith(expected) for p in found), found
