"""The module catalogue (``suricate.modules.MODULES``): names known without imports, classes on
lookup, every shipped module found by listing the folder, operators' modules by entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from suricate.config.catalog import CATALOG as MODULES
from suricate.config.catalog import ModuleCatalog
from suricate.config.schema import ModulesSpec
from suricate.config.spec import INVALID, Context, Section
from suricate.core.module import Module

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_file_is_registered_under_its_name() -> None:
    folder = ROOT / "suricate" / "modules"
    files = {p.stem for p in folder.glob("mod_*.py")}
    packages = {p.parent.name for p in folder.glob("mod_*/__init__.py")}
    assert packages, "at least one module is a package (mod_private)"
    assert set(MODULES.builtin_names()) == files | packages
    for name in MODULES:
        cls = MODULES[name]
        assert issubclass(cls, Module)
        assert cls.name == name
        assert MODULES[name] is cls  # looked up once
        assert isinstance(cls.options, Section)  # a [modules.<name>] section validates


def test_mapping_behaviour() -> None:
    assert "mod_ping" in MODULES
    assert "mod_nothing" not in MODULES
    assert MODULES.get("mod_nothing") is None
    assert len(MODULES) == len(list(MODULES))
    assert dict(MODULES.items())["mod_ping"] is MODULES["mod_ping"]


def test_names_import_nothing() -> None:
    # Nor are the installed packages' entry points read (importlib.metadata alone costs tens
    # of milliseconds of start-up) while every name asked for is built in.
    code = ("import sys\nfrom suricate.modules import MODULES\n"
            "assert 'mod_roster' in MODULES and 'importlib.metadata' not in sys.modules\n"
            "assert len(MODULES) > 10\n"
            "print(sorted(m for m in sys.modules if m.startswith('suricate.modules.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def _fake_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleCatalog:
    """A catalogue over a folder of its own and an entry-point group of its own, declared by
    a real (if hand-written) installed distribution on sys.path, as pip would leave it."""
    group = "suricate.test_modules"
    (tmp_path / "fake_builtin").mkdir()
    (tmp_path / "fake_builtin" / "__init__.py").write_text("")
    (tmp_path / "fake_builtin" / "mod_same.py").write_text(
        "from suricate.core.module import Module\n"
        "class ModSame(Module):\n    name = 'mod_same'\n")
    (tmp_path / "fake_plugins.py").write_text(
        "from suricate.config.spec import Int, Option, Section\n"
        "from suricate.core.module import Module\n"
        "class Good(Module):\n    name = 'mod_good'\n"
        "    options = Section({'n': Option(Int(), 1, 'A number.')})\n"
        "class Misnamed(Module):\n    name = 'mod_other'\n"
        "class Same(Module):\n    name = 'mod_same'\n"
        "def not_a_class():\n    pass\n")
    (tmp_path / "fake_broken.py").write_text("import no_such_dependency_anywhere\n")
    dist = tmp_path / "fake_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{group}]\n"
        "mod_good = fake_plugins:Good\n"
        "mod_misnamed = fake_plugins:Misnamed\n"
        "mod_broken = fake_broken:Broken\n"
        "mod_function = fake_plugins:not_a_class\n"
        "mod_same = fake_plugins:Same\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return ModuleCatalog(package="fake_builtin", group=group)


def test_plugins_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = _fake_catalog(tmp_path, monkeypatch)
    assert catalog.builtin_names() == ["mod_same"]
    # A shipped module wins over a plugin of the same name.
    assert catalog.plugin_names() == ["mod_broken", "mod_function", "mod_good", "mod_misnamed"]
    assert catalog["mod_same"].__module__ == "fake_builtin.mod_same"
    assert catalog["mod_good"].name == "mod_good"

    spec = ModulesSpec(catalog, {"mod_gone": "module is not available"})
    ctx = Context(tmp_path)
    out = spec.normalize({"mod_good": {"n": "x"}, "mod_misnamed": {}, "mod_broken": {},
                          "mod_function": {}, "mod_gone": {}, "mod_typo": {}}, "modules", ctx)
    assert out is INVALID
    problems = {p.path: p.message for p in ctx.problems}
    assert problems.keys() == {"modules.mod_good.n", "modules.mod_misnamed",
                               "modules.mod_broken", "modules.mod_function", "modules.mod_gone",
                               "modules.mod_typo"}
    assert problems["modules.mod_misnamed"] == (
        "entry point 'fake_plugins:Misnamed' is registered as 'mod_misnamed' but its class is "
        "named 'mod_other'")
    assert problems["modules.mod_broken"].startswith(
        "entry point 'fake_broken:Broken' (suricate.test_modules) could not be loaded: ")
    assert "no_such_dependency_anywhere" in problems["modules.mod_broken"]
    assert "is not a class" in problems["modules.mod_function"]
    assert problems["modules.mod_typo"] == "unknown module"

    ctx = Context(tmp_path)
    assert spec.normalize({"mod_good": {}}, "modules", ctx) == {"mod_good": {"n": 1}}
    assert not ctx.problems
