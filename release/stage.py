"""What a stage receives and what it answers: typed, frozen, the same for one target and a fleet.

``Options`` holds every stage option the command line has (each stage reads its own);
``StageResult`` is a stage's answer: its data (the ``--json`` object), the text a person
reads, the exit code and, when it failed, one line naming what failed. ``cli`` renders it;
``fleet`` aggregates the per-host results into one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import argparse

    from .config import Config

SmokeMode = Literal["dryrun", "live"]


class Options(NamedTuple):
    """The stage options of the command line (``release <stage> --help``), typed and frozen
    (a NamedTuple, as ``Config`` is: no ``dataclasses`` import, and its ``inspect``, on the
    path of every command)."""

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
        return cls(**{name: given[name] for name in cls._fields if name in given})


class StageResult:
    """A stage's answer. ``data`` is what ``--json`` prints (with ``exit_code``); ``text`` is
    what a person reads (empty: the data as ``key: value`` lines); ``failed`` names what
    failed when ``exit_code`` is not 0. Frozen: ``replace`` and ``with_data`` make a new one."""

    __slots__ = ("data", "exit_code", "failed", "text")
    data: Mapping[str, Any]
    text: str
    exit_code: int
    failed: str

    def __init__(self, data: Mapping[str, Any] | None = None, text: str = "", exit_code: int = 0, failed: str = "") -> None:
        if exit_code and not failed:
            raise ValueError("a failed stage result names what failed")
        object.__setattr__(self, "data", {} if data is None else data)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "exit_code", exit_code)
        object.__setattr__(self, "failed", failed)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"StageResult is frozen: use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("StageResult is frozen")

    def _astuple(self) -> tuple[Mapping[str, Any], str, int, str]:
        return (self.data, self.text, self.exit_code, self.failed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StageResult) and self._astuple() == other._astuple()

    __hash__ = None  # type: ignore[assignment]  # its data is a mapping

    def __repr__(self) -> str:
        return f"StageResult(data={self.data!r}, text={self.text!r}, exit_code={self.exit_code!r}, failed={self.failed!r})"

    def replace(self, **changes: Any) -> StageResult:
        """A copy with ``changes`` (checked as a new result is)."""
        fields = {"data": self.data, "text": self.text, "exit_code": self.exit_code, "failed": self.failed}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"StageResult has no field {sorted(unknown)[0]!r}")
        return StageResult(**{**fields, **changes})

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "exit_code": self.exit_code}

    def with_data(self, **more: Any) -> StageResult:
        return self.replace(data={**self.data, **more})


Handler = Callable[["Config", Options], StageResult]
