"""`GET /v1/overview`: the items page's strip (items per alert state, commands/s over ten minutes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api_edge.auth import require
from api_edge.state import clients
from contracts.operations import CommandRateBucket, Overview
from db import ops_reads, overview_reads
from db.command_log import driver
from db.overview_reads import BUCKET_S, WINDOW_S, RateBucket

router = APIRouter(prefix="/v1", tags=["reads"], dependencies=[Depends(require("viewer"))])
ALERT_STATES = ("ok", "low", "out", "over")


def overview(by_state: dict[str, int], rate: list[RateBucket]) -> Overview:
    """Every known state appears, zero or not, so the strip keeps its layout as items move between them."""
    return Overview(
        items_by_alert_state={state: 0 for state in ALERT_STATES} | by_state,
        bucket_s=BUCKET_S,
        window_s=WINDOW_S,
        commands=[
            CommandRateBucket(start=b.start, commands=b.commands, per_second=b.commands / BUCKET_S)
            for b in rate
        ],
    )


@router.get("/overview")
async def get_overview(request: Request) -> Overview:
    """Active items per alert state and the commands the workers finished per 10 s over the last 10 minutes:
    what the dashboard's overview strip shows."""
    async with clients(request).reads.connect() as conn:
        pg = await driver(conn)
        async with pg.transaction(readonly=True):
            by_state = await ops_reads.items_by_alert_state(pg)
            rate = await overview_reads.command_rate(pg)
    return overview(by_state, rate)
