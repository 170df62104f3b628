"""Documentation derived from the declarations, and documentation that must stay true to the code.

The data-mapping tables are generated from the mappings and shown in docs/mappings.md. The README and the pages
in docs/ are read as text and held to the repository: their links lead somewhere, the settings they name exist,
the commands they show are the command line's, their Python parses, and the files they name are there.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from zonesync.flows.cli import app
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.settings import Settings
from zonesync.tasks.setup.mapping_docs import mapping_markdown, mappings_markdown

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAPPINGS_PAGE = DOCS / "mappings.md"
README_MAX_LINES = 250

# Environment variables the tests and `make fuzz` read; they are not settings of zonesync itself.
TEST_KNOB_PREFIXES = ("ZONESYNC_TEST_", "ZONESYNC_FUZZ_", "ZONESYNC_PROPERTY_")
TEST_KNOBS = {"ZONESYNC_REQUIRE_ALL_BACKENDS"}
# Read straight from the environment by the code, outside the settings model: the crash hook of the tests
# (tasks/zones/checkpoints.py), documented so that nobody sets it in production.
DIRECT_HOOKS = ("ZONESYNC_FAULT",)
SOURCE_FOLDERS = ("schemas", "tasks", "flows", "deployments")

# Code blocks whose lines are shell commands (or a terminal's transcript), as opposed to Python, diagrams, data.
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text"}
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ";;"}
REPOSITORY_PATH = re.compile(r"(?:tasks|flows|schemas|deployments|bench|tests)/[\w./-]*")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def page_params() -> list[Any]:
    return [pytest.param(page, id=str(page.relative_to(ROOT))) for page in pages()]


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the opening fence, lines) of each fenced code block."""
    fence, language, start = "", "", 0
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not fence:
            opening = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if opening:
                fence, language, start, lines = opening.group(1), opening.group(2).lower(), number, []
        elif stripped.startswith(fence) and not stripped[len(fence) :].strip():
            yield language, start, lines
            fence = ""
        else:
            lines.append(line)


def prose(text: str) -> str:
    """The text outside fenced code blocks (their lines blanked, so line numbers stay)."""
    kept: list[str] = []
    fence = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not fence:
            opening = re.match(r"(`{3,}|~{3,})", stripped)
            if opening:
                fence = opening.group(1)
                kept.append("")
            else:
                kept.append(line)
        else:
            if stripped.startswith(fence) and not stripped[len(fence) :].strip():
                fence = ""
            kept.append("")
    return "\n".join(kept)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            anchor, n = base, 0
            while anchor in found:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return frozenset(found)


def links(page: Path) -> Iterator[str]:
    text = prose(page.read_text(encoding="utf-8"))
    for match in re.finditer(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
        yield match.group(1)


def command_lines(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of each shell line in a code block, continuation lines joined, comment lines left out."""
    for language, start, lines in fenced_blocks(page.read_text(encoding="utf-8")):
        if language not in SHELL_LANGUAGES:
            continue
        pending, first = "", 0
        for offset, line in enumerate(lines, start=start + 1):
            if not pending:
                first = offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            joined, pending = pending + line, ""
            if joined.strip() and not joined.strip().startswith("#"):
                yield first, joined


def shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: a value spread over several lines (curl -d '...'), not a zonesync line
        return line.split()


def zonesync_invocations(line: str) -> Iterator[list[str]]:
    """The arguments of each `zonesync ...` command on a shell line (after `$`, VAR=value, a pipe or `&&`)."""
    command: list[str] = []
    for word in [*shell_words(line), ";"]:
        if word not in SHELL_OPERATORS:
            command.append(word)
            continue
        words = command[1:] if command[:1] == ["$"] else command
        while words and re.match(r"[A-Za-z_]\w*=", words[0]):
            words = words[1:]
        if words and (words[0] == "zonesync" or words[0].endswith("/zonesync")):
            yield words[1:]
        command = []


def option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(name for name in (*param.opts, *param.secondary_opts) if name.startswith("-"))
    return names


@cache
def cli() -> Any:
    return typer.main.get_command(app)


@cache
def setting_names() -> frozenset[str]:
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):  # an alias is the whole variable name, without the prefix
                names.add(alias.upper())
    return frozenset(names)


def is_test_knob(name: str) -> bool:
    return name in TEST_KNOBS or name.startswith(TEST_KNOB_PREFIXES)


# -- the generated data mapping --------------------------------------------------------------------------------------


def test_a_mapping_is_documented_in_the_specification_table_format() -> None:
    lines = mapping_markdown(PAYMENTS).splitlines()
    assert "| Zone | Database Table | Field Name |" in lines
    assert lines[lines.index("| Zone | Database Table | Field Name |") + 2].startswith("| Internet | payment | ")
    assert any(line.startswith("| Intranet | payment | payment_id (int64, required)") for line in lines)
    assert "- Eligible rows: status = 'S'" in lines
    assert (
        "- Reconciled: the rows of a business date by created_at, counted per status, currency, summing amount" in lines
    )


def test_a_mapping_without_business_date_is_reconciled_as_a_whole_table() -> None:
    assert "- Reconciled: the whole table" in mapping_markdown(MERCHANTS).splitlines()


def test_the_mappings_page_shows_the_generated_data_mapping_tables_unchanged() -> None:
    assert mappings_markdown([MERCHANTS, PAYMENTS]).strip() in MAPPINGS_PAGE.read_text(encoding="utf-8")


# -- the README and docs/ held to the repository ---------------------------------------------------------------------


def test_the_readme_is_at_most_250_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to a page in docs/"


def test_the_readme_links_every_page_in_docs() -> None:
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in links(README)}
    assert [page.name for page in DOCS.glob("*.md") if page.resolve() not in linked] == []


def test_the_readme_shows_the_push_example_the_first_hour_test_runs() -> None:
    """tests/integration/test_first_hour.py runs the first README line that starts with `zonesync push merchants`."""
    shown = [line for _, line in command_lines(README) if line.startswith("zonesync push merchants")]
    lines = README.read_text(encoding="utf-8").splitlines()
    first = next((line for line in lines if line.startswith("zonesync push merchants")), None)
    assert first is not None and shown and shown[0] == first


@pytest.mark.parametrize("page", page_params())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for link in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto: ... : not a file of the repository
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page.resolve()
        if not target.is_relative_to(ROOT):
            broken.append(f"{link}: outside the repository")
        elif not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading makes #{anchor} in {target.relative_to(ROOT)}")
    assert broken == []


@pytest.mark.parametrize("page", page_params())
def test_every_zonesync_variable_named_is_a_setting_or_a_test_knob(page: Path) -> None:
    known = setting_names()
    unknown = []
    for match in re.finditer(r"\bZONESYNC_[A-Z0-9_*]*", page.read_text(encoding="utf-8")):
        name = match.group(0).rstrip("_") if "*" not in match.group(0) else match.group(0)
        if "*" in name:  # a family: ZONESYNC_*_URL, ZONESYNC_TEST_*_URL
            if not (any(fnmatch.fnmatchcase(setting, name) for setting in known) or is_test_knob(name)):
                unknown.append(name)
        elif name not in known and not is_test_knob(name) and name not in DIRECT_HOOKS:
            unknown.append(name)
    assert unknown == [], f"not a field of zonesync.schemas.settings.Settings (nor a test knob): {unknown}"


def test_the_variables_read_outside_the_settings_are_still_read_by_the_code() -> None:
    sources = [path.read_text(encoding="utf-8") for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")]
    assert [name for name in DIRECT_HOOKS if not any(f'"{name}"' in source for source in sources)] == []


@pytest.mark.parametrize("page", page_params())
def test_every_zonesync_command_shown_exists_with_the_options_shown(page: Path) -> None:
    wrong = []
    for number, line in command_lines(page):
        for arguments in zonesync_invocations(line):
            command, path = cli(), ["zonesync"]
            words = [word.strip("[]").removesuffix("...").rstrip("]") for word in arguments]
            while words and hasattr(command, "commands") and not words[0].startswith("-"):
                name = words.pop(0)
                if name not in command.commands:
                    wrong.append(f"line {number}: {' '.join(path)} has no command {name!r}")
                    break
                command = command.commands[name]
                path.append(name)
            else:
                options = option_names(command)
                for word in words:
                    option = re.match(r"--?[A-Za-z][\w-]*", word)
                    if option and option.group(0) not in options:
                        wrong.append(f"line {number}: {' '.join(path)} has no option {option.group(0)}")
    assert wrong == []


@pytest.mark.parametrize("page", page_params())
def test_every_python_block_parses(page: Path) -> None:
    for language, start, lines in fenced_blocks(page.read_text(encoding="utf-8")):
        if language in {"python", "py"}:
            try:
                ast.parse("\n".join(lines))
            except SyntaxError as exc:
                pytest.fail(f"the Python block at line {start} does not parse: {exc}")


@pytest.mark.parametrize("page", page_params())
def test_every_repository_path_in_backticks_exists(page: Path) -> None:
    missing = []
    for span in re.findall(r"`([^`]+)`", prose(page.read_text(encoding="utf-8"))):
        path = REPOSITORY_PATH.match(span.strip())
        if path and not (ROOT / path.group(0).rstrip(".")).exists():  # `tasks/x.py:function`: the file, not `:...`
            missing.append(path.group(0))
    assert missing == [], f"named in {page.relative_to(ROOT)} but not in the repository: {missing}"
