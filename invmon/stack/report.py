"""Step-by-step progress lines with timings; plain text when there is no terminal (CI)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


class Reporter:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)

    @contextmanager
    def step(self, service: str, what: str) -> Iterator[StepResult]:
        """Time one step and print a line when it ends; the body may set a short outcome text."""
        result = StepResult()
        start = time.monotonic()
        try:
            yield result
        except BaseException:
            self._line(service, what, "[red]failed[/red]", time.monotonic() - start)
            raise
        self._line(service, what, escape(result.outcome), time.monotonic() - start)

    def note(self, service: str, text: str) -> None:
        self.console.print(f"  {service:<16} {escape(text)}")

    def _line(self, service: str, what: str, outcome: str, seconds: float) -> None:
        self.console.print(f"  {service:<16} {escape(what):<28} {seconds:6.2f}s  {outcome}")


class StepResult:
    def __init__(self) -> None:
        self.outcome = "done"
