"""The house rules of the source tree (docs/architecture.md): arrows run one way (bench/ above everything, the
dialects below the rest of tasks/), and every database difference lives in its module under tasks/dialects/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("schemas", "tasks", "flows", "deployments", "bench")  # each may import only those before it
PACKAGE_LAYERS = LAYERS[:-1]  # the zonesync package; bench/ measures it from outside
DIALECTS = "zonesync.tasks.dialects"
BACKEND_NAMES = {"postgresql", "postgres", "mariadb", "mysql", "sqlite"}
DRIVERS = {"psycopg", "psycopg2", "pymysql", "sqlite3", "connectorx"}
# Column storage per database is declared with SQLAlchemy's with_variant, in one place.
STORAGE_DECLARATIONS = ROOT / "schemas" / "types.py"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (zonesync.tasks.sync.load ...), and the benchmarks' (bench.floor)."""
    found = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            prefix = ("zonesync",) if layer in PACKAGE_LAYERS else ()
            name = ".".join((*prefix, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()
PACKAGE = {module: path for module, path in MODULES.items() if module.startswith("zonesync.")}


def _imports(path: Path) -> set[str]:
    """The modules a file imports, anywhere in it (deferred imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str:
    return module.split(".")[1] if module.startswith("zonesync.") else module.split(".")[0]


def _ours(imported: str) -> bool:
    return imported.startswith(("zonesync.", "bench."))


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, path in MODULES.items():
        allowed = LAYERS[: LAYERS.index(_layer(module)) + 1]
        for imported in _imports(path):
            if _ours(imported) and _layer(imported) not in allowed:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_the_dialects_import_only_the_declarations_and_themselves() -> None:
    """tasks/dialects/ is the bottom of tasks/: it is handed what it needs (an engine's limits and label) and
    learns nothing from a module above it."""
    wrong = [
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        if module.startswith(DIALECTS)
        for imported in _imports(path)
        if imported.startswith("zonesync.") and not imported.startswith((DIALECTS, "zonesync.schemas"))
    ]
    assert not wrong, "\n".join(wrong)


def _import_graph() -> dict[str, set[str]]:
    """Which modules each module imports; a package and its own submodules aside (that is how one is assembled)."""
    graph = {}
    for module, path in MODULES.items():
        imported = {name for name in _imports(path) if name in MODULES and name != module}
        graph[module] = {n for n in imported if not (n.startswith(f"{module}.") or module.startswith(f"{n}."))}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, or [] (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_no_import_cycles() -> None:
    assert _cycle(_import_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_tasks_is_rooms_by_concern_with_the_shared_types_and_prefect_tasks_beside_them() -> None:
    """tasks/ holds its rooms (subpackages) and three modules: the result types, the Prefect tasks, the options
    zonesync gives Prefect. A new module goes into the room of its concern."""
    loose = sorted(path.name for path in (ROOT / "tasks").glob("*.py"))
    assert loose == ["__init__.py", "prefect_options.py", "prefect_tasks.py", "results.py"]


LEAVES = ("zonesync.tasks.results", "zonesync.tasks.reconcile.findings")


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_result_types_are_a_leaf(leaf: str) -> None:
    """What runs produce is read by reporting, the ledger and the flows: it depends on no code that produces it
    (the run results hold what a reconciliation found)."""
    imported = {name for name in _imports(MODULES[leaf]) if name.startswith("zonesync.")}
    assert {name for name in imported if not name.startswith(("zonesync.schemas", *LEAVES))} == set()


MAX_LINES = 300
DATABASE_MODULES = {"postgresql.py": 247, "mariadb.py": 382, "sqlite.py": 388}  # each only shrinks (lines, 2026-12)


def test_modules_stay_small() -> None:
    """A module over ~300 lines has a concern that wants its own module; a database module only shrinks."""
    long = {
        module: lines
        for module, path in PACKAGE.items()
        if (lines := len(path.read_text().splitlines())) > DATABASE_MODULES.get(path.name, MAX_LINES)
    }
    assert long == {}


def _outside_dialects() -> list[tuple[str, Path]]:
    return [(m, p) for m, p in MODULES.items() if not m.startswith(DIALECTS) and not m.startswith("bench.")]


def test_no_module_outside_the_dialects_imports_a_database_driver() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, path in _outside_dialects()
        for name in _imports(path)
        if name.split(".")[0] in DRIVERS
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_outside_the_dialects_names_a_database() -> None:
    """A string such as "postgresql" outside tasks/dialects/ is a database difference in the wrong place."""
    wrong = []
    for module, path in _outside_dialects():
        if path == STORAGE_DECLARATIONS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in BACKEND_NAMES:
                wrong.append(f"{module}:{node.lineno} names {node.value!r}")
    assert not wrong, "\n".join(wrong)


def _calls(path: Path, method: str) -> int:
    tree = ast.parse(path.read_text())
    return sum(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
        for node in ast.walk(tree)
    )


def test_transactions_are_opened_in_one_place() -> None:
    """`engines.in_transaction` opens them; only those held open while the other zone is written (a claim of rows
    or of tombstones, the update's or the delete's source row) open their own, and two-phase commit (an update's,
    a delete's) its prepared ones."""
    opened = {module: _calls(path, "begin") for module, path in PACKAGE.items() if _calls(path, "begin")}
    assert opened == {
        "zonesync.tasks.zones.engines": 1,
        "zonesync.tasks.sync.batch": 1,
        "zonesync.tasks.deletes.carrier": 1,
        "zonesync.tasks.update.rollback": 1,
        "zonesync.tasks.update.deletion": 1,
    }
    prepared = {module for module, path in PACKAGE.items() if _calls(path, "begin_twophase")}
    assert prepared == {"zonesync.tasks.update.twophase", "zonesync.tasks.update.deletion"}


def test_the_flows_do_not_depend_on_the_command_line() -> None:
    users = {
        module
        for module, path in PACKAGE.items()
        if not module.startswith("zonesync.flows.cli")
        and any(n.startswith("zonesync.flows.cli") for n in _imports(path))
    }
    assert users == set()


def test_no_flow_or_task_lets_prefect_persist_its_result() -> None:
    """Every flow and task declares persist_result=False (`tasks/prefect_options.py`): results hold record keys,
    and PREFECT_RESULTS_PERSIST_BY_DEFAULT would otherwise write them to result storage as pickles."""
    import importlib

    from prefect import Flow, Task

    declared = {
        f"{module}.{name}": value
        for module in PACKAGE
        if not module.endswith("__main__")
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, Flow | Task) and value.fn.__module__ == module
    }
    assert (
        len([name for name, value in declared.items() if isinstance(value, Flow)]) == 7
    )  # four, delete-with-rollback, reconcile-zones and the retry sync's slice
    tasks = {name.rpartition(".")[0] for name, value in declared.items() if isinstance(value, Task)}
    assert tasks == {"zonesync.tasks.prefect_tasks"}  # one home for Prefect tasks
    assert {name: value.persist_result for name, value in declared.items() if value.persist_result is not False} == {}
