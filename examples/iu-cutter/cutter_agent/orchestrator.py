"""Orchestrator: plans IU batches. Execution stays off until a reviewed promotion."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from packaging.version import Version

from . import __version__
from .cutter import IU, cut

__execution_enabled__ = False
MILESTONE = "O4/O6-ready"


class Mode(enum.Enum):
    DRYRUN = "dryrun"
    LIVE = "live"


class ExecutionDisabled(RuntimeError):
    """LIVE mode was asked for while the kill switch is off."""


@dataclass
class Batch:
    mode: Mode
    units: list[IU] = field(default_factory=list)
    written: int = 0

    @property
    def planned(self) -> int:
        return len(self.units)


def check_mode(mode: Mode) -> Mode:
    if mode is Mode.LIVE and not __execution_enabled__:
        raise ExecutionDisabled("LIVE mode refused: execution_enabled=False")
    return mode


def plan_batch(docs: dict[str, str], mode: Mode = Mode.DRYRUN, cap: int = 400) -> Batch:
    """Cut every document; in DRYRUN nothing is written, only counted."""
    check_mode(mode)
    batch = Batch(mode)
    for doc in sorted(docs):
        batch.units.extend(cut(doc, docs[doc], cap))
    return batch


def status() -> dict[str, object]:
    return {
        "version": __version__,
        "release": Version(__version__).release,  # a runtime dependency: the release carries it
        "milestone": MILESTONE,
        "execution_enabled": __execution_enabled__,
        "modes": [m.name for m in Mode],
    }
