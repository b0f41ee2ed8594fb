"""What a stage receives and what it answers: typed, frozen, the same for one target and a fleet.

``Options`` holds every stage option the command line has (each stage reads its own);
``StageResult`` is a stage's answer: its data (the ``--json`` object), the text a person
reads, the exit code and, when it failed, one line naming what failed. ``cli`` renders it;
``fleet`` aggregates the per-host results into one.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .config import Config

SmokeMode = Literal["dryrun", "live"]


@dataclass(frozen=True)
class Options:
    """The stage options of the command line (``release <stage> --help``), typed."""

    deploy_id: str | None = None  # rollback, smoke, verify, promote
    bundle: str | None = None  # deploy
    no_plan: bool = False  # deploy
    break_lock: bool = False  # deploy, rollback, promote
    ship_only: bool = False  # deploy (benchmark)
    discard_added: bool = False  # rollback
    to_previous: bool = False  # rollback: `current` back to the previous release, as the host's journal says
    mode: SmokeMode = "dryrun"  # smoke
    reproducible_check: bool = False  # bundle
    sign: str | None = None  # bundle
    undo: bool = False  # provision
    keep: int | None = None  # prune: the newest releases that passed smoke to keep (None: target.keep)
    dry_run: bool = False  # prune: say what would go, change nothing
    force: bool = False  # promote: without a passing smoke on the host (journalled)
    lock_wait: float = 0.0  # deploy, rollback, promote, provision: wait for a live lock holder
    allowed_signers: str | None = None  # verify --bundle: the keys the checksum file must be signed by

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options argparse parsed (a stage's parser sets only its own)."""
        given = vars(args)
        return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


@dataclass(frozen=True)
class StageResult:
    """A stage's answer. ``data`` is what ``--json`` prints (with ``exit_code``); ``text`` is
    what a person reads (empty: the data as ``key: value`` lines); ``failed`` names what
    failed when ``exit_code`` is not 0."""

    data: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    exit_code: int = 0
    failed: str = ""

    def __post_init__(self) -> None:
        if self.exit_code and not self.failed:
            raise ValueError("a failed stage result names what failed")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "exit_code": self.exit_code}

    def with_data(self, **more: Any) -> StageResult:
        return dataclasses.replace(self, data={**self.data, **more})


Handler = Callable[["Config", Options], StageResult]
