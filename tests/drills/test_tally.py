"""The drills' counting, on made-up outcomes: a lost, a doubled or a miscounted command must show."""

from __future__ import annotations

from tests.drills.load import Sample
from tests.drills.tally import recovery, table, tally

S = 1_000_000_000


def sample(
    cid: str, sent_s: float, latency_ms: float = 5.0, acked: bool = True, path: str = "http"
) -> Sample:
    sent = int(sent_s * S)
    return Sample(path, sent, sent + int(latency_ms * 1e6), acked, cid if acked or path == "kafka" else None)


def test_a_clean_run_counts_every_command_once() -> None:
    samples = [sample("a", 1), sample("b", 2, path="kafka"), sample("c", 3)]
    outcome = tally(
        "clean", samples, rate=1, duration_s=3, applied_ids={"a", "b", "c"},
        ledger_rows={"a": 1, "b": 1, "c": 1}, stock_delta=3, start_ns=0, fault_ns=None,
    )  # fmt: skip
    assert (outcome.acknowledged, outcome.applied, outcome.lost, outcome.applied_twice) == (3, 3, 0, 0)
    assert outcome.stock_matches
    assert outcome.acknowledged_http == 2
    assert outcome.acknowledged_kafka == 1


def test_an_acknowledged_command_not_applied_is_lost() -> None:
    samples = [sample("a", 1), sample("b", 2)]
    outcome = tally(
        "lost", samples, rate=1, duration_s=2, applied_ids={"a"}, ledger_rows={"a": 1},
        stock_delta=1, start_ns=0, fault_ns=None,
    )  # fmt: skip
    assert outcome.lost == 1


def test_a_command_with_two_ledger_rows_is_applied_twice_and_stock_disagrees() -> None:
    samples = [sample("a", 1), sample("b", 2)]
    outcome = tally(
        "twice", samples, rate=1, duration_s=2, applied_ids={"a", "b"},
        ledger_rows={"a": 2, "b": 1}, stock_delta=3, start_ns=0, fault_ns=None,
    )  # fmt: skip
    assert outcome.applied_twice == 1
    assert not outcome.stock_matches


def test_an_unacknowledged_command_that_was_applied_is_not_lost() -> None:
    # The edge published it, then died before its 202: counted in applied and in the stock, not as lost.
    samples = [sample("a", 1), sample("x", 2, acked=False)]
    outcome = tally(
        "unacked", samples, rate=1, duration_s=2, applied_ids={"a", "z"},
        ledger_rows={"a": 1, "z": 1}, stock_delta=2, start_ns=0, fault_ns=None,
    )  # fmt: skip
    assert (outcome.lost, outcome.failed, outcome.applied) == (0, 1, 2)
    assert outcome.stock_matches


def test_recovery_runs_from_the_fault_to_the_last_failed_or_slow_answer() -> None:
    samples = [
        sample("a", 9.0),
        sample("b", 10.5, acked=False),  # refused right after the fault at 10 s
        sample("c", 11.0, latency_ms=3000),  # slow: answered at 14 s
        sample("d", 12.0),
        sample("e", 15.0),
    ]
    assert recovery(samples, 10 * S) == 4.0
    assert recovery([sample("a", 11)], 10 * S) == 0.0
    outcome = tally(
        "fault", samples, rate=1, duration_s=6, applied_ids={"a", "c", "d", "e"},
        ledger_rows={}, stock_delta=4, start_ns=8 * S, fault_ns=10 * S,
    )  # fmt: skip
    assert outcome.fault_at_s == 2.0
    assert outcome.recover_s == 4.0
    assert outcome.http_p99_ms_fault == 3000.0
    assert outcome.http_p99_ms_steady == 5.0


def test_the_table_has_a_row_per_drill() -> None:
    outcome = tally(
        "kafka_leader", [sample("a", 1)], rate=200, duration_s=20, applied_ids={"a"},
        ledger_rows={"a": 1}, stock_delta=1, start_ns=0, fault_ns=None,
    )  # fmt: skip
    lines = table([outcome, outcome]).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| kafka_leader | 1 | 1 | 1 | 0 | 0 | True |")
