"""Mapping discovery: every module-level `SyncMapping` in the modules named by ZONESYNC_MAPPING_MODULES."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

from zonesync.schemas.errors import ConfigError, MappingError
from zonesync.schemas.mapping import Direction, SyncMapping
from zonesync.schemas.settings import get_settings


def discover_mappings(modules: Iterable[str]) -> dict[str, SyncMapping]:
    """Import each module and collect its module-level mappings, keyed by mapping name."""
    found: dict[str, SyncMapping] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import mapping module {module_name!r} (ZONESYNC_MAPPING_MODULES): {exc}; install its "
                "package in this environment, or put the folder that holds it on PYTHONPATH (PYTHONPATH=$PWD for "
                "the current directory)"
            ) from exc
        for value in vars(module).values():
            if not isinstance(value, SyncMapping):
                continue
            existing = found.get(value.name)
            if existing is not None and existing is not value:
                raise MappingError(f"mapping name {value.name!r} is declared twice (in {module_name})")
            found[value.name] = value
    return found


@lru_cache(maxsize=8)
def _registry(modules: tuple[str, ...]) -> dict[str, SyncMapping]:
    return discover_mappings(modules)


def all_mappings() -> dict[str, SyncMapping]:
    """Every registered mapping, by name."""
    return _registry(tuple(get_settings().mapping_modules))


def get_mapping(name: str) -> SyncMapping:
    """One mapping by name; an unknown name is a ConfigError listing the known ones."""
    registered = all_mappings()
    if name not in registered:
        known = ", ".join(sorted(registered)) or "none"
        raise ConfigError(f"unknown mapping {name!r} (registered: {known})")
    return registered[name]


def select_mappings(direction: Direction | None, names: Sequence[str] | None = None) -> list[SyncMapping]:
    """The mappings of one direction (None: both), all of them or the named ones (which must have that direction)."""
    if names is None:
        return [m for m in all_mappings().values() if direction in (None, m.direction)]
    selected = [get_mapping(name) for name in names]
    for mapping in selected:
        if direction is not None and mapping.direction != direction:
            raise ConfigError(f"mapping {mapping.name!r} runs {mapping.direction}, not {direction}")
    return selected
