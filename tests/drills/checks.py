"""What every drill asserts, and the drill script's clock."""

from __future__ import annotations

import asyncio

from tests.drills.tally import Outcome


def assert_clean(outcome: Outcome) -> None:
    assert outcome.acknowledged > 0.5 * outcome.rate * outcome.duration_s, outcome
    assert outcome.lost == 0, outcome
    assert outcome.applied_twice == 0, outcome
    assert outcome.stock_matches, outcome


def assert_live_recovered(outcome: Outcome) -> None:
    """The WebSocket client ended with the database's stock, never through a silent gap."""
    notes = outcome.notes
    assert notes["live_gaps"] == [], notes
    assert notes["live_foreign_epochs"] == 0, notes
    assert notes["live_converged"], notes


async def at(drill_s: float, fraction: float, started: float) -> None:
    """Sleep until `fraction` of the drill's load has passed (the script's clock)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, started + drill_s * fraction - loop.time()))  # the drill's timeline
