"""TOML configuration: loading, validation, defaults (MongooseIM 6.4 option names).

`load_config(path)` / `parse_config(text, base_dir)` return a plain nested dict in which every
section and every option is present; `ConfigError.problems` lists everything that was refused.
The `*_with_warnings` variants also return the options accepted but without effect.
"""

from suricate.config.loader import (
    load_config,
    load_config_with_warnings,
    parse_config,
    parse_config_with_warnings,
)
from suricate.config.spec import ConfigError, Problem

__all__ = [
    "ConfigError",
    "Problem",
    "load_config",
    "load_config_with_warnings",
    "parse_config",
    "parse_config_with_warnings",
]
