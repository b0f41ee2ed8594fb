"""What ships of the commit's tree: ``bundle.include`` and ``bundle.exclude``.

A pattern ending in ``/`` is a folder and everything under it (``docs/``); any other is a
shell-style pattern (``*.md``, ``tests/fixtures/*.bin``) matched against a member's whole
path and against each folder above it, so ``node_modules`` leaves out that folder
wherever it is when written ``*/node_modules/`` or ``node_modules/`` at the top.
Patterns are relative to the project (``source.subdir``). With ``include``, only members
an include pattern selects ship (and the folders above them); ``exclude`` then removes.
What git's own ``export-ignore`` drops never reaches this step: ``git archive`` leaves it
out, and the bundle lists both in its manifest's ``left_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

MAX_LISTED = 200  # paths named in the manifest's left_out (the counts cover all)


def _matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/"):
        folder = pattern.rstrip("/")
        return (
            path == folder
            or path.startswith(folder + "/")
            or fnmatchcase(path, folder)
            or any(fnmatchcase(path[:i], folder) for i in range(len(path)) if path[i] == "/")
        )
    if fnmatchcase(path, pattern):
        return True
    return any(fnmatchcase(path[:i], pattern) for i in range(len(path)) if path[i] == "/")


def _above(path: str, pattern: str) -> bool:
    """``path`` is a folder above what ``pattern`` names (it must ship for them to)."""
    literal = pattern.rstrip("/")
    return literal.startswith(path + "/") or any(c in pattern for c in "*?[")


def why_left_out(path: str, is_dir: bool, include: tuple[str, ...], exclude: tuple[str, ...]) -> str:
    """Why ``path`` does not ship ("include" / "exclude"), or "" when it does."""
    if include and not any(_matches(path, p) for p in include) and not (is_dir and any(_above(path, p) for p in include)):
        return "include"
    if any(_matches(path, p) for p in exclude):
        return "exclude"
    return ""


@dataclass
class LeftOut:
    """What did not ship, by reason, for the manifest and ``plan``."""

    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str, why: str, size: int = 0) -> None:
        self.counts[why] = self.counts.get(why, 0) + 1
        self.bytes += size
        if len(self.paths) < MAX_LISTED:
            self.paths.append(path)

    def to_dict(self) -> dict[str, object]:
        return {"counts": dict(sorted(self.counts.items())), "bytes": self.bytes, "paths": self.paths, "listed_at_most": MAX_LISTED}

    def __bool__(self) -> bool:
        return bool(self.counts)
