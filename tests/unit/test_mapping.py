"""SyncMapping: registration checks that name the mapping and the culprit, and derived declarations."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
import pytest

from zonesync.schemas.errors import ConfigError, MappingError
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.mapping import HIDDEN, SyncMapping


class Shop(pa.DataFrameModel):
    shop_id: int
    name: str
    status: str
    fee: Annotated[pl.Decimal, 18, 2]
    updated_at: Annotated[pl.Datetime, "us", "UTC"]
    email: str = pa.Field(nullable=True)


class RegionalShop(pa.DataFrameModel):
    region: str
    shop_id: int
    name: str


class NullableKey(pa.DataFrameModel):
    shop_id: int = pa.Field(nullable=True)
    name: str


class FloatKey(pa.DataFrameModel):
    shop_id: float
    name: str


class BareDecimal(pa.DataFrameModel):
    shop_id: int
    fee: pl.Decimal


class ListColumn(pa.DataFrameModel):
    shop_id: int
    tags: pl.List(pl.String)  # type: ignore[valid-type]


class BinaryColumn(pa.DataFrameModel):
    shop_id: int
    logo: pl.Binary


class QuotedColumn(pa.DataFrameModel):
    shop_id: int
    name: str = pa.Field(alias='a"b')


class LongColumn(pa.DataFrameModel):
    shop_id: int
    name: str = pa.Field(alias="c" * 64)


def make(**overrides: Any) -> SyncMapping:
    """A valid mapping named 'shops', with some fields replaced."""
    arguments: dict[str, Any] = {
        "name": "shops",
        "direction": "intranet_to_internet",
        "source_table": "shop",
        "target_table": "shop",
        "keys": ("shop_id",),
        "model": Shop,
    }
    return SyncMapping(**(arguments | overrides))


def refused(**overrides: Any) -> str:
    """The message of the MappingError a mapping with these fields raises."""
    with pytest.raises(MappingError) as info:
        make(**overrides)
    return str(info.value)


# -- registration checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"keys": ("shop_no",)}, "shop_no"),
        ({"keys": ()}, "keys"),
        ({"renames": {"shop_name": "title"}}, "title"),
        ({"renames": {"shop_name": "name", "label": "name"}}, "label"),
        ({"renames": {"status": "name"}}, "status"),
        ({"flag_column": "status"}, "status"),
        ({"renames": {"is_sync": "name"}}, "is_sync"),
        ({"version_column": "shop_id"}, "shop_id"),
        ({"model": NullableKey}, "shop_id"),
        ({"model": FloatKey}, "shop_id"),
        ({"model": RegionalShop, "keys": ("region", "shop_id"), "version_column": "region"}, "region"),
        ({"business_date_column": "opened_on"}, "opened_on"),
        ({"business_date_column": "name"}, "name"),
        ({"reconcile_by": ("status", "region")}, "region"),
        ({"amount_columns": ("total",)}, "total"),
        ({"amount_columns": ("status",)}, "status"),
        ({"sensitive_columns": ("shop_name",)}, "shop_name"),
        ({"sensitive_columns": ("status",), "reconcile_by": ("status",)}, "status"),
    ],
    ids=[
        "unknown-key",
        "no-keys",
        "rename-target-not-in-model",
        "two-sources-one-target",
        "rename-source-also-fed-by-itself",
        "flag-column-mapped",
        "flag-column-renamed-into-model",
        "version-column-is-key",
        "nullable-key",
        "float-key",
        "version-column-is-one-of-composite-keys",
        "unknown-business-date-column",
        "business-date-column-not-a-date",
        "unknown-reconcile-by-column",
        "unknown-amount-column",
        "amount-column-not-a-number",
        "sensitive-column-not-in-model",
        "sensitive-column-reconciled-by",
    ],
)
def test_bad_columns_are_refused_naming_mapping_and_column(overrides: dict[str, Any], culprit: str) -> None:
    message = refused(**overrides)
    assert "shops" in message
    assert culprit in message


def test_two_sources_renamed_to_one_target_names_both() -> None:
    message = refused(renames={"shop_name": "name", "label": "name"})
    assert "'shop_name'" in message
    assert "'label'" in message
    assert "'name'" in message


@pytest.mark.parametrize(
    "table",
    [
        "shop; DROP TABLE x",
        'sh"op',
        "shop`",
        "a.b.c",
        "1shop",
        "",
        "t" * 64,
        "public.shop--",
        "shop\n",  # `$` would match before a final newline
        "public.shop\n",
    ],
)
@pytest.mark.parametrize("field", ["source_table", "target_table"])
def test_bad_table_names_are_refused(field: str, table: str) -> None:
    message = refused(**{field: table})
    assert "shops" in message
    assert field in message
    assert repr(table) in message


def test_schema_qualified_table_names_are_accepted() -> None:
    mapping = make(source_table="sales.shop", target_table="public.shop")
    assert (mapping.source_table, mapping.target_table) == ("sales.shop", "public.shop")


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"renames": {"merchant; DROP TABLE x": "name"}}, "merchant; DROP TABLE x"),
        ({"renames": {'a"b': "name"}}, 'a"b'),
        ({"renames": {"x" * 64: "name"}}, "x" * 64),
        ({"flag_column": "is sync"}, "is sync"),
        ({"flag_column": "is_sync`--"}, "is_sync`--"),
        ({"version_column": "1updated"}, "1updated"),
        ({"eligible": {"status = 'S' OR 1": "S"}}, "status = 'S' OR 1"),
        ({"model": QuotedColumn}, 'a"b'),
        ({"model": LongColumn}, "c" * 64),
        ({"flag_column": "is_sync\n"}, "is_sync\\n"),
    ],
    ids=[
        "rename-source-injection",
        "rename-source-quote",
        "rename-source-too-long",
        "flag-space",
        "flag-backtick",
        "version-leading-digit",
        "eligible-injection",
        "model-column-quote",
        "model-column-too-long",
        "flag-trailing-newline",
    ],
)
def test_bad_identifiers_are_refused(overrides: dict[str, Any], culprit: str) -> None:
    message = refused(**overrides)
    assert "shops" in message
    assert culprit in message


def test_identifiers_of_63_characters_are_accepted() -> None:
    mapping = make(renames={"x" * 63: "name"})
    assert mapping.columns[1].source == "x" * 63


@pytest.mark.parametrize(("model", "column"), [(ListColumn, "tags"), (BinaryColumn, "logo")], ids=["list", "binary"])
def test_unsupported_column_types_are_refused_naming_mapping_and_column(model: type, column: str) -> None:
    with pytest.raises(MappingError) as info:
        make(model=model)
    assert info.value.mapping == "shops"
    assert "shops" in str(info.value)
    assert column in str(info.value)


def test_decimal_without_precision_is_refused() -> None:
    # A bare `pl.Decimal` would silently mean some default precision and scale (pandera picks (28, 0)).
    message = refused(model=BareDecimal)
    assert "shops" in message
    assert "fee" in message
    assert "precision" in message


def test_a_model_that_is_not_a_pandera_model_is_refused() -> None:
    message = refused(model=dict)
    assert "shops" in message
    assert "DataFrameModel" in message


def test_an_unknown_direction_is_refused() -> None:
    message = refused(direction="both_ways")
    assert "shops" in message
    assert "both_ways" in message


@pytest.mark.parametrize("name", ["Shops", "shops!", "shop s", "1shops", "", "s" * 64, "shops;drop", "shops\n"])
def test_bad_mapping_names_are_refused(name: str) -> None:
    with pytest.raises(MappingError) as info:
        make(name=name)
    assert repr(name) in str(info.value)


def test_mapping_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigError) as info:
        make(keys=("nope",))
    assert info.value.mapping == "shops"
    assert not info.value.transient


# -- derived declarations -------------------------------------------------------------------------


def test_columns_follow_model_order_with_their_sources() -> None:
    mapping = make(renames={"shop_name": "name", "state": "status"})
    assert mapping.target_columns == ("shop_id", "name", "status", "fee", "updated_at", "email")
    assert [column.source for column in mapping.columns] == [
        "shop_id", "shop_name", "state", "fee", "updated_at", "email",
    ]  # fmt: skip


def test_columns_carry_exact_polars_types_and_nullability() -> None:
    columns = {column.name: column for column in make().columns}
    assert columns["shop_id"].dtype == pl.Int64
    assert columns["name"].dtype == pl.String
    assert columns["fee"].dtype == pl.Decimal(18, 2)
    assert columns["updated_at"].dtype == pl.Datetime("us", "UTC")
    assert columns["email"].nullable
    assert not columns["name"].nullable
    assert [name for name, column in columns.items() if column.is_key] == ["shop_id"]


def test_a_renamed_key_has_its_source_name() -> None:
    mapping = make(renames={"shop_no": "shop_id"})
    assert mapping.keys == ("shop_id",)
    assert mapping.source_keys == ("shop_no",)


def test_composite_keys_keep_the_declared_order() -> None:
    mapping = make(model=RegionalShop, keys=["shop_id", "region"], renames={"area": "region"})
    assert mapping.keys == ("shop_id", "region")
    assert [column.name for column in mapping.key_columns] == ["shop_id", "region"]
    assert mapping.source_keys == ("shop_id", "area")
    assert [column.is_key for column in mapping.columns] == [True, True, False]


def test_guard_columns_are_the_version_column_when_declared() -> None:
    assert make(version_column="updated_at").guard_columns == ("updated_at",)


def test_guard_columns_are_every_mapped_non_key_source_column_without_version() -> None:
    mapping = make(renames={"shop_name": "name"})
    assert mapping.guard_columns == ("shop_name", "status", "fee", "updated_at", "email")


@pytest.mark.parametrize(
    ("direction", "source_zone", "target_zone"),
    [("intranet_to_internet", "intranet", "internet"), ("internet_to_intranet", "internet", "intranet")],
)
def test_zones_follow_the_direction(direction: str, source_zone: str, target_zone: str) -> None:
    mapping = make(direction=direction)
    assert (mapping.source_zone, mapping.target_zone) == (source_zone, target_zone)


def test_artifact_slug_uses_dashes() -> None:
    assert make(name="shop_fees_v2").artifact_slug == "shop-fees-v2"


def test_declaration_is_immutable() -> None:
    renames = {"shop_name": "name"}
    mapping = make(renames=renames)
    renames["other"] = "status"
    assert dict(mapping.renames) == {"shop_name": "name"}
    with pytest.raises(TypeError):
        mapping.renames["other"] = "status"  # type: ignore[index]


def test_example_mappings_drop_internal_columns() -> None:
    assert MERCHANTS.direction == "intranet_to_internet"
    assert MERCHANTS.source_zone == "intranet"
    assert "tax_id" not in {column.source for column in MERCHANTS.columns}
    assert dict(MERCHANTS.renames) == {"merchant_name": "name"}
    assert PAYMENTS.source_zone == "internet"
    assert dict(PAYMENTS.eligible or {}) == {"status": "S"}
    assert "client_ip" not in {column.source for column in PAYMENTS.columns}


def test_reconciliation_columns_are_target_names_fed_by_their_sources() -> None:
    mapping = make(
        renames={"shop_name": "name"}, business_date_column="updated_at", reconcile_by=["status", "name"],
        amount_columns=["fee"],
    )  # fmt: skip
    assert mapping.reconcile_by == ("status", "name")
    assert mapping.amount_columns == ("fee",)
    assert [mapping.source_column(name) for name in mapping.reconcile_by] == ["status", "shop_name"]


def test_a_sensitive_key_column_is_hidden_by_either_name_and_the_others_shown() -> None:
    mapping = make(keys=("name", "shop_id"), renames={"shop_name": "name"}, sensitive_columns=["name"])
    assert mapping.sensitive_columns == ("name",)
    assert mapping.shown_key({"shop_name": "Ana Lim", "shop_id": 7}) == {"shop_name": HIDDEN, "shop_id": 7}
    assert mapping.shown_key({"name": "Ana Lim", "shop_id": 7}) == {"name": HIDDEN, "shop_id": 7}
    assert json.loads(mapping.shown_record_key('{"name": "Ana Lim", "shop_id": 7}')) == {"name": HIDDEN, "shop_id": 7}


def test_without_sensitive_columns_a_key_is_shown_as_it_is() -> None:
    assert MERCHANTS.shown_key({"merchant_id": 7}) == {"merchant_id": 7}
    assert MERCHANTS.shown_record_key('{"merchant_id":7}') == '{"merchant_id":7}'


@pytest.mark.parametrize("partitions", [0, -1, 1025, 2.0, True, "4"])
def test_a_partition_count_outside_1_to_1024_is_refused(partitions: Any) -> None:
    with pytest.raises(MappingError, match=r"mapping 'shops'.*partitions .* must be a whole number from 1 to 1024"):
        make(partitions=partitions)


def test_a_mapping_has_one_partition_unless_it_declares_more() -> None:
    assert make().partitions == 1 and make(partitions=16).partitions == 16


@pytest.mark.parametrize("block", [0, -1, 1_000_001, 2.0, True, "4"])
def test_a_partition_block_outside_1_to_a_million_is_refused(block: Any) -> None:
    with pytest.raises(MappingError, match=r"mapping 'shops'.*partition_block .* must be a whole number from 1 to"):
        make(partitions=4, partition_block=block)


def test_keys_come_in_blocks_only_when_the_key_is_one_integer() -> None:
    assert make(partitions=4, partition_block=1024).partition_block == 1024
    with pytest.raises(MappingError, match=r"mapping 'shops'.*partition_block 8 needs a single integer key"):
        make(keys=("name", "shop_id"), partitions=4, partition_block=8)
