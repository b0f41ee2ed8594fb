"""Progress on long work, shown only on a terminal and never under ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

_enabled = True


def configure(*, enabled: bool) -> None:
    global _enabled
    _enabled = enabled


class Task(Protocol):
    def advance(self, amount: float = 1) -> None: ...


class _Quiet:
    def advance(self, amount: float = 1) -> None:
        return None


class _Rich:
    def __init__(self, progress: object, task_id: object) -> None:
        self._p = progress
        self._t = task_id

    def advance(self, amount: float = 1) -> None:
        self._p.advance(self._t, amount)  # type: ignore[attr-defined]


@contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A progress bar (or spinner when ``total`` is None) on stderr, if it is a terminal."""
    if not (_enabled and sys.stderr.isatty()):
        yield _Quiet()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}" if total else ""),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as p:
        yield _Rich(p, p.add_task(description, total=total))


_note_lock = None


def note(line: str) -> None:
    """One line of per-host progress on stderr (a fleet's hosts report as they finish)."""
    global _note_lock
    import threading

    from .redact import shown

    if _note_lock is None:
        _note_lock = threading.Lock()
    if not _enabled:
        return
    with _note_lock:
        sys.stderr.write(shown(line) + "\n")
        sys.stderr.flush()
