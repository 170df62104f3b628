"""The run summaries' Markdown: every column shown in Prefect's UI, long text kept out of tables and inert."""

from __future__ import annotations

from tests.artifact_layout import clipped_tables, table_widths
from zonesync.tasks.reporting.sync_run import escape_inline, results_markdown
from zonesync.tasks.results import MappingSyncResult


def test_counts_are_lines_that_no_width_clips() -> None:
    result = MappingSyncResult(
        mapping="merchant_settlement_accounts", status="partial", read=1_000_000, upserted=999_990,
        flagged=999_990, quarantined=7, changed_in_flight=3, seconds=1234.5,
    )  # fmt: skip
    text = "\n".join(results_markdown([result]))

    assert table_widths(text) == [], text
    assert text == (
        "- **merchant\\_settlement\\_accounts** — partial: 1,000,000 read, 999,990 upserted, 999,990 flagged, "
        "7 quarantined, 3 changed in flight (1,234.50 s)"
    )


def test_a_link_counts_as_its_text() -> None:
    table = (
        "| batch_job | flow run |\n| --- | --- |\n| 7 | [0badcafe](http://127.0.0.1:4200/runs/flow-run/"
        + "0" * 36
        + ") |"
    )
    assert table_widths(table) == [(9 + 8) * 8 + 2 * 24]


def test_the_old_quarantine_table_would_have_been_clipped() -> None:
    """The layout check itself: the table the summaries had (measured clipped at 1280 px) does not pass."""
    old = (
        "| mapping | record key | reason | detail | attempts |\n| --- | --- | --- | --- | --- |\n"
        '| merchants | {"merchant_id":13} | validation | name: str_length(1, 100) (got 0 character(s)) | 1 |'
    )
    assert clipped_tables(old) == table_widths(old) != []


def test_text_in_a_line_of_markdown_makes_no_markup() -> None:
    text = "fee: greater_than(0) *x* [a](b) <b> `c` a|b ~~d~~ # e\nf"

    shown = escape_inline(text)

    assert "\n" not in shown
    assert shown == "fee: greater\\_than(0) \\*x\\* \\[a\\](b) \\<b\\> \\`c\\` a\\|b \\~\\~d\\~\\~ \\# e f"
