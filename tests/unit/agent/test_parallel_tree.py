"""The tree rollback lists with two processes and removes only after its check: the listing
is always the whole tree's, and nothing is removed unless the caller says go."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from release.agent import parallel_tree
from release.agent.fsutil import open_dir, remove_tree_at
from release.agent.parallel_tree import ParallelTree

from .trees import listed


def _tree(root: Path, folders: int = 20, files: int = 5) -> None:
    for i in range(folders):
        for j in range(files):
            path = root / "pkg" / f"m{i}" / ("sub" if j % 2 else "") / f"f{j}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{i} {j}")
    (root / "top.txt").write_text("top")
    (root / "empty").mkdir()
    (root / "link").symlink_to("top.txt")
    (root / "pkg" / "m0" / "out").symlink_to(root.parent)  # a link out: listed, never followed


def _state(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and content (links by their target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = f"l:{os.readlink(p)}" if p.is_symlink() else ("d" if p.is_dir() else f"f:{p.read_text()}")
    return out


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_closed_without_go_lists_the_whole_tree_and_removes_nothing(tmp_path: Path, workers: int) -> None:
    """A check that refuses (``close`` without ``remove``) leaves the tree byte for byte, and
    every worker has ended."""
    root = tmp_path / "r"
    _tree(root)
    before = _state(root)
    fd = open_dir(str(root))
    try:
        split = ParallelTree(fd, workers)
        assert split.listing == listed(root)
        assert len(split.workers) == workers - 1, "the folders were shared out"
        pids = [w.pid for w in split.workers]
        split.close()
    finally:
        os.close(fd)
    assert _state(root) == before
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_worker_that_dies_before_answering_has_its_share_listed_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing the check sees never lacks a worker's share: a worker that ends without
    a whole answer is replaced by this process's own walk of its folders."""
    root = tmp_path / "r"
    _tree(root)
    monkeypatch.setattr(parallel_tree, "_work", lambda *args: 1)  # the forked worker answers nothing
    parent = open_dir(str(tmp_path))
    fd = open_dir("r", parent)
    try:
        split = ParallelTree(fd, 2)
        assert split.listing == listed(root)
        assert not split.workers[0].part or split.workers[0].go_w == -1, "the silent worker was told to stop"
        split.remove()
        remove_tree_at(parent, "r", listing=split.listing)
    finally:
        os.close(fd)
        os.close(parent)
    assert not root.exists()


def test_a_worker_that_removes_nothing_leaves_the_rest_to_the_final_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that answered, then failed to remove its share: the final ``remove_tree_at``
    with the listing removes what it left, and nothing outside."""
    root = tmp_path / "r"
    _tree(root)
    (tmp_path / "outside.txt").write_text("keep")

    def answer_then_fail(top_fd: int, part: list[str], out_w: int, go_r: int) -> int:
        data = marshal.dumps(parallel_tree._list_parts(top_fd, part))
        os.write(out_w, len(data).to_bytes(parallel_tree._HEADER, "little") + data)
        os.close(out_w)
        os.read(go_r, 1)
        return 1

    monkeypatch.setattr(parallel_tree, "_work", answer_then_fail)
    parent = open_dir(str(tmp_path))
    fd = open_dir("r", parent)
    try:
        split = ParallelTree(fd, 2)
        split.remove()
        assert (root / "pkg").exists() and any((root / "pkg").iterdir()), "the failed worker's share is still there"
        remove_tree_at(parent, "r", listing=split.listing)
    finally:
        os.close(fd)
        os.close(parent)
    assert sorted(os.listdir(tmp_path)) == ["outside.txt"]


def test_a_truncated_answer_is_no_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed halfway through its answer: the length ahead of it does not match, so
    its share is listed here (never a partial listing taken for the whole)."""
    root = tmp_path / "r"
    _tree(root)

    def half(top_fd: int, part: list[str], out_w: int, go_r: int) -> int:
        data = marshal.dumps(parallel_tree._list_parts(top_fd, part))
        os.write(out_w, (len(data).to_bytes(parallel_tree._HEADER, "little") + data)[: len(data) // 2])
        return 1

    monkeypatch.setattr(parallel_tree, "_work", half)
    fd = open_dir(str(root))
    try:
        split = ParallelTree(fd, 2)
        assert split.listing == listed(root)
        split.close()
    finally:
        os.close(fd)
    assert (root / "pkg" / "m7" / "f0.py").read_text() == "7 0"


def test_a_failure_while_starting_workers_leaves_no_worker_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second worker cannot be started (its pipe fails after the first worker runs):
    the error reaches the caller, the first worker is stopped and reaped, nothing removed."""
    root = tmp_path / "r"
    _tree(root)
    before = _state(root)
    started: list[int] = []
    real_start = parallel_tree._Worker.start.__func__  # type: ignore[attr-defined]

    def start(cls: type, top_fd: int, part: list[str], others: list[parallel_tree._Worker]) -> parallel_tree._Worker | None:
        if started:
            raise OSError(24, "Too many open files")
        worker: parallel_tree._Worker = real_start(cls, top_fd, part, others)
        started.append(worker.pid)
        return worker

    monkeypatch.setattr(parallel_tree._Worker, "start", classmethod(start))
    fd = open_dir(str(root))
    try:
        with pytest.raises(OSError, match="Too many open files"):
            ParallelTree(fd, 3)
    finally:
        os.close(fd)
    assert len(started) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)
    assert _state(root) == before
