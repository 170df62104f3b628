"""Invariant 7 (safe SQL): identifiers only from validated mappings, values never spliced into SQL."""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration import data
from tests.integration.helpers import (
    assert_nothing_lost,
    create,
    errors,
    execute,
    rows,
    seed,
    source_rows,
    sync,
    target_rows,
)
from tests.integration.mappings import NOTES, NoteTarget
from tests.integration.tables import source_tables, target_tables
from zonesync.schemas.errors import MappingError
from zonesync.schemas.mapping import SyncMapping

INJECTION = 'x"; DROP TABLE merchant; --'


class InjectedColumnModel(pa.DataFrameModel):
    """A model whose column name carries SQL."""

    note_key: str
    body: str = pa.Field(alias="body; DROP TABLE merchant; --")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param({"source_table": "zs_note_src; DROP TABLE merchant; --"}, "source_table", id="source_table"),
        pytest.param({"target_table": 'zs_note" CASCADE; --'}, "target_table", id="target_table"),
        pytest.param({"target_table": "a.b.c"}, "target_table", id="target_table-three-parts"),
        pytest.param({"renames": {INJECTION: "body"}}, INJECTION, id="rename-source"),
        pytest.param({"flag_column": "is_sync = true; --"}, "is_sync = true; --", id="flag_column"),
        pytest.param({"version_column": "noted_at) OR (1=1"}, "noted_at) OR (1=1", id="version_column"),
        pytest.param({"eligible": {"state' OR '1'='1": "x"}}, "eligible", id="eligible-column"),
        pytest.param({"keys": (INJECTION,)}, INJECTION, id="key"),
        pytest.param({"model": InjectedColumnModel}, "body; DROP TABLE merchant; --", id="model-column"),
        pytest.param({"name": "notes; DROP TABLE merchant"}, "notes; DROP TABLE merchant", id="mapping-name"),
    ],
)
def test_mapping_rejects_identifiers_carrying_sql(changes: dict[str, Any], named: str) -> None:
    """A mapping whose identifiers could inject SQL is refused when declared, naming the bad identifier."""
    declaration: dict[str, Any] = {
        "name": "hostile",
        "direction": "intranet_to_internet",
        "source_table": "zs_note_src",
        "target_table": "zs_note",
        "keys": ("note_key",),
        "model": NoteTarget,
        **changes,
    }
    with pytest.raises(MappingError, match=r"hostile|mapping name") as raised:
        SyncMapping(**declaration)
    assert named in str(raised.value)


HOSTILE_KEYS = [
    "x'); DROP TABLE merchant; --",
    "a\\'; DROP TABLE zs_note; --",
    'b"; DROP TABLE zs_note_src; --',
    "c\\",
    "d\\\\'",
    "%(note_key)s %s ? :note_key $1",
    "e' OR '1'='1",
    "😀 key",
    "ordinary",
]


def test_key_values_carrying_sql_sync_and_drop_nothing(zones: ZonePair) -> None:
    """Text keys holding quotes, backslashes and SQL sync exactly; with batch size 1 each is a keyset boundary
    (the literal the next batch query starts after). Every table, including a decoy `merchant`, survives."""
    for engine in (zones.intranet, zones.internet):
        execute(engine, "CREATE TABLE merchant (merchant_id INTEGER PRIMARY KEY)")
        execute(engine, "INSERT INTO merchant (merchant_id) VALUES (1)")
    create(zones.intranet, source_tables(), "zs_note_src")
    create(zones.internet, target_tables(), "zs_note")
    seed(zones.intranet, "zs_note_src", data.notes(HOSTILE_KEYS), ("note_key",))
    expected = {(key,) for key in HOSTILE_KEYS}

    result = sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=1)

    assert (result.status, result.message) == ("success", "")
    assert (result.read, result.upserted, result.flagged) == (len(HOSTILE_KEYS),) * 3, "rows read twice or skipped"
    synced, quarantined = assert_nothing_lost(NOTES, zones.intranet, zones.internet, zones.intranet, expected)
    assert (synced, quarantined) == (expected, set())
    assert set(target_rows(zones.internet, NOTES)) == expected
    assert errors(zones.intranet) == []
    for engine in (zones.intranet, zones.internet):
        assert rows(engine, "merchant") == [{"merchant_id": 1}]
    assert {"zs_note_src", "sync_error", "batch_job"} <= set(sa.inspect(zones.intranet).get_table_names())
    assert all(values["__flag"] for values in source_rows(zones.intranet, NOTES).values())
