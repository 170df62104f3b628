"""Per-database behaviour behind one interface; the only place that knows which database it talks to.

Every module of this package that declares `URL_NAMES` is a supported database: adding one is adding its module
(and its tests), nothing else (`surface` says what the module provides). The declarations are literals, read
from the modules' source without importing them, so a database module (with its driver) loads only when a URL
first names its database: `zonesync --help` pays for no driver, and a run on SQLite for neither server driver.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.abc
import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zonesync.tasks.dialects.driver_errors import DriverErrors
    from zonesync.tasks.dialects.surface import Database

DECLARATIONS = ("URL_NAMES", "DRIVER_PACKAGES")


@dataclass(frozen=True)
class Declared:
    """What a database module declares about itself, read without importing it."""

    module: str
    url_names: tuple[str, ...]  # the URL schemes (and SQLAlchemy dialect names) it answers to
    driver_packages: tuple[str, ...]  # the top-level packages whose exceptions its driver raises


@functools.cache
def declared() -> tuple[Declared, ...]:
    """The database modules of this package and what each declares."""
    found = []
    for module_info in pkgutil.iter_modules(__path__):
        values = _literals(f"{__name__}.{module_info.name}")
        if "URL_NAMES" in values:
            found.append(Declared(module_info.name, values["URL_NAMES"], values.get("DRIVER_PACKAGES", ())))
    return tuple(found)


def _literals(module: str) -> dict[str, tuple[str, ...]]:
    """The module's top-level `DECLARATIONS` assignments, as the literals they are."""
    spec = importlib.util.find_spec(module)
    loader = spec.loader if spec else None
    source = loader.get_source(module) if isinstance(loader, importlib.abc.InspectLoader) else None
    if source is None:
        return {}
    values = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in DECLARATIONS:
            values[target.id] = tuple(ast.literal_eval(node.value))
    return values


@functools.cache
def _load(module: str) -> Database:
    database: Database = importlib.import_module(f"{__name__}.{module}").DATABASE
    return database


def supported_names() -> list[str]:
    """The URL schemes zonesync accepts."""
    return sorted(name for found in declared() for name in found.url_names)


def database(name: str) -> Database | None:
    """The database a URL scheme or SQLAlchemy dialect name ('postgresql', 'mysql', ...) stands for, if supported;
    its module is imported now, the first time."""
    found = next((found for found in declared() if name in found.url_names), None)
    return _load(found.module) if found else None


def driver_errors_for(original: BaseException) -> DriverErrors | None:
    """What the exceptions of the driver that raised `original` mean; None if no database driver raised it."""
    packages = {kind.__module__.partition(".")[0] for kind in type(original).__mro__}
    for found in declared():
        if packages.intersection(found.driver_packages):
            errors = _load(found.module).errors
            if errors.owns(original):
                return errors
    return None


__all__ = ["Declared", "database", "declared", "driver_errors_for", "supported_names"]
