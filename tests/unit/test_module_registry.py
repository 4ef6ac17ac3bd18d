"""The module catalogue (``suricate.modules.MODULES``): names known without imports, classes on
lookup, every shipped module found by listing the folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from suricate.config.catalog import CATALOG as MODULES
from suricate.config.spec import Section
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
    code = ("import sys\nfrom suricate.modules import MODULES\n"
            "assert 'mod_roster' in MODULES and len(MODULES) > 10\n"
            "print(sorted(m for m in sys.modules if m.startswith('suricate.modules.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
