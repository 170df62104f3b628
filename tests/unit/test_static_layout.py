"""A fresh clone explains its own imports: `zonesync/` holds one link per top-level folder, so a tool that reads
the source (a type checker, an editor's go-to-definition) resolves every `zonesync...` import in the repository
without installing or running anything. Checked here by reading files only, never by importing."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("deployments", "flows", "schemas", "tasks")
SOURCES = (*PACKAGES, "tests", "bench")


def _module_file(dotted: str) -> Path | None:
    """Where a static tool finds `zonesync.a.b`: zonesync/a/b.py or zonesync/a/b/__init__.py, through the links."""
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_names(path: Path) -> set[str]:
    """The names a module defines or imports at its top level (what `from module import name` can find)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.If):  # TYPE_CHECKING blocks
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    names.update((alias.asname or alias.name).split(".")[0] for alias in inner.names)
    return names


def _unresolved(path: Path) -> list[str]:
    wrong = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names if alias.name.startswith("zonesync.")]
            wrong += [f"import {name}" for name in dotted if _module_file(name) is None]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zonesync"):
            module = _module_file(node.module)
            if module is None:
                wrong.append(f"from {node.module}")
                continue
            defined = _top_level_names(module)
            for alias in node.names:
                if alias.name not in defined and _module_file(f"{node.module}.{alias.name}") is None:
                    wrong.append(f"from {node.module} import {alias.name}")
    return [f"{path.relative_to(ROOT)}: {line}" for line in wrong]


def test_zonesync_is_one_link_per_top_level_folder() -> None:
    entries = {entry.name: entry for entry in (ROOT / "zonesync").iterdir()}
    links = {name: entry for name, entry in entries.items() if name != "README.md"}  # the README says what they are
    assert sorted(links) == sorted(PACKAGES)
    for name, link in links.items():
        assert link.is_symlink(), f"zonesync/{name} must be a link (a copy would drift)"
        assert link.resolve() == ROOT / name


def test_every_zonesync_import_in_the_repository_resolves_from_the_source_alone() -> None:
    files = [path for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 200
    wrong = [line for path in files for line in _unresolved(path)]
    assert wrong == []


def test_the_resolver_notices_a_missing_module_or_name(tmp_path: Path) -> None:
    probe = ROOT / "tests" / "unit" / "static_layout_probe.py"
    probe.write_text(
        "from zonesync.tasks.zones.engines import no_such_name\nfrom zonesync.tasks.no_such_module import x\n"
    )
    try:
        assert _unresolved(probe) == [
            "tests/unit/static_layout_probe.py: from zonesync.tasks.zones.engines import no_such_name",
            "tests/unit/static_layout_probe.py: from zonesync.tasks.no_such_module",
        ]
    finally:
        probe.unlink()


def test_every_package_folder_is_installed() -> None:
    """A subpackage missing from pyproject.toml's list is missing from the wheel (the editable install would not
    show it: its import hook maps the top-level folders only)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = [init.parent.relative_to(ROOT) for name in PACKAGES for init in (ROOT / name).rglob("__init__.py")]
    assert sorted(listed) == sorted("zonesync." + ".".join(folder.parts) for folder in folders)


# Importing a folder as a top-level package (tasks.update for zonesync.tasks.update; also inside a script a test
# runs) would load a second copy of the module under another name, with its own state: zonesync's modules have
# one name, `zonesync.<folder>...`.
TOP_LEVEL_IMPORT = re.compile(rf"\b(?:from|import) (?:{'|'.join(PACKAGES)})(?:\.|\s)")


def test_nothing_imports_the_folders_as_top_level_packages() -> None:
    files = [path for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))]
    wrong = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if TOP_LEVEL_IMPORT.search(line)
    ]
    assert wrong == []
