"""Every migration folder speaks every dialect: a module (or the core) that stores something
ships the same numbered scripts for SQLite, PostgreSQL and MySQL/MariaDB, creating the same
tables. A new module without, say, its mysql scripts fails here with what to add, rather than
at an operator's start-up on that database."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

import suricate
from suricate.config.catalog import ModuleCatalog
from suricate.core.module import open_module_store
from suricate.storage.module_store import module_versions
from suricate.storage.sql import DIALECTS, SqlStorage, load_migrations

ROOT = Path(suricate.__file__).parent
_SCRIPT = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.I)
#: A table renamed within its script (SQLite's way to change a primary key: build a copy,
#: drop the old one, give the copy its name) is not a new table of that migration.
_RENAMED = re.compile(r"ALTER TABLE (\w+) RENAME TO", re.I)

# The core's folder and every module's, found on disk: a new module is covered without being
# listed here.
FOLDERS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("**/migrations")
                 if p.is_dir() and "__pycache__" not in p.parts)


#: Bookkeeping a single dialect needs, by design: PostgreSQL keys mam_message by archive
#: (mod_mam's 0002) and so keeps the largest id in a table of its own, where the other
#: dialects read it at the end of their key on id (docs/mam.md, "Storage").
_DIALECT_ONLY = {"mam_id_ceiling"}


def _created(sql: str) -> set[str]:
    """The tables a script leaves behind that it made (but ``_DIALECT_ONLY``'s)."""
    code = _code(sql)
    return set(_TABLE.findall(code)) - set(_RENAMED.findall(code)) - _DIALECT_ONLY


def _code(sql: str) -> str:
    """The script without its `--` comments."""
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _package(folder: str) -> str:
    return "suricate." + folder.removesuffix("/migrations").replace("/", ".")


def test_folders_are_found() -> None:
    assert "storage/migrations" in FOLDERS
    assert "modules/mod_roster/migrations" in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_dialect_has_the_same_migrations(folder: str) -> None:
    base = ROOT / folder
    scripts = {
        d: sorted(f.name for f in (base / d).glob("*.sql") if _SCRIPT.match(f.name))
        for d in DIALECTS if (base / d).is_dir()
    }
    missing = [d for d in DIALECTS if not scripts.get(d)]
    assert not missing, (
        f"suricate/{folder} has no migrations for {', '.join(missing)}: add "
        f"suricate/{folder}/{missing[0]}/0001_<name>.sql with the same tables as the "
        f"other dialects (MySQL conventions: docs/storage.md, 'Writing a migration')")
    reference = scripts[DIALECTS[0]]
    for dialect in DIALECTS[1:]:
        assert scripts[dialect] == reference, (
            f"suricate/{folder}: {dialect} has {scripts[dialect]} but {DIALECTS[0]} has "
            f"{reference}: every dialect needs the same numbered scripts")
    package = _package(folder)
    loaded = {d: load_migrations(d, package) for d in DIALECTS}
    for number, script in enumerate(reference):
        tables = {d: _created(loaded[d][number].sql) for d in DIALECTS}
        for dialect in DIALECTS[1:]:
            assert tables[dialect] == tables[DIALECTS[0]], (
                f"suricate/{folder}/{dialect}/{script} creates {sorted(tables[dialect])}, "
                f"{DIALECTS[0]} creates {sorted(tables[DIALECTS[0]])}")


def test_mysql_scripts_follow_the_conventions() -> None:
    """InnoDB + utf8mb4_bin on every MySQL table; re-runnable DDL (MySQL commits DDL
    implicitly, so an interrupted migration is run again from its first statement)."""
    for folder in FOLDERS:
        for script in sorted((ROOT / folder / "mysql").glob("*.sql")):
            sql = _code(script.read_text())
            where = f"suricate/{folder}/mysql/{script.name}"
            for table in re.findall(r"CREATE TABLE[^;]*;", sql, re.S):
                assert "IF NOT EXISTS" in table, f"{where}: CREATE TABLE IF NOT EXISTS"
                assert "ENGINE=InnoDB" in table, f"{where}: ENGINE=InnoDB"
                assert "CHARSET=utf8mb4" in table and "COLLATE=utf8mb4_bin" in table, (
                    f"{where}: DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
            assert not re.search(r"\bCREATE\s+(UNIQUE\s+)?INDEX\b", sql, re.I), (
                f"{where}: declare indexes inside CREATE TABLE (MySQL has no "
                "CREATE INDEX IF NOT EXISTS)")


def test_every_module_store_has_its_migrations_in_every_dialect() -> None:
    """A module's `store_class.migrations` names a package with every dialect's folder
    (plugins included: what the catalogue knows, the server may load)."""
    catalog = ModuleCatalog()
    checked = 0
    for name in catalog.builtin_names():
        store = getattr(catalog[name], "store_class", None)
        package = getattr(store, "migrations", None)
        if package is None:
            continue
        for dialect in DIALECTS:
            folder = resources.files(package).joinpath("migrations", dialect)
            assert folder.is_dir(), f"{name}: no migrations/{dialect}/ in {package}"
        checked += 1
    assert checked >= 10


def _module_stores() -> list[tuple[str, type]]:
    catalog = ModuleCatalog()
    found = []
    for name in catalog.builtin_names():
        store = getattr(catalog[name], "store_class", None)
        if store is not None and store.migrations is not None:
            found.append((name, store))
    return found


async def test_every_module_migrates_on_every_backend(storage: SqlStorage) -> None:
    """Every module's scripts run on a real database of each backend (the storage fixture:
    SQLite, PostgreSQL, MariaDB), twice (the second start applies nothing), whether or not
    the module has store tests of its own: a MySQL key over InnoDB's 3072 bytes or a typo in
    one dialect fails here."""
    stores = _module_stores()
    for name, store_class in stores:
        await open_module_store(storage, name, store_class)
        await open_module_store(storage, name, store_class)
        versions = await module_versions(storage, name)
        assert versions == [m.version for m in load_migrations(storage.dialect,
                                                                store_class.migrations)], name
    if storage.dialect == "mysql":
        rows = await storage._fetch(
            "SELECT table_name, engine, table_collation FROM information_schema.tables"
            " WHERE table_schema = DATABASE()")
        assert len(rows) > len(stores)
        wrong = [row for row in rows if (row[1], row[2]) != ("InnoDB", "utf8mb4_bin")]
        assert not wrong, f"tables not InnoDB/utf8mb4_bin: {wrong}"
