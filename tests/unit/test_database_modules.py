"""A database is its module under tasks/dialects/: a copy of zonesync without mariadb.py knows no MariaDB, and
nothing else in it breaks (what adding a database means, shown the other way round)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in the copy: the installed zonesync's import hook is taken out, so `zonesync` is the copy's.
PROBE = textwrap.dedent(
    """
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, sys.argv[1])
    import polars as pl
    import sqlalchemy as sa
    from zonesync.schemas.errors import ConfigError
    from zonesync.tasks import dialects, engines
    assert dialects.__file__.startswith(sys.argv[1]), dialects.__file__
    print("supported:", ", ".join(dialects.supported_names()))
    try:
        engines.parse_url("mysql://root@127.0.0.1/db", setting="ZONESYNC_INTERNET_URL")
    except ConfigError as exc:
        print("refused:", exc)
    engine = engines.create_engine(engines.parse_url(f"sqlite:///{sys.argv[1]}/zone.db", setting="S"))
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text))
    table.create(engine)
    dialect = dialects.dialect_for(engine)
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
