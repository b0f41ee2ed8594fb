"""The lock and rename_noreplace in-process: the primitives the safety promises stand on."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from release import agent

from .trees import listed


def test_lock_is_exclusive_complete_and_released(tmp_path: Path) -> None:
    with agent.Lock(str(tmp_path), "d1", "deploy", False):
        data = json.loads((tmp_path / ".release-lock").read_text())
        assert data["deploy_id"] == "d1" and data["pid"] == os.getpid() and data["started"]
        with pytest.raises(agent.AgentError) as e, agent.Lock(str(tmp_path), "d2", "deploy", True):
            pass
        assert e.value.code == 4 and "held by deploy d1" in e.value.message
    assert os.listdir(tmp_path) == []


def test_stale_lock_needs_the_flag_and_a_reused_pid_is_not_the_holder(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".release-lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "deploy_id": "old", "op": "deploy", "time": 0}))
    with pytest.raises(agent.AgentError) as e, agent.Lock(str(tmp_path), "d", "deploy", False):
        pass
    assert "stale lock" in e.value.message
    # our own pid, but recorded with another start time: a reused pid, so the holder is gone
    (tmp_path / ".release-lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "1", "deploy_id": "old", "op": "deploy"}))
    with agent.Lock(str(tmp_path), "d", "deploy", True):
        assert json.loads((tmp_path / ".release-lock").read_text())["deploy_id"] == "d"


def test_unreadable_lock_is_stale_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / ".release-lock").write_text("")
    with pytest.raises(agent.AgentError) as e, agent.Lock(str(tmp_path), "d", "deploy", False):
        pass
    assert e.value.code == 4 and "stale" in e.value.message
    with agent.Lock(str(tmp_path), "d", "deploy", True):
        pass


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("keep")
    with pytest.raises(agent.AgentError) as e:
        agent.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert e.value.code == 4 and (tmp_path / "b" / "keep").exists() and (tmp_path / "a").exists()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(agent.AgentError):
        agent.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "link"))
    agent.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "c"))
    assert (tmp_path / "c").is_dir() and not (tmp_path / "a").exists()


def test_sync_filesystem_flushes_one_filesystem_and_reports_errors(tmp_path: Path) -> None:
    from release.agent.fsutil import sync_filesystem

    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        sync_filesystem(fd)  # syncfs(2) of the folder's filesystem: no error
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:  # an error is raised, not dropped as sync(2) drops it
        sync_filesystem(fd)
    assert e.value.errno == errno.EBADF
    from release.agent.protocol import _io_error

    err = _io_error(OSError(errno.EIO, os.strerror(errno.EIO)), "deploy to /srv/x failed")
    assert err.code == 3 and "I/O error" in err.hint  # the disk's fault: blocked, not a refusal


def test_a_breakers_lock_left_by_a_dead_run_does_not_block_breaking(tmp_path: Path) -> None:
    """A `.release-lock-breaking` left (or planted) by a process that is gone is not a live breaker."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"host": socket.gethostname(), "pid": dead.pid, "deploy_id": "old", "op": "deploy", "time": 0}
    (tmp_path / ".release-lock").write_text(json.dumps(stale))
    (tmp_path / ".release-lock-breaking").write_text(json.dumps(stale))
    with agent.Lock(str(tmp_path), "d", "deploy", True):
        assert json.loads((tmp_path / ".release-lock").read_text())["deploy_id"] == "d"
    assert os.listdir(tmp_path) == []
    # a live breaker is respected
    (tmp_path / ".release-lock").write_text(json.dumps(stale))
    live = {"host": socket.gethostname(), "pid": os.getpid(), "deploy_id": "x", "op": "deploy"}
    (tmp_path / ".release-lock-breaking").write_text(json.dumps(live))
    with pytest.raises(agent.AgentError) as e, agent.Lock(str(tmp_path), "d", "deploy", True):
        pass
    assert "another run is breaking" in e.value.message


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_removal_from_a_walks_listing_removes_whatever_changed_since(tmp_path: Path, workers: int) -> None:
    """Rollback deletes with the folders as its check listed them (the subtrees by the
    processes that listed them, then the rest); a file added, removed, turned into a folder
    (or a folder into a file or a link) since is still handled, and nothing outside the
    tree is touched."""
    from release.agent.fsutil import open_dir, remove_tree_at
    from release.agent.parallel_tree import ParallelTree

    tree = tmp_path / "tree"
    for rel in ("a/x.py", "a/b/y.py", "a/b/z.py", "c/w.txt", "top.txt", "gone.txt", "becomes_dir.txt", *(f"many/m{i}/f.txt" for i in range(12))):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    (tree / "d").mkdir()
    (tree / "e").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    parent = open_dir(str(tmp_path))
    top = open_dir("tree", parent)
    try:
        split = ParallelTree(top, workers)
        listing = split.listing
        assert listing == listed(tree), "the shared-out listing is the one-process walk's"
        assert {n for n, _ in listing[""]} == {"a", "c", "d", "e", "many", "top.txt", "gone.txt", "becomes_dir.txt"}
        (tree / "a" / "b" / "added.py").write_text("new")  # added since the walk
        (tree / "many" / "m3" / "added.txt").write_text("new")
        (tree / "gone.txt").unlink()  # removed since
        (tree / "becomes_dir.txt").unlink()
        (tree / "becomes_dir.txt").mkdir()  # a file then, a folder now
        (tree / "becomes_dir.txt" / "inner").write_text("x")
        (tree / "d").rmdir()
        (tree / "d").write_text("a folder then, a file now")
        (tree / "e").rmdir()
        (tree / "e").symlink_to(tmp_path)  # a folder then, a link out of the tree now: never followed
        split.remove()
        assert not (tree / "many" / "m5").exists(), "the shared-out subtrees are gone"
        remove_tree_at(parent, "tree", listing=listing)
    finally:
        os.close(top)
        os.close(parent)
    assert not tree.exists()
    assert outside.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["outside.txt"]


def test_the_names_a_deploy_records_are_the_names_a_walk_finds(tmp_path: Path) -> None:
    """names_sha256 from the deploy's own list of what it wrote equals names_sha256 of a
    list_tree of that tree (files, links, empty folders), bytecode caches aside; any other
    entry added changes it."""
    from release.agent.release_tree import _wanted_dirs, listing_of, names_sha256

    tree = tmp_path / "tree"
    files = {"a/x.py", "a/b/y.py", "top.txt", "DEPLOY-MANIFEST.txt", "link"}
    explicit_dirs = {"empty", "a/b/deeper"}
    for rel in files - {"link"}:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    for rel in explicit_dirs:
        (tree / rel).mkdir(parents=True)
    (tree / "link").symlink_to("top.txt")

    def walked() -> str:
        return names_sha256(listed(tree))

    recorded = names_sha256(listing_of(files, explicit_dirs | _wanted_dirs(files)))
    assert walked() == recorded
    (tree / "a" / "__pycache__").mkdir()
    (tree / "a" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    assert walked() == recorded, "bytecode caches do not count"
    (tree / "a" / "b" / "deeper" / "new.txt").write_text("added")
    assert walked() != recorded


def test_mount_points_inside_a_folder_are_found_by_their_real_path(tmp_path: Path) -> None:
    """``mounts_inside`` reads the mount table as the kernel writes it (a space in a mount
    point is an octal escape there), strictly inside the folder's real path (a link to it
    names the same mounts; the folder itself is not inside itself)."""
    from release.agent.fsutil import mounts_inside

    folder = tmp_path / "rel ease"
    (folder / "data dir").mkdir(parents=True)
    (tmp_path / "link").symlink_to(folder)
    assert mounts_inside(str(folder)) == []
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder / "data dir")], capture_output=True, text=True)
    if cp.returncode != 0:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"cannot mount a tmpfs (needs root): {cp.stderr.strip()}")
    try:
        assert mounts_inside(str(folder)) == [str(folder / "data dir")]
        assert mounts_inside(str(tmp_path / "link")) == [str(folder / "data dir")]
        assert mounts_inside(str(folder / "data dir")) == []
    finally:
        subprocess.run(["umount", str(folder / "data dir")], check=False)
    assert mounts_inside(str(folder)) == []
