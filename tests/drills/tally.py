"""What a drill's load came to, per command id: a pure function of what the senders saw and what the database
holds afterwards, so that the counting itself is tested without a cluster (tests/drills/test_tally.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tests.drills.load import Sample

# An acknowledgement slower than this, or than SLOW_FACTOR x the p99 before the fault (a busy shared box
# is slow without any fault), counts as "not yet recovered".
SLOW_MS = 1000.0
SLOW_FACTOR = 2.0
MIN_FAULT_WINDOW_S = 5.0  # p99 during the fault is taken over at least this long after it


@dataclass(frozen=True, slots=True)
class Outcome:
    """The drill's figures; `lost` and `applied_twice` must be 0."""

    drill: str
    rate: float
    duration_s: float
    sent: int
    acknowledged: int
    acknowledged_http: int
    acknowledged_kafka: int
    failed: int  # sent but not acknowledged (refused, reset, 5xx, timed out)
    applied: int  # distinct command ids of this run in processed_commands, status applied
    lost: int  # acknowledged, not applied
    applied_twice: int  # command ids with more than one ledger row
    stock_delta: int  # sum of on-hand over the drill's SKUs minus what they started with
    stock_matches: bool  # stock_delta == applied: each applied receipt added exactly one unit
    fault_at_s: float | None  # seconds after the load started
    recover_s: float | None  # fault -> the last failed or slow answer (0: no answer failed or was slow)
    http_p99_ms_fault: float | None  # 202 latency p99 in the fault window
    kafka_p99_ms_fault: float | None  # broker ack latency p99 in the fault window
    http_p99_ms_steady: float | None  # 202 latency p99 before the fault
    http_p50_ms_steady: float | None  # and its median
    failures: dict[str, int]  # failure detail -> count
    notes: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _p99(values: Sequence[float], q: float = 0.99) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _latency_ms(s: Sample) -> float:
    return (s.done_ns - s.sent_ns) / 1e6


def recovery(samples: Sequence[Sample], fault_ns: int, slow_ms: float = SLOW_MS) -> float:
    """Seconds from the fault to the answer of the last command that failed or was slow; 0 when none was."""
    bad = [s.done_ns for s in samples if s.sent_ns >= fault_ns and (not s.acked or _latency_ms(s) > slow_ms)]
    # A command sent just before the fault can be the one that hangs on it.
    bad += [s.done_ns for s in samples if s.sent_ns < fault_ns <= s.done_ns and not s.acked]
    return max(0.0, (max(bad) - fault_ns) / 1e9) if bad else 0.0


def tally(
    drill: str,
    samples: Sequence[Sample],
    *,
    rate: float,
    duration_s: float,
    applied_ids: Iterable[str],
    ledger_rows: Mapping[str, int],
    stock_delta: int,
    start_ns: int,
    fault_ns: int | None,
    notes: Mapping[str, Any] | None = None,
) -> Outcome:
    """`applied_ids`: this run's command ids applied (processed_commands); `ledger_rows`: ledger rows per
    command id over the drill's SKUs; `stock_delta`: on-hand now minus at the start over those SKUs."""
    applied = {str(c) for c in applied_ids}
    acked = [s for s in samples if s.acked and s.command_id is not None]
    acked_ids = {s.command_id for s in acked}
    failures: dict[str, int] = {}
    for s in samples:
        if not s.acked:
            failures[s.detail[:60]] = failures.get(s.detail[:60], 0) + 1
    fault_at = recover = http_fault = kafka_fault = None
    before = [
        _latency_ms(s) for s in acked if s.path == "http" and (fault_ns is None or s.sent_ns < fault_ns)
    ]
    if fault_ns is not None:
        fault_at = (fault_ns - start_ns) / 1e9
        baseline = _p99([_latency_ms(s) for s in acked if s.sent_ns < fault_ns]) or 0.0
        recover = recovery(samples, fault_ns, max(SLOW_MS, SLOW_FACTOR * baseline))
        window_end = fault_ns + int(max(recover, MIN_FAULT_WINDOW_S) * 1e9)
        in_window = [s for s in acked if fault_ns <= s.sent_ns <= window_end]
        http_fault = _p99([_latency_ms(s) for s in in_window if s.path == "http"])
        kafka_fault = _p99([_latency_ms(s) for s in in_window if s.path == "kafka"])
    return Outcome(
        drill=drill,
        rate=rate,
        duration_s=duration_s,
        sent=len(samples),
        acknowledged=len(acked_ids),
        acknowledged_http=sum(1 for s in acked if s.path == "http"),
        acknowledged_kafka=sum(1 for s in acked if s.path == "kafka"),
        failed=len(samples) - len(acked),
        applied=len(applied),
        lost=len(acked_ids - applied),
        applied_twice=sum(1 for n in ledger_rows.values() if n > 1),
        stock_delta=stock_delta,
        stock_matches=stock_delta == len(applied),
        fault_at_s=fault_at,
        recover_s=recover,
        http_p99_ms_fault=http_fault,
        kafka_p99_ms_fault=kafka_fault,
        http_p99_ms_steady=_p99(before),
        http_p50_ms_steady=_p99(before, 0.5),
        failures=failures,
        notes=dict(notes or {}),
    )


COLUMNS = (
    ("drill", "drill", "{}"),
    ("sent", "sent", "{}"),
    ("acked", "acknowledged", "{}"),
    ("applied", "applied", "{}"),
    ("lost", "lost", "{}"),
    ("twice", "applied_twice", "{}"),
    ("stock ok", "stock_matches", "{}"),
    ("recover s", "recover_s", "{:.1f}"),
    ("202 p99 ms (fault)", "http_p99_ms_fault", "{:.0f}"),
    ("ack p99 ms (fault)", "kafka_p99_ms_fault", "{:.0f}"),
    ("202 p99 ms (before)", "http_p99_ms_steady", "{:.0f}"),
)


def table(outcomes: Sequence[Outcome]) -> str:
    """A Markdown table of the outcomes (printed by the drills and pasted into docs/deployment.md)."""

    def cell(o: Outcome, attr: str, fmt: str) -> str:
        value = getattr(o, attr)
        return "-" if value is None else fmt.format(value)

    rows = [[name for name, _, _ in COLUMNS], ["---"] * len(COLUMNS)]
    rows += [[cell(o, attr, fmt) for _, attr, fmt in COLUMNS] for o in outcomes]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
