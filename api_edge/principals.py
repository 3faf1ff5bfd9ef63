"""Which principals may no longer use their tokens, known to every edge and relay process.

A token is checked without I/O (HMAC and claims), so on its own it would work until it expires after a
user was deactivated. Each process instead reloads the set of deactivated users from PostgreSQL every
`INVMON_PRINCIPAL_REFRESH_S` seconds (one small query per process, not one per request) and refuses their
tokens: the bound is that interval plus one query. API keys are looked up in PostgreSQL on every request,
so a revoked key stops at once.

When PostgreSQL cannot be reached the last known set stays in force (counted and logged): a deactivation
written before the outage still holds, and one cannot be written during it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from db import auth_repo

log = structlog.get_logger("invmon.principals")

RELOAD_ERRORS = Counter(
    "invmon_principal_reload_errors_total", "Reloads of the deactivated-principal set that failed."
)
INACTIVE = Gauge("invmon_principals_inactive", "Deactivated principals this process refuses.")


class PrincipalStatus:
    def __init__(self) -> None:
        self._inactive: dict[str, int] = {}  # subject -> when it was deactivated (epoch s)

    def active(self, subject: str, auth_time: int) -> bool:
        """False for a login from before the principal's deactivation. A login after it means the user was
        reactivated meanwhile (the login itself reads PostgreSQL), so the set may not know it yet: a
        reactivated user is not refused for up to one reload interval."""
        since = self._inactive.get(subject)
        return since is None or auth_time > since

    def replace(self, inactive: dict[str, int]) -> None:
        self._inactive = inactive
        INACTIVE.set(len(inactive))

    async def load(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            self.replace(await auth_repo.inactive_subjects(conn))

    async def run(
        self, engine: AsyncEngine, interval_s: float, on_change: Callable[[], None] | None = None
    ) -> None:
        """Reload every `interval_s` until cancelled; `on_change` runs after a load that changed the set
        (the relay closes the sockets of newly deactivated principals there)."""
        while True:
            before = self._inactive
            try:
                await self.load(engine)
            except Exception as error:  # PostgreSQL away: keep the last known set, try again next round
                RELOAD_ERRORS.inc()
                log.warning("principal_reload_failed", error=repr(error))
            if on_change is not None and self._inactive != before:
                on_change()
            await asyncio.sleep(interval_s)


# One per process: the token check (api_edge.auth.decode_access_token) is called from places that hold no
# application state (the command fast path, the relay's sessions).
status = PrincipalStatus()
