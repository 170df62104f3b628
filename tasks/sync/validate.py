"""Validate target-shaped rows against the mapping's Pandera model; bad rows are split off, never dropped.

The model is the single source of truth. Pandera's own validation runs one lazy query per check (~50 for a
small model: milliseconds whatever the row count), so a batch is first checked by the same checks compiled
into one polars `select` (`accepts`). Only a batch that fails it, or whose model uses a feature the compiled
form does not cover, goes through Pandera itself, which gives the readable reasons.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, cast

import pandera.backends.polars.builtin_checks  # noqa: F401 - registers the built-in checks' polars versions
import pandera.errors as pa_errors
import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check
from pandera.api.polars.types import PolarsData
from pandera.config import CONFIG
from pandera.engines import polars_engine
from prefect.logging import get_logger

from zonesync.schemas.errors import TerminalSyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.sync.rejects import no_rejects, rejects
from zonesync.tasks.sync.transform import ROW

_FLOATS = (pl.Float32, pl.Float64)
_MAX_SHAPES = 64  # frame schemas whose dtype verdicts a compiled model remembers
logger = get_logger("zonesync.validate")


def _pandera_keeps_check_internals() -> bool:
    """Whether the installed Pandera still keeps a check's function and arguments where the compiler reads them
    (`Check._check_fn`, `Check._check_kwargs`: private, so a Pandera release may move them)."""
    probe = Check.ge(0)
    return callable(getattr(probe, "_check_fn", None)) and isinstance(getattr(probe, "_check_kwargs", None), dict)


COMPILABLE = _pandera_keeps_check_internals()
if not COMPILABLE:
    logger.warning(
        "pandera %s keeps its checks where zonesync's compiled validation cannot read them: every batch is "
        "validated by pandera itself (correct, slower)", version("pandera"),
    )  # fmt: skip


@dataclass(frozen=True)
class Validated:
    """Rows that passed every check, and (row, reason, detail) for the rows that did not."""

    valid: pl.DataFrame
    rejected: pl.DataFrame


def split_valid(frame: pl.DataFrame, mapping: SyncMapping, *, compiled: bool = True) -> Validated:
    """Check `frame` (with a ROW column) against the model; duplicate keys in one batch are rejected too."""
    # compiled=False: always Pandera's own validation, the reference the compiled checks are tested against.
    if compiled and accepts(frame, mapping.model, unique_together=mapping.keys, extra=(ROW,)):
        return Validated(frame, no_rejects())  # the usual batch, at the cost of one select
    duplicates = frame.filter(pl.struct(list(mapping.keys)).is_duplicated()) if frame.height > 1 else frame.clear()
    rejected = [rejects(duplicates.select(ROW, pl.lit("key appears more than once").alias("detail")), "duplicate_key")]
    candidates = frame.join(duplicates.select(ROW), on=ROW, how="anti") if duplicates.height else frame
    if compiled and duplicates.height and accepts(candidates, mapping.model, extra=(ROW,)):
        return Validated(candidates, rejected[0])
    try:
        mapping.model.validate(candidates.drop(ROW), lazy=True)
    except pa_errors.SchemaErrors as exc:
        failed = _failed_checks(exc.failure_cases, candidates, mapping)
        rejected.append(failed)
        candidates = candidates.join(failed.select(ROW), on=ROW, how="anti")
    return Validated(candidates, pl.concat(rejected))


def _failed_checks(cases: pl.DataFrame, batch: pl.DataFrame, mapping: SyncMapping) -> pl.DataFrame:
    """One reject row per failing record, the failed checks joined into a readable detail."""
    if cases["index"].is_null().any():
        frame_level = cases.filter(pl.col("index").is_null())
        checks = ", ".join(f"{c} {k}" for c, k in frame_level.select("column", "check").unique().rows())
        raise TerminalSyncError(f"batch does not match the target model ({checks})", mapping=mapping.name)
    described = cases.select(
        pl.col("index").cast(pl.UInt32),
        pl.format("{}: {}{}", pl.col("column").fill_null("row"), pl.col("check"), _got(batch)).alias("detail"),
    )
    per_row = described.group_by("index", maintain_order=True).agg(
        pl.col("detail").unique(maintain_order=True).str.join("; ")
    )
    positions = batch.select(ROW).with_row_index("index")
    return rejects(per_row.join(positions, on="index").select(ROW, "detail"), "validation")


def _got(batch: pl.DataFrame) -> pl.Expr:
    """What a failure says of the value it refused: null, or a text's length; never the value itself (details
    reach logs, artifacts and HTTP answers, where record values must not go)."""
    texts = [name for name, dtype in batch.schema.items() if dtype == pl.String]
    length = pl.col("failure_case").cast(pl.String).str.len_chars()
    return (
        pl.when(pl.col("failure_case").is_null()).then(pl.lit(" (got null)"))
        .when(pl.col("column").is_in(texts)).then(pl.format(" (got {} character(s))", length))
        .otherwise(pl.lit(""))
    )  # fmt: skip


@dataclass(frozen=True)
class CompiledModel:
    """A model's column rules as polars expressions, each true when its check passes for every row."""

    dtypes: dict[str, Any]  # column -> Pandera data type (None: any)
    required: tuple[str, ...]  # non-nullable columns (null, or NaN for floats, fails)
    unique: tuple[str, ...]
    checks: tuple[pl.Expr, ...]
    strict: bool
    dtype_verdicts: dict[tuple[object, ...], bool] = field(default_factory=dict, compare=False)


def accepts(
    frame: pl.DataFrame,
    model: type[pa.DataFrameModel],
    *,
    unique_together: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> bool:
    """True only if Pandera would accept every row of `frame` (without its `extra` columns) and no two rows share
    their `unique_together` values; False means: ask Pandera (it may still accept)."""
    compiled = None if CONFIG.use_narwhals_backend else compile_model(model)
    if compiled is None or not _dtypes_accepted(compiled, frame, len(extra)):
        return False
    present = [_present(name, frame.schema[name]) for name in compiled.required]
    distinct = [pl.col(name).is_duplicated().not_() for name in compiled.unique]
    if unique_together and frame.height > 1:
        distinct.append(pl.struct(list(unique_together)).is_duplicated().not_())
    everything = [*(expr.all() for expr in (*present, *distinct)), *compiled.checks]
    if not everything:
        return True
    try:
        verdicts = frame.select(expr.alias(f"_{i}") for i, expr in enumerate(everything)).row(0)
    except Exception:  # a check that fails to run is Pandera's to report (as a failed check)
        return False
    return all(verdict is True for verdict in verdicts)


def _dtypes_accepted(compiled: CompiledModel, frame: pl.DataFrame, extra: int) -> bool:
    """Whether the frame's columns and types are the model's (Pandera's own dtype checks, remembered per schema:
    the built-in ones look at the type only)."""
    shape = (extra, *frame.schema.items())
    verdict = compiled.dtype_verdicts.get(shape)
    if verdict is None:
        verdict = _check_dtypes(compiled, frame, extra)
        if len(compiled.dtype_verdicts) < _MAX_SHAPES and all(map(_type_only, compiled.dtypes.values())):
            compiled.dtype_verdicts[shape] = verdict
    return verdict


def _check_dtypes(compiled: CompiledModel, frame: pl.DataFrame, extra: int) -> bool:
    schema = frame.schema
    if any(name not in schema for name in compiled.dtypes):
        return False
    if compiled.strict and len(schema) - extra > len(compiled.dtypes):
        return False
    lazy = frame.lazy()
    return all(
        dtype is None or dtype.check(schema[name], PolarsData(lazy.select(name), name))
        for name, dtype in compiled.dtypes.items()
    )


def _type_only(dtype: Any) -> bool:
    """Pandera's own polars data types decide by the column type alone (a user-defined one may look at values)."""
    return dtype is None or type(dtype).__module__ == polars_engine.__name__


def _present(name: str, dtype: pl.DataType) -> pl.Expr:
    """Pandera's nullable check: null, and NaN in a float column, count as missing."""
    present = pl.col(name).is_not_null()
    return present & pl.col(name).is_not_nan() if dtype in _FLOATS else present


@functools.cache
def compile_model(model: type[pa.DataFrameModel]) -> CompiledModel | None:
    """The model's checks as expressions, or None when it uses a feature they do not cover (Pandera decides)."""
    if not COMPILABLE:
        return None
    schema = model.to_schema()
    if schema.checks or schema.parsers or schema.dtype is not None or schema.coerce or schema.ordered:
        return None
    if schema.unique or schema.add_missing_columns or schema.drop_invalid_rows:
        return None
    checks = []
    for name, column in schema.columns.items():
        if column.regex or column.coerce or column.default is not None or column.drop_invalid_rows:
            return None
        if column.parsers or not column.required:
            return None
        for check in column.checks:
            expr = _check_expr(check, name)
            if expr is None:
                return None
            checks.append(expr)
    columns = schema.columns
    return CompiledModel(
        dtypes={name: column.dtype for name, column in columns.items()},
        required=tuple(name for name, column in columns.items() if not column.nullable),
        unique=tuple(name for name, column in columns.items() if column.unique),
        checks=tuple(checks),
        strict=schema.strict is True,
    )


class _Uncompilable(Exception):
    """The check does something other than select one expression from its frame."""


class _Frame:
    """Stands in for the lazy frame a polars check selects from, to capture the one expression it selects."""

    def select(self, *exprs: object, **named: object) -> _Selected:
        if named or len(exprs) != 1 or not isinstance(exprs[0], pl.Expr):
            raise _Uncompilable
        return _Selected(exprs[0])

    def __getattr__(self, name: str) -> Any:
        raise _Uncompilable(name)


@dataclass(frozen=True)
class _Selected:
    """What `_Frame.select` returns: a check that does anything more with it is not compiled."""

    expr: pl.Expr


def _check_expr(check: Check, column: str) -> pl.Expr | None:
    """The check as one boolean aggregate (its own expression, nulls handled as Pandera does), if it is that simple."""
    if check.element_wise or check.groupby is not None:
        return None
    function = check._check_fn
    builtin = getattr(function, "__name__", None)
    if builtin is not None and check.is_builtin_check(builtin):  # as Check.__call__ does
        function = check.get_builtin_check_fn(builtin)
    try:
        selected = function(PolarsData(cast(pl.LazyFrame, _Frame()), column), **check._check_kwargs)
    except Exception:  # anything but a plain selection: leave the check to Pandera
        return None
    if not isinstance(selected, _Selected):
        return None
    expr = selected.expr
    passed = (expr | expr.is_null()) if check.ignore_na else expr.fill_null(False)
    return passed.all()
