"""The slow lane names tests that exist: a renamed module or test would otherwise drop out of it silently and
slow the fast lane down (or, for a path that matched too much, leave the fast lane without it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import SLOW_LANE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry", sorted(SLOW_LANE))
def test_each_slow_lane_entry_names_a_test_module_or_function_that_exists(entry: str) -> None:
    path, _, function = entry.partition("::")
    assert (ROOT / path).exists(), entry
    if function:
        tree = ast.parse((ROOT / path).read_text())
        assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, entry
    assert SLOW_LANE[entry].strip(), f"{entry}: say why it is in the slow lane"
