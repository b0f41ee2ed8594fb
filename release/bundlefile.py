"""A bundle on disk, as the deploying side finds it: the newest one of a commit, and its
``.sha256`` (written and read here, one format). Kept apart from ``bundle`` (the build)
so that deploy and plan start without importing the builder.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from . import names
from .errors import BlockedError, RefusedError


def checksum_line(sha: str, name: str) -> str:
    """One line in ``sha256sum -c`` format."""
    return f"{sha}  {name}\n"


def find_newest(out: Path, name: str, sha: str) -> Path:
    """The newest bundle of commit ``sha`` in ``out`` (exit 3 if there is none)."""
    best: tuple[str, Path] | None = None
    if out.is_dir():
        for p in out.iterdir():
            m = names.parse_bundle_name(name, p.name)
            if m and m.sha7 == sha[:7] and (best is None or m.stamp > best[0]):
                best = (m.stamp, p)
    if best is None:
        raise BlockedError(f"no bundle of {name} at {sha[:12]} in {out}", hint="run `release bundle` (nox -s bundle) first, or pass --bundle PATH")
    return best[1]


def read_checksum_bytes(bundle: Path) -> bytes:
    """The bytes of ``<bundle>.sha256``, read once (a regular file of at most 64 KiB)."""
    sums = bundle.with_name(bundle.name + ".sha256")
    try:
        fd = os.open(sums, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BlockedError(f"checksum file missing: {sums}", hint="rebuild the bundle; never deploy a bundle without its .sha256") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedError(f"checksum file {sums} is not a regular file", hint="rebuild the bundle")
        data = f.read(1 << 16)
    return data


def parse_checksum(bundle: Path, data: bytes) -> str:
    """The sha256 that ``data`` (a .sha256 file's bytes) gives for ``bundle``."""
    line = data.decode("utf-8", "replace").strip().split("\n")[0]
    m = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
    if not m or m.group(2) != bundle.name:
        raise RefusedError(f"checksum file {bundle.name}.sha256 is malformed or names another file", hint="rebuild the bundle")
    return m.group(1)


def read_checksum(bundle: Path) -> str:
    return parse_checksum(bundle, read_checksum_bytes(bundle))
