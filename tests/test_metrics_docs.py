"""docs/metrics.md is what `invmon docs metrics` generates from the code: every process's metrics."""

from __future__ import annotations

import difflib

from invmon.metrics_docs import CATALOGUE, generate, processes


def test_the_metrics_catalogue_matches_the_code() -> None:
    expected, _ = generate()
    current = CATALOGUE.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "docs/metrics.md",
            "generated",
        )
    )
    assert not diff, f"docs/metrics.md is out of date; run `invmon docs metrics`:\n{diff}"


def test_every_process_is_in_the_catalogue() -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    missing = [name for name in processes() if f" {name} |" not in text and f" {name}," not in text]
    assert not missing, missing
    for owned in (
        "invmon_consumer_lag",
        "invmon_outbox_oldest_unpublished_age_seconds",
        "invmon_table_bytes",
    ):
        assert f"| `{owned}` |" in text
