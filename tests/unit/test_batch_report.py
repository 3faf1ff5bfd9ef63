"""A batch applied in parts (one command per transaction after a refusal) reports like one batch."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from workers.pipeline.batch import BatchReport


def test_adding_a_report_appends_every_outcome_list_in_order() -> None:
    first: BatchReport[Any] = BatchReport()
    second: BatchReport[Any] = BatchReport()
    for report, tag in ((first, "a"), (second, "b")):
        for f in fields(report):
            getattr(report, f.name).append(f"{tag}-{f.name}")
    first.add(second)
    assert {f.name: getattr(first, f.name) for f in fields(first)} == {
        "applied": ["a-applied", "b-applied"],
        "rejected": ["a-rejected", "b-rejected"],
        "duplicates": ["a-duplicates", "b-duplicates"],
        "events": ["a-events", "b-events"],
    }
