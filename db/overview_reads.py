"""The overview strip's commands/s: finished commands per time bucket, read by `applied_at`.

processed_commands is partitioned by time with a BRIN index on applied_at, so a filter on
`applied_at >= now() - interval ...` touches only the newest partition's last blocks.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

WINDOW_S = 600
BUCKET_S = 10

# Only whole buckets: the current one is still filling and the first one starts before the window, so
# either would read as a dip. generate_series supplies the empty buckets.
_RATE = """
SELECT b.start, coalesce(c.n, 0) AS commands
FROM generate_series(
         date_bin(interval '10 seconds', now() - interval '10 minutes', timestamptz 'epoch')
             + interval '10 seconds',
         date_bin(interval '10 seconds', now(), timestamptz 'epoch') - interval '10 seconds',
         interval '10 seconds'
     ) AS b(start)
LEFT JOIN (
    SELECT date_bin(interval '10 seconds', applied_at, timestamptz 'epoch') AS start, count(*) AS n
    FROM processed_commands
    WHERE applied_at >= now() - interval '10 minutes'
      AND applied_at < date_bin(interval '10 seconds', now(), timestamptz 'epoch')
    GROUP BY 1
) AS c USING (start)
ORDER BY b.start
"""


class RateBucket(NamedTuple):
    start: datetime
    commands: int


async def command_rate(conn: asyncpg.Connection) -> list[RateBucket]:
    """Commands applied or rejected per BUCKET_S-second bucket over the last WINDOW_S seconds."""
    return [RateBucket(r["start"], r["commands"]) for r in await conn.fetch(_RATE)]
