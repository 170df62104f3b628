"""A database is its module under tasks/dialects/: it provides the declared surface (`surface.Database`: no
abstract method left, its declarations true), and a copy of zonesync without mariadb.py knows no MariaDB while
nothing else in it breaks (what adding a database means, shown the other way round)."""

from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zonesync.tasks import dialects
from zonesync.tasks.dialects.surface import Database

ROOT = Path(__file__).resolve().parents[2]
DATABASE_MODULES = ["mariadb", "postgresql", "sqlite"]


def test_the_database_modules_are_found_by_their_declarations() -> None:
    assert sorted(found.module for found in dialects.declared()) == DATABASE_MODULES


@pytest.mark.parametrize("module", DATABASE_MODULES)
def test_each_database_module_provides_the_declared_surface(module: str) -> None:
    """What a new database must provide is the abstract methods of its four pieces; its declarations (read from
    its source without importing it) must say what the module itself does."""
    loaded = importlib.import_module(f"zonesync.tasks.dialects.{module}")
    database = loaded.DATABASE
    assert isinstance(database, Database)
    pieces = [database.dialect, type(database.reconciling), database.installing, type(database.connecting)]
    assert {piece.__name__: sorted(piece.__abstractmethods__) for piece in pieces if inspect.isabstract(piece)} == {}
    declared = next(found for found in dialects.declared() if found.module == module)
    assert all(dialects.database(name) is database for name in declared.url_names)
    drivers = {kind.__module__.partition(".")[0] for kind in database.errors.driver_errors}
    assert drivers and drivers <= set(declared.driver_packages)


def test_naming_one_database_loads_only_its_module() -> None:
    """`zonesync --help` imports the package and pays for no database module; SQLite pays for no server driver."""
    probe = textwrap.dedent(
        """
        import sys
        from zonesync.tasks import dialects
        loaded = lambda: sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("zonesync.tasks.dialects."))
        print(dialects.supported_names(), loaded(), "sqlalchemy" in sys.modules)
        dialects.database("sqlite")
        print(loaded(), "psycopg" in sys.modules, "pymysql" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    first, second = result.stdout.splitlines()
    assert first == "['mariadb', 'mysql', 'postgres', 'postgresql', 'sqlite'] [] False"
    assert second.endswith("] False False") and "'sqlite'" in second and "'postgresql'" not in second


# Runs in the copy: the installed zonesync's import hook is taken out, so `zonesync` is the copy's.
PROBE = textwrap.dedent(
    """
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, sys.argv[1])
    import polars as pl
    import sqlalchemy as sa
    from zonesync.schemas.errors import ConfigError
    from zonesync.tasks import dialects
    from zonesync.tasks.zones import engines
    assert dialects.__file__.startswith(sys.argv[1]), dialects.__file__
    print("supported:", ", ".join(dialects.supported_names()))
    try:
        engines.parse_url("mysql://root@127.0.0.1/db", setting="ZONESYNC_INTERNET_URL")
    except ConfigError as exc:
        print("refused:", exc)
    engine = engines.create_engine(engines.parse_url(f"sqlite:///{sys.argv[1]}/zone.db", setting="S"))
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text))
    table.create(engine)
    dialect = engines.dialect_for(engine)
    frame = pl.DataFrame({"id": [1, 2], "v": ["a", "b"]})
    engines.in_transaction(engine, lambda conn: dialect.upsert(conn, table, frame, ["id"]))
    count = sa.select(sa.func.count()).select_from(table)
    print("sqlite rows:", engines.in_transaction(engine, lambda conn: conn.execute(count).scalar()))
    """
)


def test_a_copy_without_one_database_module_knows_no_such_database(tmp_path: Path) -> None:
    copy = tmp_path / "zonesync"
    for layer in ("schemas", "tasks", "flows", "deployments"):
        shutil.copytree(ROOT / layer, copy / layer, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tasks" / "dialects" / "mariadb.py").unlink()

    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "supported: postgres, postgresql, sqlite",
        "refused: ZONESYNC_INTERNET_URL uses unsupported database 'mysql' (supported: postgres, postgresql, sqlite)",
        "sqlite rows: 2",
    ]
