"""Mapping discovery: module-level mappings of ZONESYNC_MAPPING_MODULES, by name."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zonesync.schemas.errors import ConfigError, MappingError
from zonesync.schemas.registry import all_mappings, discover_mappings, get_mapping, select_mappings

HEADER = """
import pandera.polars as pa
from zonesync.schemas.mapping import SyncMapping


class Row(pa.DataFrameModel):
    row_id: int
    label: str


def declare(name, direction="intranet_to_internet"):
    return SyncMapping(
        name=name, direction=direction, source_table="src", target_table="dst", keys=("row_id",), model=Row
    )

"""

WriteModule = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write a mapping module (HEADER + body) under a unique importable name and return that name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(body: str) -> str:
        name = f"unit_mappings_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(HEADER + body)
        importlib.invalidate_caches()
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def use_modules(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    monkeypatch.setenv("ZONESYNC_MAPPING_MODULES", ",".join(modules))


def test_every_module_level_mapping_is_found_by_name(write_module: WriteModule) -> None:
    module = write_module('ALPHA = declare("alpha")\nBETA = declare("beta", "internet_to_intranet")\nOTHER = 42\n')
    found = discover_mappings([module])
    assert sorted(found) == ["alpha", "beta"]
    assert found["alpha"] is sys.modules[module].ALPHA
    assert found["beta"].direction == "internet_to_intranet"


def test_mappings_of_several_modules_are_merged(write_module: WriteModule) -> None:
    first = write_module('ALPHA = declare("alpha")\n')
    second = write_module('BETA = declare("beta")\n')
    assert sorted(discover_mappings([first, second])) == ["alpha", "beta"]


def test_a_mapping_imported_into_another_module_is_not_a_duplicate(write_module: WriteModule) -> None:
    first = write_module('ALPHA = declare("alpha")\n')
    second = write_module(f"from {first} import ALPHA\n")
    found = discover_mappings([first, second])
    assert list(found) == ["alpha"]


def test_two_mappings_with_one_name_in_different_modules_are_refused(write_module: WriteModule) -> None:
    first = write_module('ALPHA = declare("alpha")\n')
    second = write_module('ALSO_ALPHA = declare("alpha")\n')
    with pytest.raises(MappingError) as info:
        discover_mappings([first, second])
    assert "'alpha'" in str(info.value)
    assert second in str(info.value)


def test_two_mappings_with_one_name_in_one_module_are_refused(write_module: WriteModule) -> None:
    module = write_module('ALPHA = declare("alpha")\nALPHA_AGAIN = declare("alpha")\n')
    with pytest.raises(MappingError, match="'alpha'"):
        discover_mappings([module])


def test_a_missing_module_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        discover_mappings(["no_such_zonesync_module"])
    assert "no_such_zonesync_module" in str(info.value)


def test_a_module_failing_its_own_import_is_a_config_error_naming_it(write_module: WriteModule) -> None:
    module = write_module("import not_an_installed_package_zz\n")
    with pytest.raises(ConfigError) as info:
        discover_mappings([module])
    assert module in str(info.value)
    assert "not_an_installed_package_zz" in str(info.value)


def test_a_bad_declaration_fails_discovery_with_its_mapping_error(write_module: WriteModule) -> None:
    module = write_module('BROKEN = SyncMapping(name="broken", direction="intranet_to_internet", source_table="s", '
                          'target_table="t", keys=("nope",), model=Row)\n')  # fmt: skip
    with pytest.raises(MappingError, match=r"broken.*nope"):
        discover_mappings([module])


def test_the_default_registry_is_the_demo_domain() -> None:
    assert sorted(all_mappings()) == ["merchants", "payments"]
    assert get_mapping("merchants").direction == "intranet_to_internet"


def test_get_mapping_reads_the_configured_modules(monkeypatch: pytest.MonkeyPatch, write_module: WriteModule) -> None:
    module = write_module('ALPHA = declare("alpha")\n')
    use_modules(monkeypatch, module)
    assert get_mapping("alpha") is sys.modules[module].ALPHA
    assert "merchants" not in all_mappings()


def test_an_unknown_mapping_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch, write_module: WriteModule) -> None:
    module = write_module('ALPHA = declare("alpha")\nBETA = declare("beta")\n')
    use_modules(monkeypatch, module)
    with pytest.raises(ConfigError) as info:
        get_mapping("gamma")
    message = str(info.value)
    assert "'gamma'" in message
    assert "alpha, beta" in message


def test_select_mappings_returns_all_of_one_direction(
    monkeypatch: pytest.MonkeyPatch, write_module: WriteModule
) -> None:
    module = write_module(
        'OUT_A = declare("out_a")\nBACK = declare("back", "internet_to_intranet")\nOUT_B = declare("out_b")\n'
    )
    use_modules(monkeypatch, module)
    assert [m.name for m in select_mappings("intranet_to_internet")] == ["out_a", "out_b"]
    assert [m.name for m in select_mappings("internet_to_intranet")] == ["back"]


def test_select_mappings_keeps_the_named_order(monkeypatch: pytest.MonkeyPatch, write_module: WriteModule) -> None:
    module = write_module('OUT_A = declare("out_a")\nOUT_B = declare("out_b")\n')
    use_modules(monkeypatch, module)
    assert [m.name for m in select_mappings("intranet_to_internet", ["out_b", "out_a"])] == ["out_b", "out_a"]


def test_select_mappings_refuses_a_mapping_of_the_other_direction() -> None:
    with pytest.raises(ConfigError) as info:
        select_mappings("intranet_to_internet", ["merchants", "payments"])
    message = str(info.value)
    assert "'payments'" in message
    assert "internet_to_intranet" in message


def test_select_mappings_refuses_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match="'refunds'"):
        select_mappings("internet_to_intranet", ["refunds"])
