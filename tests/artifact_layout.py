"""How wide a Markdown artifact's tables are in Prefect's UI, which never wraps a table cell and clips what does
not fit (`.p-table-data { white-space: nowrap; overflow: hidden }`).

Measured in Chromium at a 1280 px window: the artifact page's Markdown column is about 720 px wide; a cell takes
its text (14 px font: under 8 px a character, bold headers included) and 24 px of padding. The estimate here
rounds up (8 px a character) and the budget down (690 px), so a table that passes fits with room to spare.
"""

from __future__ import annotations

import re

PIXELS_PER_CHARACTER = 8
CELL_PADDING = 24
COLUMN_BUDGET = 690  # px, the artifact page at a 1280 px window (720 measured)


def table_widths(markdown: str) -> list[int]:
    """The estimated width in pixels of each Markdown table of the text."""
    widths, columns = [], list[int]()
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [_shown(cell) for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if set("".join(cells)) - set("- :"):  # not the |---| line
                columns = [max(pair) for pair in zip(columns or [0] * len(cells), map(len, cells), strict=True)]
        elif columns:
            widths.append(sum(PIXELS_PER_CHARACTER * chars + CELL_PADDING for chars in columns))
            columns = []
    return widths


def _shown(cell: str) -> str:
    """A cell's text as displayed (a link as its text; no emphasis markers or escapes)."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell.strip()).replace("**", "").replace("\\", "")


def clipped_tables(markdown: str) -> list[int]:
    """The widths of the tables that would not fit the artifact page at a normal window width."""
    return [width for width in table_widths(markdown) if width > COLUMN_BUDGET]
