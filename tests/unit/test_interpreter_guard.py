"""The guard against CPython's shared AST recursion depth (flows/interpreter.py): importing the flows makes
`ast.parse` take one lock, and parses from many threads at once all succeed."""

from __future__ import annotations

import ast
import sys
from concurrent.futures import ThreadPoolExecutor

import zonesync.flows  # noqa: F401  (installs the guard)

SOURCE = "\n".join(f"def f{i}(a, b=1):\n    return [x for x in range(a) if x % b]" for i in range(200))


def test_importing_the_flows_serializes_ast_parse_where_the_interpreter_needs_it() -> None:
    needed = sys.version_info < (3, 13)  # 3.13 tracks the depth per call
    assert getattr(ast.parse, "__zonesync_serialized__", False) == needed


def test_parses_from_many_threads_at_once_all_succeed() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        trees = list(pool.map(lambda _: ast.parse(SOURCE), range(64)))
    assert all(len(tree.body) == 200 for tree in trees)
