"""Shared paths (#23 item 1): `target.shared` folders and `target.shared_files` live under
`<root>/shared/`, are linked into each release while it is staged, survive deploy and
rollback, are never followed by verify, and every bad input is refused before anything is
written. Over both transports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..support import Repo, bundle, deploy, listing, run_release, tree_state, write_config

CHECKS = [{"kind": "command", "name": "env", "argv": ["{python}", "-c", "print(open('{target}/.env').read())"], "expect_output": "SECRET_FLAG=on"}]


def shared_cfg(project: Repo, tmp_path: Path, transport: dict[str, object], **target: object) -> tuple[Path, Path]:
    root = tmp_path / "srv"
    root.mkdir(exist_ok=True)
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "shared": ["var/uploads", "logs"], "shared_files": [".env"], **transport, **target},
        checks=CHECKS,
    )
    return cfg, root


def test_shared_paths_are_linked_into_each_release_and_survive_rollback(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, root = shared_cfg(project, tmp_path, transport)
    (root / "shared").mkdir()
    (root / "shared" / ".env").write_text("SECRET_FLAG=on\n")
    bundle(cfg)
    d = deploy(cfg)
    assert d.returncode == 0, d.stderr
    target = Path(json.loads(d.stdout)["target"])
    assert os.readlink(target / "var" / "uploads") == str(root / "shared" / "var" / "uploads")
    assert os.readlink(target / ".env") == str(root / "shared" / ".env") and os.readlink(target / "logs") == str(root / "shared" / "logs")
    assert (root / "shared" / "var" / "uploads").is_dir() and (root / "shared" / "logs").is_dir(), "shared folders are made empty"
    manifest = dict(line.split(": ", 1) for line in (target / "DEPLOY-MANIFEST.txt").read_text().splitlines())
    assert json.loads(manifest["shared_links"]) == {
        ".env": str(root / "shared" / ".env"),
        "logs": str(root / "shared" / "logs"),
        "var/uploads": str(root / "shared" / "var" / "uploads"),
    }
    (root / "shared" / "var" / "uploads" / "photo.jpg").write_bytes(b"\xff\xd8 user data")  # the app writes through the link
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 0 and json.loads(v.stdout)["clean"] is True, v.stdout
    s = run_release("--config", cfg, "--json", "smoke")
    assert s.returncode == 0, s.stdout + s.stderr
    shared_before = tree_state(root / "shared")
    r = run_release("--config", cfg, "--json", "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["parent_restored"] is True
    assert not target.exists() and tree_state(root / "shared") == shared_before, "rollback never touches what is shared"

    d = deploy(cfg)  # the next release links the same shared data
    assert d.returncode == 0, d.stderr
    assert (Path(json.loads(d.stdout)["target"]) / "var" / "uploads" / "photo.jpg").read_bytes() == b"\xff\xd8 user data"


def test_a_replaced_shared_link_is_drift(project: Repo, tmp_path: Path) -> None:
    cfg, root = shared_cfg(project, tmp_path, {})
    (root / "shared").mkdir()
    (root / "shared" / ".env").write_text("SECRET_FLAG=on\n")
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    (target / "logs").unlink()
    (target / "logs").mkdir()
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 1 and "logs" in json.loads(v.stdout)["removed"], v.stdout


def test_a_missing_shared_file_is_exit_3_and_nothing_is_written(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, root = shared_cfg(project, tmp_path, transport)
    bundle(cfg)
    before = listing(root)
    d = deploy(cfg)
    assert d.returncode == 3, d.stderr
    assert str(root / "shared" / ".env") in d.stderr and "never starts without it" in d.stderr
    assert listing(root) == before, "nothing is written, not even the shared folder, before every shared file is found"
    assert not any(n.startswith("demo-app") for n in listing(root))
    assert not (root / "shared" / "var").exists(), "no shared folder is made before the files are found"


def test_a_shared_path_the_release_ships_is_refused(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    project.write("logs/README", "the app ships a logs folder\n")
    project.commit("ships logs/")
    cfg, root = shared_cfg(project, tmp_path, transport)
    (root / "shared").mkdir()
    (root / "shared" / ".env").write_text("SECRET_FLAG=on\n")
    bundle(cfg)
    d = deploy(cfg)
    assert d.returncode == 4 and "logs" in d.stderr and "ships" in d.stderr, d.stderr
    assert not any(n.startswith(("demo-app", ".release-tmp")) for n in listing(root)), listing(root)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("shared", ["../escape"], "leaves the release"),
        ("shared", ["/var/www"], "leaves the release"),
        ("shared_files", ["DEPLOY-MANIFEST.txt"], "the deploy writes itself"),
        ("shared", ["var", "var/uploads"], "overlaps"),
    ],
)
def test_bad_shared_paths_are_exit_2_naming_them(project: Repo, tmp_path: Path, key: str, value: list[str], words: str) -> None:
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "srv"), key: value})
    cp = run_release("--config", cfg, "plan")
    assert cp.returncode == 2 and words in cp.stderr and value[-1] in cp.stderr, cp.stderr
    assert not (tmp_path / "srv").exists()
