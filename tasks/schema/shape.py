"""The shape of a mapping's live tables, and what a change of it means for the mapping.

A shape is what the databases say of the columns a mapping uses (type, limits, nullability, default, collation,
key) plus the columns an insert must fill. Two shapes are compared column by column, and each difference is
either *compatible* (a widening, a new nullable or defaulted column, anything about a column the mapping does
not use) or *breaking* (a mapped column dropped or renamed, narrowed, changed to another type family, a new
NOT NULL column without a default where zonesync inserts, a key or key-collation change). The accepted shape
is kept in the intranet zone (`tasks/schema/contract.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import Zone
from zonesync.tasks.dialects.surface import Dialect

Family = Literal["integer", "decimal", "float", "timestamp", "timestamptz", "date", "text", "boolean", "other"]
Verdict = Literal["compatible", "breaking"]
GONE = "(no such column)"


@dataclass(frozen=True)
class ColumnFacts:
    """What the database says of one column (limits as `ColumnShape` tells them: None is no limit)."""

    type: str
    family: Family
    nullable: bool
    has_default: bool
    collation: str | None = None
    precision: int | None = None
    scale: int | None = None
    fraction_digits: int | None = None
    length: int | None = None
    padded: bool = False
    approximate: bool = False
    trims_trailing_blanks: bool = False
    astral: bool = True
    integer_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class TableFacts:
    """One live table: its zone and name, every column, the columns the mapping uses, and its primary key."""

    zone: Zone
    table: str
    columns: dict[str, ColumnFacts]
    used: tuple[str, ...]
    primary_key: tuple[str, ...]
    inserted: bool  # zonesync inserts rows here: a new NOT NULL column without a default breaks it


@dataclass(frozen=True)
class MappingShape:
    """Both tables of a mapping, as they are."""

    source: TableFacts
    target: TableFacts

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what the contract keeps."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """A short digest of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> MappingShape:
        """The shape a contract kept."""
        data = json.loads(text)
        return cls(_table_from(data["source"]), _table_from(data["target"]))


def _table_from(data: dict[str, Any]) -> TableFacts:
    columns = {}
    for name, facts in data["columns"].items():
        if facts.get("integer_range") is not None:
            facts["integer_range"] = tuple(facts["integer_range"])
        columns[name] = ColumnFacts(**facts)
    return TableFacts(data["zone"], data["table"], columns, tuple(data["used"]), tuple(data["primary_key"]),
                      data["inserted"])  # fmt: skip


def family_of(sql_type: sa.types.TypeEngine[Any]) -> Family:
    """The kind of value a column holds, whatever its size."""
    if isinstance(sql_type, sa.Boolean):
        return "boolean"
    if isinstance(sql_type, sa.Integer):
        return "integer"
    if isinstance(sql_type, sa.Float):
        return "float"
    if isinstance(sql_type, sa.Numeric):
        return "decimal"
    if isinstance(sql_type, sa.DateTime):
        return "timestamptz" if getattr(sql_type, "timezone", False) else "timestamp"
    if isinstance(sql_type, sa.Date):
        return "date"
    return "text" if isinstance(sql_type, sa.String) else "other"


def table_facts(table: sa.Table, dialect: Dialect, zone: Zone, used: Sequence[str], *, inserted: bool) -> TableFacts:
    """The facts of a reflected table."""
    columns = {}
    for column in table.columns:
        shape = dialect.column_shape(column)
        columns[column.name] = ColumnFacts(
            type=shape.type_name, family=family_of(column.type), nullable=bool(column.nullable),
            has_default=column.server_default is not None or column.autoincrement is True,
            collation=getattr(column.type, "collation", None), precision=shape.precision, scale=shape.scale,
            fraction_digits=shape.fraction_digits, length=shape.length, padded=shape.padded,
            approximate=shape.approximate, trims_trailing_blanks=shape.trims_trailing_blanks, astral=shape.astral,
            integer_range=shape.integer_range,
        )  # fmt: skip
    primary_key = tuple(column.name for column in table.primary_key.columns)
    return TableFacts(zone, table.name, columns, tuple(dict.fromkeys(used)), primary_key, inserted)


def mapping_shape(mapping: SyncMapping, source: sa.Table, target: sa.Table, source_dialect: Dialect,
                  target_dialect: Dialect) -> MappingShape:  # fmt: skip
    """The shape of a mapping's two reflected tables."""
    used = [c.source for c in mapping.columns] + [mapping.flag_column, *(mapping.eligible or {})]
    used += [mapping.version_column] if mapping.version_column else []
    return MappingShape(
        table_facts(source, source_dialect, mapping.source_zone, used, inserted=mapping.source_zone == "intranet"),
        table_facts(target, target_dialect, mapping.target_zone, mapping.target_columns, inserted=True),
    )


@dataclass(frozen=True)
class Change:
    """One difference between the accepted shape and the live one."""

    zone: Zone
    table: str
    column: str | None  # None: the table's key
    was: str
    now: str
    verdict: Verdict
    why: str

    def line(self) -> str:
        """One line: zone, table, column, old and new, and why it matters."""
        where = f"{self.zone} zone, table {self.table!r}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.was} -> {self.now} ({self.why})"


@dataclass
class Comparison:
    """Every difference between two shapes of a mapping."""

    changes: list[Change] = field(default_factory=list)

    @property
    def breaking(self) -> list[Change]:
        """The changes that stop the mapping until they are undone or accepted."""
        return [change for change in self.changes if change.verdict == "breaking"]


def compare(accepted: MappingShape, live: MappingShape) -> Comparison:
    """What changed from the accepted shape to the live one, each change judged."""
    found = Comparison()
    for was, now in ((accepted.source, live.source), (accepted.target, live.target)):
        found.changes += _table_changes(was, now)
    return found


def _table_changes(was: TableFacts, now: TableFacts) -> list[Change]:
    def change(column: str | None, before: str, after: str, verdict: Verdict, why: str) -> Change:
        return Change(now.zone, now.table, column, before, after, verdict, why)

    found = []
    if was.table != now.table:
        found.append(change(None, was.table, now.table, "breaking", "the mapping now reads another table"))
    if was.primary_key != now.primary_key:
        found.append(change(None, f"primary key ({', '.join(was.primary_key)})",
                            f"primary key ({', '.join(now.primary_key)})", "breaking", "the key changed"))  # fmt: skip
    for name, before in was.columns.items():
        after = now.columns.get(name)
        used = name in now.used
        if after is None:
            verdict: Verdict = "breaking" if used else "compatible"
            why = "a mapped column was dropped or renamed" if used else "an unmapped column was dropped"
            found.append(change(name, before.type, GONE, verdict, why))
        elif after != before:
            verdict, why = _column_verdict(before, after, key=name in now.primary_key, used=used,
                                           target=now.inserted and used)  # fmt: skip
            found.append(change(name, _described(before), _described(after), verdict, why))
    for name, after in now.columns.items():
        if name not in was.columns:
            required = not after.nullable and not after.has_default and now.inserted and name not in now.used
            found.append(change(name, GONE, _described(after), "breaking" if required else "compatible",
                                "a new NOT NULL column without a default: inserts would fail" if required
                                else "a new column"))  # fmt: skip
    return found


def _described(facts: ColumnFacts) -> str:
    return f"{facts.type}{'' if facts.nullable else ' not null'}" + (f" collate {facts.collation}"
                                                                      if facts.collation else "")  # fmt: skip


def _column_verdict(was: ColumnFacts, now: ColumnFacts, *, key: bool, used: bool, target: bool) -> tuple[Verdict, str]:
    """Whether a changed column still serves the mapping as before."""
    if not used:
        return "compatible", "a column the mapping does not use"
    if was.family != now.family:
        return "breaking", f"the type changed from {was.family} to {now.family}"
    narrowed = _narrowed(was, now)
    if narrowed:
        return "breaking", narrowed
    if key and was.collation != now.collation:
        return "breaking", "the collation of a key column changed: keys may compare differently"
    if target and was.nullable and not now.nullable:
        return "breaking", "the target column no longer takes NULL"
    return "compatible", "it keeps every value it kept"


def _narrowed(was: ColumnFacts, now: ColumnFacts) -> str | None:
    """How the live column keeps less than before, or None."""
    if _less(was.scale, now.scale):
        return "fewer digits after the point"
    if _less(_whole(was), _whole(now)):
        return "fewer digits before the point"
    if _less(was.fraction_digits, now.fraction_digits):
        return "fewer digits of a second"
    if _less(was.length, now.length):
        return "shorter texts"
    if now.padded and not was.padded:
        return "texts padded with blanks"
    if now.trims_trailing_blanks and not was.trims_trailing_blanks:
        return "texts given back without trailing blanks"
    if was.astral and not now.astral:
        return "no characters outside the BMP"
    if (
        was.integer_range
        and now.integer_range
        and (now.integer_range[0] > was.integer_range[0] or now.integer_range[1] < was.integer_range[1])
    ):
        return "a smaller integer range"
    return None


def _less(was: int | None, now: int | None) -> bool:
    """A limit that got tighter (None: no limit)."""
    return now is not None and (was is None or now < was)


def _whole(facts: ColumnFacts) -> int | None:
    return None if facts.precision is None or facts.scale is None else facts.precision - facts.scale
