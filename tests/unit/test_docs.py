"""Documentation derived from the declarations: the data-mapping tables, and the README that shows them."""

from __future__ import annotations

from pathlib import Path

from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.tasks.setup.mapping_docs import mapping_markdown, mappings_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_the_readme_shows_the_generated_data_mapping_tables_unchanged() -> None:
    assert mappings_markdown([MERCHANTS, PAYMENTS]).strip() in README.read_text(encoding="utf-8")
