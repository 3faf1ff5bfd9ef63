"""The drill harness against the single-node stack, with no fault: the baseline every drill compares to.
Every command acknowledged is applied exactly once, and the stock adds up."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from tests.drills.harness import Drill, Target, run_drill

pytestmark = [pytest.mark.stack, pytest.mark.drill]


async def no_fault(drill: Drill) -> None:
    return None


async def test_the_harness_counts_a_steady_load_on_one_node(
    single_node_target: Target, stack: Settings, drill_duration: float
) -> None:
    outcome = await run_drill(
        "single_node_baseline",
        single_node_target,
        no_fault,
        duration_s=drill_duration / 2,
        live_url=f"ws://127.0.0.1:{stack.live_port}/v1/live",
    )
    assert outcome.acknowledged > 0.9 * outcome.rate * outcome.duration_s
    assert outcome.failed == 0, outcome.failures
    assert (outcome.lost, outcome.applied_twice) == (0, 0)
    assert outcome.applied == outcome.acknowledged
    assert outcome.stock_matches
    assert outcome.notes["live_converged"], outcome.notes
    assert outcome.notes["live_gaps"] == []
