"""Feature modules, one per file, named like MongooseIM's. ``MODULES`` maps the
``[modules.<name>]`` section names to their classes."""

from __future__ import annotations

from suricate.core.module import Module

MODULES: dict[str, type[Module]] = {}
