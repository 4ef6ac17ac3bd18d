"""Where feature modules come from: the catalogue of `[modules.<name>]` sections.

Two sources, one lookup:
- the modules shipped with Suricate: every `mod_*` file or package of `suricate/modules/`,
  found by listing the folder (nothing to register: adding a module touches no central file);
- operators' own modules, installed as Python packages that declare an entry point in the group
  `suricate.modules` whose name is the section name (`mod_hello = "mod_hello:ModHello"`).

A module's file is imported the first time its class is looked up, so the configuration check
and the server import only the modules a configuration names (start-up time, DESIGN §3). The
class is the one in that file whose `name` attribute is the section name. The catalogue works
by name and import path only (`importlib`): the config layer stays below the modules it
describes, and a plugin catalogue is by nature resolved at run time.

A shipped module wins over an installed plugin of the same name: a package cannot replace a
built-in feature behind the operator's back.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.spec import Section

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("suricate.config")

#: The entry-point group operators' packages register their modules in.
ENTRY_POINT_GROUP = "suricate.modules"
BUILTIN_PACKAGE = "suricate.modules"


class ModuleNotLoadable(Exception):
    """A module's file or plugin could not be imported, or holds no class of that name."""


class ModuleCatalog(Mapping[str, Any]):
    """Section name -> module class, importing each module on first lookup."""

    __slots__ = ("_builtin", "_entry_points", "_loaded", "_package", "_group")

    def __init__(self, package: str = BUILTIN_PACKAGE, group: str = ENTRY_POINT_GROUP) -> None:
        self._package = package
        self._group = group
        self._builtin: list[str] | None = None
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Any] = {}

    # -- names -----------------------------------------------------------------------------
    def builtin_names(self) -> list[str]:
        if self._builtin is None:
            spec = importlib.util.find_spec(self._package)
            paths = list(spec.submodule_search_locations or []) if spec else []
            self._builtin = sorted(
                info.name for info in pkgutil.iter_modules(paths) if info.name.startswith("mod_")
            )
        return self._builtin

    def plugin_names(self) -> list[str]:
        return sorted(n for n in self._plugins() if n not in self.builtin_names())

    def _plugins(self) -> dict[str, EntryPoint]:
        # Reading the installed distributions' metadata costs milliseconds, and importing
        # importlib.metadata (email, csv, zipfile...) tens of them: both only done when a name
        # is not built in, or when every module is listed.
        if self._entry_points is None:
            from importlib.metadata import entry_points

            found = entry_points(group=self._group)
            self._entry_points = {ep.name: ep for ep in found}
        return self._entry_points

    # -- lookup ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        cls = self._loaded.get(name)
        if cls is not None:
            return cls
        if name in self.builtin_names():
            cls = self._from_file(f"{self._package}.{name}", name)
        elif name in self._plugins():
            cls = self._from_entry_point(self._plugins()[name], name)
        else:
            raise KeyError(name)
        self._loaded[name] = cls
        return cls

    def _from_file(self, module_path: str, name: str) -> Any:
        module = importlib.import_module(module_path)
        for value in vars(module).values():
            if (isinstance(value, type) and getattr(value, "name", None) == name
                    and value.__module__.startswith(module_path)):
                return value
        raise ModuleNotLoadable(f"{module_path} defines no module class named {name!r}")

    def _from_entry_point(self, ep: EntryPoint, name: str) -> Any:
        try:
            cls = ep.load()
        except Exception as exc:  # an operator's package failing to import is their bug
            raise ModuleNotLoadable(
                f"entry point {ep.value!r} ({self._group}) could not be loaded: {exc}") from exc
        if not isinstance(cls, type):
            raise ModuleNotLoadable(f"entry point {ep.value!r} ({self._group}) is not a class")
        if getattr(cls, "name", None) != name:
            raise ModuleNotLoadable(
                f"entry point {ep.value!r} is registered as {name!r} but its class is named "
                f"{getattr(cls, 'name', None)!r}")
        if not isinstance(getattr(cls, "options", None), Section):
            # Checked here because check-config validates the section with it.
            raise ModuleNotLoadable(
                f"entry point {ep.value!r}: the class has no options Section "
                "(subclass suricate.core.module.Module)")
        return cls

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self.builtin_names() or name in self._plugins()

    def __iter__(self) -> Iterator[str]:
        yield from self.builtin_names()
        yield from self.plugin_names()

    def __len__(self) -> int:
        return len(self.builtin_names()) + len(self.plugin_names())

    def __repr__(self) -> str:
        return f"ModuleCatalog({self._package!r}, {self._group!r})"


#: The catalogue every part of Suricate uses. Its caches only ever remember what an import
#: would (like `sys.modules`): a table of constants, not run-time state.
CATALOG = ModuleCatalog()


def module_options(catalog: Mapping[str, Any], name: str) -> Any:
    """The `Section` spec of `[modules.<name>]` (the class attribute `options`)."""
    return catalog[name].options
