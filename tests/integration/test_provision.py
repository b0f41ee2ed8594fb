"""Runtime skeleton (G4): exact creation and exact undo, never a secret."""

from __future__ import annotations

import json
from pathlib import Path

from ..support import Repo, run_release, tree_state, write_config


def _cfg(project: Repo, tmp_path: Path, transport: dict[str, object], **settings: object) -> tuple[Path, Path]:
    base = tmp_path / "var" / "lib" / "cutter"
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(tmp_path / "opt"), **transport},
        provision={"root": str(base), "dirs": ["runs", "batches", "locks"], "config_file": "cutter.toml"},
    )
    text = cfg.read_text() + "[provision.settings]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    cfg.write_text(text)
    return cfg, base


def test_provision_and_exact_undo(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    (tmp_path / "var" / "lib" / "cutter" / "runs").mkdir(parents=True)  # already there: never touched
    (tmp_path / "var" / "lib" / "cutter" / "runs" / "old-run.json").write_text("{}")
    cfg, base = _cfg(project, tmp_path, transport, batch_dir="/var/lib/cutter/batches", run_hard_cap_minutes=60)
    before = tree_state(tmp_path / "var")
    cp = run_release("--config", cfg, "--json", "provision")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert sorted(Path(e["path"]).name for e in res["created"]) == ["batches", "cutter.toml", "locks"]
    assert res["existed"] == [str(base / "runs")]
    assert 'batch_dir = "/var/lib/cutter/batches"' in (base / "cutter.toml").read_text().replace('"batch_dir"', "batch_dir")
    assert run_release("--config", cfg, "provision").returncode == 4, "a second provision is refused"
    cp = run_release("--config", cfg, "provision", "--undo")
    assert cp.returncode == 0, cp.stderr
    assert tree_state(tmp_path / "var") == before


def test_undo_refuses_when_a_created_folder_holds_other_data(project: Repo, tmp_path: Path) -> None:
    cfg, base = _cfg(project, tmp_path, {})
    assert run_release("--config", cfg, "provision").returncode == 0
    (base / "runs" / "run-1.json").write_text("{}")
    before = tree_state(tmp_path / "var")
    cp = run_release("--config", cfg, "provision", "--undo")
    assert cp.returncode == 4 and "runs" in cp.stderr
    assert tree_state(tmp_path / "var") == before, "a refused undo removes nothing"


def test_secret_looking_setting_is_refused_and_nothing_created(project: Repo, tmp_path: Path) -> None:
    cfg, base = _cfg(project, tmp_path, {}, db_password="hunter2hunter2")
    cp = run_release("--config", cfg, "provision")
    assert cp.returncode == 4 and "db_password" in cp.stderr
    assert "hunter2hunter2" not in cp.stderr + cp.stdout
    assert not (tmp_path / "var").exists()


def test_the_settings_file_is_toml_that_reads_back_as_the_settings(project: Repo, tmp_path: Path) -> None:
    """An emoji (outside the BMP: JSON escapes it as a surrogate pair, which TOML cannot
    read), quotes, backslashes, a key that needs quoting: the file is read back by tomllib
    as exactly the configured settings."""
    import tomllib

    settings = {"greeting": 'launch \U0001f680 "now" \\ ok', "dotted.key": ["a b", 3, True], "ratio": 0.5, "plain": "é"}
    cfg, base = _cfg(project, tmp_path, {})
    cfg.write_text(cfg.read_text() + "".join(f"{json.dumps(k)} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in settings.items()))
    cp = run_release("--config", cfg, "provision")
    assert cp.returncode == 0, cp.stderr
    assert tomllib.loads((base / "cutter.toml").read_text()) == settings
    assert run_release("--config", cfg, "provision", "--undo").returncode == 0
