"""docs/own-databases.md followed block by block, as a user with their own PostgreSQL and MariaDB would.

The page's blocks run in their order: each ```sql block in the zone its first line names (`-- intranet zone
(PostgreSQL), ...`), the ```python block saved where its first line says, each `export` of a ```bash block into
the environment of the commands that follow, and each `zonesync ...` line through the real console script. A
```text block is a transcript (`$ zonesync ...`, then what it prints): the command must have run, and printed
those lines in that order (blanks aside). The page's database names (`shop_intranet`, `shop_internet`) are
replaced by the session's throw-away databases on the servers of ZONESYNC_TEST_POSTGRES_URL and
ZONESYNC_TEST_MARIADB_URL (host, port, login and password with them; the URL's scheme stays the page's). Every
command must exit 0, and afterwards each mapping's target must hold exactly its eligible source rows, which are
flagged, and nothing else.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url

from tests.conftest import ThrowawayServers, _wipe
from tests.integration.console import Cli
from tests.integration.helpers import mapped, source_rows, target_rows
from tests.unit.test_docs import fenced_blocks
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.zones.engines import create_engine, parse_url, zone_setting

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own-databases.md"
# The database each zone has on the page, replaced by the session's throw-away database of that zone.
PAGE_DATABASES = {"intranet": "shop_intranet", "internet": "shop_internet"}
SQL_ZONE = re.compile(r"--\s*(intranet|internet) zone \((PostgreSQL|MariaDB)\)")
BACKENDS = {"PostgreSQL": "postgresql", "MariaDB": "mariadb"}
URL_SCHEMES = {"postgresql": {"postgresql", "postgres"}, "mariadb": {"mariadb", "mysql"}}
EXPORT = re.compile(r"export\s+([A-Za-z_]\w*)=")
COMMANDS_SHOWN = {"init", "retry", "end-day", "reconcile", "status"}

pytestmark = [pytest.mark.backend("postgresql"), pytest.mark.backend("mariadb")]


@dataclass
class Block:
    language: str
    line: int
    lines: list[str]

    @property
    def where(self) -> str:
        return f"{PAGE.name}, the ```{self.language} block at line {self.line}"


def page_blocks() -> list[Block]:
    return [Block(language, line, lines) for language, line, lines in fenced_blocks(PAGE.read_text(encoding="utf-8"))]


def sql_zone(block: Block) -> tuple[str, str]:
    """(zone, backend) that the first line of a ```sql block names."""
    named = SQL_ZONE.match(block.lines[0].strip()) if block.lines else None
    assert named, f"{block.where}: its first line must name its zone, e.g. `-- intranet zone (PostgreSQL)`"
    return named.group(1), BACKENDS[named.group(2)]


def page_zones(blocks: list[Block]) -> dict[str, str]:
    """zone -> backend, as the page's ```sql blocks name them (each zone on one backend)."""
    zones: dict[str, str] = {}
    for block in blocks:
        if block.language == "sql":
            zone, backend = sql_zone(block)
            assert zones.setdefault(zone, backend) == backend, f"{block.where}: the {zone} zone is on two backends"
    assert set(zones) == set(PAGE_DATABASES), f"{PAGE.name} must show the tables of both zones: {zones}"
    return zones


def statements(block: Block) -> list[str]:
    """The block's statements: comment lines left out, split at each `;` that ends a line."""
    text = "\n".join(line for line in block.lines if not line.strip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*$", text, flags=re.MULTILINE) if part.strip()]


def shell_lines(block: Block) -> list[str]:
    """The block's command lines, continuation lines joined, comment and blank lines left out."""
    found, pending = [], ""
    for line in block.lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.strip().startswith("#"):
            found.append(line.strip())
    return found


def printed_form(text: str) -> str:
    """A line as a transcript is compared: blanks collapsed."""
    return " ".join(text.split())


@dataclass
class Reader:
    """Someone following the page: their two databases, their shell's environment, the commands they ran."""

    home: Path
    zones: dict[str, str]  # zone -> backend
    urls: dict[str, str] = field(repr=False)  # zone -> the throw-away database's URL (with its password)
    engines: dict[str, Engine]
    cli: Cli
    urls_printed: dict[str, str] = field(default_factory=dict, repr=False)  # the page's URL printed -> the real one
    module: Path | None = None

    def follow(self, block: Block) -> None:
        if block.language == "sql":
            with self.engines[sql_zone(block)[0]].begin() as conn:
                for statement in statements(block):
                    conn.exec_driver_sql(statement)
        elif block.language == "python":
            saved_as = block.lines[0].strip().removeprefix("#").strip() if block.lines else ""
            assert saved_as.endswith(".py"), f"{block.where}: its first line must say where to save it"
            self.module = self.home / saved_as
            self.module.parent.mkdir(parents=True, exist_ok=True)
            self.module.write_text("\n".join(block.lines) + "\n", encoding="utf-8")
        elif block.language == "bash":
            for line in shell_lines(block):
                self.run(line, block)
        elif block.language == "text":
            self.check_transcript(block)
        else:
            pytest.fail(f"{block.where}: the test does not know how to follow a ```{block.language} block")

    def run(self, line: str, block: Block) -> None:
        """One shell line: an `export` into the commands' environment, or a `zonesync` command (exit code 0)."""
        words = shlex.split(line, comments=True)
        if EXPORT.match(line) and len(words) == 2:
            name, _, value = words[1].partition("=")
            self.export(name, value.replace("${PWD}", str(self.home)).replace("$PWD", str(self.home)), block)
            return
        assert words[:1] == ["zonesync"], f"{block.where}: the test does not know how to run {line!r}"
        run = self.cli(*words[1:])
        assert run.code == 0, f"{block.where}: {run}"

    def export(self, name: str, value: str, block: Block) -> None:
        """A setting; a zone's URL is the page's with the throw-away database's host, port, login and password."""
        assert "$" not in value, f"{block.where}: the test cannot expand {value!r}"
        zone = next((zone for zone in self.zones if name == zone_setting(zone)), None)
        if zone is not None:
            url, real = make_url(value), make_url(self.urls[zone])
            assert url.database == PAGE_DATABASES[zone], f"{block.where}: the {zone} URL names {url.database!r}"
            backend = self.zones[zone]
            assert url.get_backend_name() in URL_SCHEMES[backend], f"{block.where}: {name} is not a {backend} URL"
            used = url.set(username=real.username, password=real.password, host=real.host, port=real.port,
                           database=real.database, query=real.query)  # fmt: skip
            self.urls_printed[url.render_as_string()] = used.render_as_string()  # as printed: password hidden
            value = used.render_as_string(hide_password=False)
        self.cli.settings[name] = value

    def check_transcript(self, block: Block) -> None:
        """The transcript's command ran (its first line, `$ zonesync ...`) and printed its other lines in order."""
        first = block.lines[0] if block.lines else ""
        assert first.startswith("$ zonesync "), f"{block.where}: start it with the command, `$ zonesync ...`"
        args = tuple(shlex.split(first.removeprefix("$ zonesync ")))
        run = next((run for run in reversed(self.cli.runs) if run.args == args), None)
        assert run is not None, f"{block.where}: `zonesync {' '.join(args)}` is not among the page's commands"
        printed = [printed_form(line) for line in run.stdout.splitlines()]
        at = 0
        for line in block.lines[1:]:
            expected = printed_form(line)
            for page_url, real_url in self.urls_printed.items():
                expected = expected.replace(page_url, real_url)
            if expected:
                assert expected in printed[at:], f"{block.where}: not printed (after the lines above it): {line}\n{run}"
                at = printed.index(expected, at) + 1


def load_mappings(path: Path) -> list[SyncMapping]:
    """The SyncMappings of the module the page had us save (loaded under a name of its own)."""
    spec = importlib.util.spec_from_file_location("own_databases_page_mappings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [value for value in vars(module).values() if isinstance(value, SyncMapping)]


def test_the_page_goes_from_empty_databases_to_a_first_sync_that_reconciles(
    servers: ThrowawayServers, prefect_api: str, tmp_path: Path
) -> None:
    blocks = page_blocks()
    zones = page_zones(blocks)
    urls = {zone: servers.get(backend).zone_url(zone) for zone, backend in zones.items()}
    engines = {zone: create_engine(parse_url(url, setting=zone_setting(zone))) for zone, url in urls.items()}
    for engine in engines.values():
        _wipe(engine)  # no table at all, not even the bookkeeping ones: `zonesync init` makes them
    passwords = tuple(servers.get(backend).password for backend in zones.values())
    reader = Reader(tmp_path, zones, urls, engines, Cli(tmp_path, {}, passwords, api_url=prefect_api))
    try:
        for block in blocks:
            reader.follow(block)

        runs = reader.cli.runs
        assert {run.args[0] for run in runs} >= COMMANDS_SHOWN, f"{PAGE.name} runs only {[r.args for r in runs]}"
        assert reader.module is not None, f"{PAGE.name} shows no mapping module"
        mappings = load_mappings(reader.module)
        assert {mapping.direction for mapping in mappings} == {"intranet_to_internet", "internet_to_intranet"}
        init = next(run for run in runs if run.args == ("init",))
        assert "warning:" not in init.stdout, str(init)  # no live column narrower than its model

        for mapping in mappings:
            sources = source_rows(engines[mapping.source_zone], mapping)
            targets = target_rows(engines[mapping.target_zone], mapping)
            by_source = {column.source: column.name for column in mapping.columns}  # source_rows: by target names
            assert set(mapping.eligible or {}) <= set(by_source), f"{mapping.name}: an eligible column not mapped"
            wanted = {by_source[column]: value for column, value in (mapping.eligible or {}).items()}
            eligible = {key for key, values in sources.items() if all(values[c] == v for c, v in wanted.items())}
            assert eligible, f"{PAGE.name} inserts no row that the {mapping.name} mapping carries"
            assert set(targets) == eligible, f"{mapping.name}: the target holds {sorted(targets)}"
            for key, values in sources.items():
                assert values["__flag"] == (key in eligible), f"{mapping.name} {key}: flag {values['__flag']}"
                if key in eligible:
                    assert targets[key] == mapped(values), f"{mapping.name} {key}: the target differs"

        status = next(run for run in reversed(runs) if run.args == ("status",))
        for mapping in mappings:
            assert status.row(mapping.name)[2] == "0", str(status)  # its unsynced rows: none
    finally:
        for engine in engines.values():
            engine.dispose()
