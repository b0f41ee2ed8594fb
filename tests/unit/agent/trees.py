"""Helpers for the agent's tree tests (Python 3.8, like the agent)."""

from __future__ import annotations

import os
from pathlib import Path

from release.agent.fsutil import list_tree, open_dir


def listed(tree: Path) -> dict[str, list[tuple[str, bool]]]:
    """``list_tree`` of ``tree`` by one process: what any other listing must equal."""
    listing: dict[str, list[tuple[str, bool]]] = {}
    fd = open_dir(str(tree))
    try:
        list_tree(fd, "", listing)
    finally:
        os.close(fd)
    return listing
