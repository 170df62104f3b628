"""A guard against a CPython bug that fails flow runs at random: `ast.parse` from two threads at once.

CPython 3.11 and 3.12 keep the AST constructor's recursion depth in state shared by the interpreter's threads, so
two threads parsing at once can fail one of them with "SystemError: AST constructor recursion depth mismatch"
(python/cpython#106905). A flow run parses in several threads: Prefect's background workers import modules whose
pydantic models read their docstrings with `ast.parse`, while the run imports the mappings, pandera and polars.
Measured: one process-worker run in about twenty failed so. Serializing the parses costs nothing measurable
(each takes milliseconds, a few dozen per process); 3.13 tracks the depth per call and is left alone.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

_SERIALIZED = "__zonesync_serialized__"


def serialize_ast_parse() -> None:
    """Make `ast.parse` take a process-wide lock (once; a no-op where the interpreter does not need it)."""
    if sys.version_info >= (3, 13) or getattr(ast.parse, _SERIALIZED, False):
        return
    lock = threading.RLock()
    original = ast.parse

    @functools.wraps(original)
    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    setattr(parse, _SERIALIZED, True)
    ast.parse = parse
