"""Retention (#23 item 6): `release prune --keep N` (and `target.keep` after a promote)
removes only releases older than the N newest that passed smoke, by the host's journal:
never the current, never the previous, never the newest failed one, never one this tool
did not deploy; each removal exact and journalled; `--dry-run` changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..support import Repo, bundle, deploy, run_release, tree_state, write_config


def releases(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "releases").iterdir() if not p.name.startswith(".release-"))


def promoted(cfg: Path, count: int) -> list[str]:
    """``count`` releases deployed, smoked and promoted in turn: their deploy ids."""
    ids = []
    for _ in range(count):
        time.sleep(1.05)  # a release folder is named to the second: one deploy per second
        ids.append(json.loads(deploy(cfg).stdout)["deploy_id"])
        assert run_release("--config", cfg, "smoke").returncode == 0
        assert run_release("--config", cfg, "promote").returncode == 0
    return ids


def test_prune_keeps_every_good_release_it_must(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    good = [{"kind": "import", "modules": ["demo_app"]}]
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "strategy": "timestamped", **transport}, checks=good)
    bundle(cfg)
    ids = promoted(cfg, 5)  # five releases, each smoked and promoted
    bad_cfg = write_config(
        tmp_path / "bad.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["nope"]}],
    )
    time.sleep(1.05)
    failed = json.loads(deploy(bad_cfg).stdout)["deploy_id"]  # a sixth, whose smoke fails: kept for diagnosis
    assert run_release("--config", bad_cfg, "smoke").returncode == 1
    stranger = root / "releases" / "hand-made"
    stranger.mkdir()
    (stranger / "app.py").write_text("mine\n")
    all_before = releases(root)

    dry = run_release("--config", cfg, "--json", "prune", "--keep", "2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["would_remove"] == ids[:3] and releases(root) == all_before
    assert plan["kept"][ids[4]] == "current" and ids[3] in plan["kept"] and "failed" in plan["kept"][failed]

    done = run_release("--config", cfg, "--json", "prune", "--keep", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["removed"] == ids[:3]
    left = releases(root)
    assert len(left) == 4 and "hand-made" in left, "the current, the previous, the newest failed and what is not ours stay"
    assert (stranger / "app.py").read_text() == "mine\n"
    events = [json.loads(line)["event"] for line in (root / ".release-journal").read_text().splitlines()]
    assert events.count("pruned") == 3
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    assert st["current"].endswith(next(r["path"] for r in st["releases"] if r["deploy_id"] == ids[4]).rsplit("/", 1)[-1])


def test_keep_after_promote_and_bad_keeps(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", "keep": 1},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    bundle(cfg)
    for _ in range(3):
        time.sleep(1.05)
        assert deploy(cfg).returncode == 0
        assert run_release("--config", cfg, "smoke").returncode == 0
        p = run_release("--config", cfg, "--json", "promote")
        assert p.returncode == 0, p.stdout + p.stderr
    assert len(releases(root)) == 2, "target.keep = 1: the current (the newest good one) and the previous stay"
    before = tree_state(root)
    assert run_release("--config", cfg, "prune", "--keep", "0").returncode == 2
    bad = write_config(tmp_path / "bad.toml", project.path, target={"root": str(root), "keep": -1})
    assert run_release("--config", bad, "prune").returncode == 2
    assert tree_state(root) == before


def test_plan_shows_what_keep_would_prune_and_what_a_promote_runs(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", "keep": 1},
        service={"restart": ["systemctl", "reload", "demo"], "timeout": 20},
        health=[{"kind": "tcp", "name": "port", "address": "127.0.0.1:8000"}],
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    plain = write_config(
        tmp_path / "plain.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", "keep": 1},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    bundle(plain)
    ids = promoted(plain, 2)
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    p = run_release("--config", cfg, "plan")
    assert p.returncode == 0, p.stdout + p.stderr
    text = (tmp_path / ".release" / "DEPLOY-PLAN.md").read_text()
    assert "## After promote" in text and "restart:   systemctl reload demo (at most 20s)" in text and "health:    port (tcp: 127.0.0.1:8000)" in text
    oldest = next(r["path"] for r in st["releases"] if r["deploy_id"] == ids[0])
    assert f"prune:     target.keep = 1: {oldest} would be removed" in text, text
    assert len(releases(root)) == 2, "plan changed nothing"


def test_prune_never_removes_what_became_current_or_previous_since_it_looked(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    """Prune decides from a status read before it takes the lock: the agent checks again, as
    the host is now (a promote or a rollback --to-previous may run in between)."""
    from release import config, rollback
    from release.errors import InUseError
    from release.remote.transport import for_config
    from release.state import State

    root = tmp_path / "srv"
    root.mkdir()
    cfg_path = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    bundle(cfg_path)
    ids = promoted(cfg_path, 2)
    cfg = config.load(str(cfg_path))
    state = State(cfg.state)
    before = tree_state(root)
    for did, what in ((ids[1], "it is current now"), (ids[0], "it is the previous release now")):
        try:
            rollback.run(cfg, state.load(did), for_config(cfg), journal_event="pruned")
        except InUseError as exc:
            assert what in exc.message and exc.exit_code == 4
        else:
            raise AssertionError(f"prune removed {did}: {what}")
    assert tree_state(root) == before, "nothing was removed"
