"""A tree deeper than Python's recursion limit (an app can make one inside its release:
3,000 one-letter folders are a 6,000-byte path, and descriptors know no PATH_MAX) is
listed, walked and removed like any other, with a bounded number of open descriptors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.agent.fsutil import DirFds, list_tree, open_dir, remove_tree_at, walk
from release.agent.parallel_tree import ParallelTree

DEPTH = 3000


@pytest.fixture(autouse=True)
def _gone_however_it_ends(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves is removed by GNU rm (pytest's own clean-up of old
    temporary folders recurses, and would fail on a deep tree in every later session)."""
    yield
    subprocess.run(["rm", "-rf", "--", str(tmp_path)], check=False)


def _chain(top: Path, depth: int = DEPTH) -> None:
    """``top/d/d/.../d`` ``depth`` deep, a file every 500 levels, made by descriptors."""
    top.mkdir()
    (top / "top.txt").write_text("top")
    fd = os.open(str(top), os.O_RDONLY)
    try:
        for level in range(1, depth + 1):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            if level % 500 == 0:
                os.close(os.open(f"f{level}", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_chain_deeper_than_the_recursion_limit_is_listed_walked_and_removed(tmp_path: Path) -> None:
    assert sys.getrecursionlimit() < DEPTH
    tree = tmp_path / "tree"
    _chain(tree)
    before = _open_fds()
    fd = open_dir(str(tree))
    try:
        listing: dict[str, list[tuple[str, bool]]] = {}
        list_tree(fd, "", listing)
        assert len(listing) == DEPTH + 1
        deepest = "d/" * DEPTH
        assert listing[deepest] == [("f3000", False)] and sorted(listing["d/" * 500]) == [("d", True), ("f500", False)]
        found: dict[str, str] = {}
        dirs: set[str] = set()
        walk(fd, "", found, dirs)
        assert len(dirs) == DEPTH and found[("d/" * 1500) + "f1500"] == "f" and found["top.txt"] == "f"
        split = ParallelTree(fd, 2)
        assert split.listing == listing
        split.close()
        assert (tree / "top.txt").exists(), "closed without go: nothing removed"
    finally:
        os.close(fd)
    assert _open_fds() == before, "every descriptor is closed"
    parent = open_dir(str(tmp_path))
    try:
        remove_tree_at(parent, "tree")  # no listing: it lists first
    finally:
        os.close(parent)
    assert os.listdir(tmp_path) == []


def test_removal_by_two_processes_of_a_deep_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in "abcdefghij":
        _chain(tree / name, 1200)
    (tmp_path / "outside.txt").write_text("keep")
    parent = open_dir(str(tmp_path))
    top = open_dir("tree", parent)
    try:
        split = ParallelTree(top, 2)
        assert len(split.workers) == 1
        split.remove()
    finally:
        os.close(top)
    try:
        remove_tree_at(parent, "tree", listing=split.top)
    finally:
        os.close(parent)
    assert os.listdir(tmp_path) == ["outside.txt"]


def test_the_descriptors_held_stay_bounded_at_any_depth(tmp_path: Path) -> None:
    """With the soft limit of open files at 400, a tree 3,000 deep is still listed and
    removed: never more than ``DirFds.LIMIT`` folders are held open."""
    _chain(tmp_path / "tree")
    program = (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (400, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from release.agent.fsutil import list_tree, open_dir, remove_tree_at\n"
        "parent = open_dir(sys.argv[1])\n"
        "top = open_dir('tree', parent)\n"
        "listing = {}\n"
        "list_tree(top, '', listing)\n"
        "os.close(top)\n"
        "remove_tree_at(parent, 'tree', listing=listing)\n"
        "print(len(listing))\n"
    )
    assert DirFds.LIMIT < 400 - 20
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == DEPTH + 1
    assert os.listdir(tmp_path) == []
