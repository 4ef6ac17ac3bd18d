"""Feature modules, one per file, named like MongooseIM's. ``MODULES`` maps the
``[modules.<name>]`` section names to their classes.

The mapping is lazy: its names are known without importing anything, and a module's file is
imported when its class is first looked up (``MODULES["mod_ping"]``), so a server imports only
the modules it runs (and their dependencies) at start-up. Iterating over the items imports
them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suricate.core.module import Module

#: ``[modules.<name>]`` -> class name in ``suricate/modules/<name>.py`` (its ``name``
#: attribute is the key; tests/unit check both).
_CLASSES: dict[str, str] = {
    "mod_disco": "ModDisco",
    "mod_ping": "ModPing",
    "mod_version": "ModVersion",
    "mod_last": "ModLast",
    "mod_time": "ModTime",
    "mod_private": "ModPrivate",
    "mod_vcard": "ModVcard",
    "mod_register": "ModRegister",
    "mod_blocking": "ModBlocking",
    "mod_presence": "ModPresence",
    "mod_roster": "ModRoster",
    "mod_offline": "ModOffline",
    "mod_sasl2": "ModSasl2",
    "mod_bind2": "ModBind2",
    "mod_fast_auth_token": "ModFastAuthToken",
    "mod_stream_management": "ModStreamManagement",
    "mod_carboncopy": "ModCarboncopy",
    "mod_csi": "ModCsi",
}


class ModuleRegistry(Mapping[str, "type[Module]"]):
    """Read-only name -> class mapping that imports a module's file on first lookup."""

    __slots__ = ("_classes", "_loaded")

    def __init__(self, classes: Mapping[str, str]) -> None:
        self._classes = dict(classes)
        self._loaded: dict[str, type[Module]] = {}

    def __getitem__(self, name: str) -> type[Module]:
        cls = self._loaded.get(name)
        if cls is None:
            class_name = self._classes[name]  # KeyError for an unknown name, as a dict
            module = importlib.import_module(f"{__name__}.{name}")
            cls = self._loaded[name] = getattr(module, class_name)
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"ModuleRegistry({list(self._classes)!r})"


MODULES: Mapping[str, type[Module]] = ModuleRegistry(_CLASSES)
