"""Rollback removes what the deploy created, all of it (#22 item 7): the root that
``target.create_root`` made, and the folders above it that it made, go when the last
release in it is rolled back, and the printed pre-state claim is true."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..support import Repo, bundle, deploy, run_release, tree_state, write_config


def _version(project: Repo, version: str) -> None:
    text = (project.path / "pyproject.toml").read_text()
    project.write("pyproject.toml", text.replace('version = "0.6.0"', f'version = "{version}"'))
    project.commit(f"v{version}")


def test_the_root_create_root_made_goes_with_the_last_release(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    base = tmp_path / "srv"
    base.mkdir()
    (base / "other").mkdir()
    before = tree_state(base)
    root = base / "made" / "by" / "deploy"
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": True, **transport})
    bundle(cfg)
    first = deploy(cfg)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["target"].startswith(str(root))
    marker = json.loads((root / ".release-root").read_text())
    assert marker["created"] == [str(base / "made"), str(base / "made" / "by"), str(root)]
    _version(project, "0.7.0")
    bundle(cfg)
    second = deploy(cfg)
    assert second.returncode == 0, second.stderr
    assert json.loads((root / ".release-root").read_text()) == marker, "a later deploy into the made root claims nothing"

    rb = run_release("--config", cfg, "--json", "rollback")  # the newest: the root still holds the first release
    assert rb.returncode == 0, rb.stderr
    assert json.loads(rb.stdout)["removed_root"] == [] and root.is_dir()

    rb = run_release("--config", cfg, "rollback", "--deploy-id", json.loads(first.stdout)["deploy_id"])
    assert rb.returncode == 0, rb.stderr
    assert "removed the root target.create_root made" in rb.stdout and str(base / "made") in rb.stdout
    assert tree_state(base) == before, "the folders deploy made are gone; the rest is untouched"


def test_a_root_that_existed_or_holds_anything_else_stays(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "existing"
    root.mkdir()
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": True})
    bundle(cfg)
    assert deploy(cfg).returncode == 0
    assert not (root / ".release-root").exists(), "a root that existed is not the tool's"
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0 and json.loads(rb.stdout)["removed_root"] == [] and root.is_dir()

    made = tmp_path / "made"
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(made), "create_root": True})
    assert deploy(cfg).returncode == 0
    (made / "operator-notes.txt").write_text("mine\n")  # something of someone else's, beside the release
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 1 and "parent listing differs" in rb.stderr, "the pre-state claim is not made: the root is not as it was"
    assert json.loads(rb.stdout)["removed_root"] == []
    assert sorted(os.listdir(made)) == [".release-journal", ".release-root", "operator-notes.txt"], "the root stays while anything else is in it"


def test_a_planted_root_marker_removes_nothing_but_empty_folders_of_its_own_root(project: Repo, tmp_path: Path) -> None:
    """An attacker who can write in the root plants a marker naming folders elsewhere (``/etc``,
    a sibling), or one of another shape: it is no marker; one naming the root's own (empty)
    ancestors removes only those that are empty."""
    root = tmp_path / "app" / "root"
    root.mkdir(parents=True)
    (tmp_path / "sibling").mkdir()
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": False})
    bundle(cfg)
    for planted in (
        {"created": ["/etc", str(root)]},
        {"created": [str(tmp_path / "sibling"), str(root)]},
        {"created": str(root)},
        [str(root)],
        {"created": [str(tmp_path / "app")]},
    ):
        (root / ".release-root").write_text(json.dumps(planted))
        assert deploy(cfg).returncode == 0
        rb = run_release("--config", cfg, "--json", "rollback")
        assert rb.returncode == 0, rb.stderr
        assert json.loads(rb.stdout)["removed_root"] == [] and root.is_dir(), planted
    assert (tmp_path / "sibling").is_dir() and Path("/etc").is_dir()


def test_a_failed_deploy_takes_back_the_root_it_made(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    base = tmp_path / "srv"
    base.mkdir()
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(base / "a" / "root"), "create_root": True, **transport})
    path = bundle(cfg)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    cp = deploy(cfg)
    assert cp.returncode == 4 and "checksum mismatch" in cp.stderr
    assert os.listdir(base) == [], "nothing half-done: the folders the failed deploy made are gone"
