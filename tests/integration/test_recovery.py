"""Lost connections and killed runs (findings 4 and 11): an outcome the controller did not
see is reconciled with the target, and a kill at any named point of deploy, rollback and
promote is recovered by rerunning the same command (adding --break-lock when the refusal
says the lock is stale). The agent is stopped at exact points through its test hooks
(RELEASE_TEST_KILL_AT, RELEASE_TEST_PAUSE_AT), not by racing a busy-wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support import Repo, bundle, listing, popen_release, run_release, separate_python, tree_state, write_config


def _cfg(tmp_path: Path, project: Repo, transport: dict[str, object], strategy: str = "timestamped") -> tuple[Path, Path]:
    root = tmp_path / "opt" / "incomex" / "dot"
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("operator notes\n")
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "strategy": strategy, **transport})
    return cfg, root


def _releases(root: Path) -> list[str]:
    rel = root / "releases"
    return sorted(p.name for p in rel.iterdir() if not p.name.startswith(".release-")) if rel.is_dir() else []


def _rerun(cfg: Path, *stage: str) -> subprocess.CompletedProcess[str]:
    """Rerun a command the way its refusal says: the same command, plus --break-lock for a stale lock."""
    cp = run_release("--config", cfg, "--json", *stage)
    if cp.returncode == 4 and "stale lock" in cp.stderr and "--break-lock" in cp.stderr:
        cp = run_release("--config", cfg, "--json", *stage, "--break-lock")
    return cp


def test_lost_connection_during_unpack_then_rollback_removes_only_the_new_release(tmp_path: Path, project: Repo, sshd) -> None:  # type: ignore[no-untyped-def]
    """The agent finishes the rename after the controller lost the connection: the deploy is
    'unknown', never 'failed', and the next plain rollback removes that release, not the live one."""
    cfg, root = _cfg(tmp_path, project, {"host": sshd.host, "ssh_config": str(sshd.config)})
    bundle(cfg)
    first = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert first.returncode == 0, first.stderr
    live = json.loads(first.stdout)["target"]
    time.sleep(1.1)
    flag = tmp_path / "paused"
    pause = {"RELEASE_TEST_PAUSE_AT": f"deploy:before-rename@{flag}"}
    p = popen_release("--config", cfg, "--json", "deploy", "--no-plan", env=pause)
    end = time.time() + 60
    while not flag.exists() and time.time() < end and p.poll() is None:
        time.sleep(0.01)
    assert flag.exists(), f"the agent reached the rename: {p.poll()} {p.stderr.read() if p.poll() is not None else ''}"  # type: ignore[union-attr]
    ssh = subprocess.run(["pgrep", "-P", str(p.pid), "-x", "ssh"], capture_output=True, text=True).stdout.split()
    assert ssh, "the controller's ssh client is running"
    # the connection is lost: the client and the shared connection (its ControlMaster) die
    cmdline = Path(f"/proc/{ssh[0]}/cmdline").read_bytes().split(b"\0")
    folder = next(a.decode().split("=", 1)[1].rsplit("/", 1)[0] for a in cmdline if a.startswith(b"ControlPath="))
    # the master: "ssh: <socket> [mux]" once forked by a call, its own command line when opened ahead (-N)
    masters = [pid for pid in subprocess.run(["pgrep", "-f", f"{folder}/"], capture_output=True, text=True).stdout.split() if pid not in ssh]
    assert masters, "the shared connection's master is running"
    for pid in ssh + masters:
        os.kill(int(pid), signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "outcome unknown" in err, err
    flag.unlink()  # the agent goes on and renames the release into place
    end = time.time() + 60
    while (root / ".release-lock").exists() and time.time() < end:
        time.sleep(0.05)
    assert len(_releases(root)) == 2, "the second release landed although its answer was lost"
    records = [json.loads(r.read_text()) for r in (cfg.parent / ".release" / "deploys").glob("*.json")]
    assert sorted(r["status"] for r in records) == ["deployed", "unknown"]
    st = run_release("--config", cfg, "status")
    assert "outcome unknown" in st.stdout
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0, rb.stderr
    assert json.loads(rb.stdout)["removed"] != live
    assert _releases(root) == [Path(live).name], "the live release is untouched"
    # the reconciled record holds what a seen deploy's holds (one constructor): with its
    # names digest, rollback checked the release by its exact names, not the weaker fallback
    assert json.loads(rb.stdout)["added_check"] == "names", rb.stdout
    by_status = {r["status"]: r for r in (json.loads(p.read_text()) for p in (cfg.parent / ".release" / "deploys").glob("*.json"))}
    seen, reconciled = by_status["deployed"], by_status["rolled-back"]
    assert reconciled["reconciled"] and len(reconciled["names_sha256"]) == 64
    assert set(seen) - {"cleaned_leftovers", "finished"} <= set(reconciled), set(seen) - set(reconciled)


KILL_POINTS = {
    "deploy": ["deploy:staged", "deploy:unpacking", "deploy:extracted", "deploy:before-rename", "deploy:renamed"],
    "rollback": ["rollback:pointer", "rollback:trash", "rollback:renamed", "rollback:removed"],
    "promote": ["promote:link-made"],
}


# "forked": the target's interpreter is the controller's own, so deploy, rollback and
# promote run in a forked child of the CLI (release/remote/inprocess.py), not a second interpreter
RUNS = [(p, agent) for points in KILL_POINTS.values() for p in points for agent in ("process", "forked")]


@pytest.mark.parametrize(("point", "agent"), RUNS)
def test_a_kill_at_any_point_is_recovered_by_rerunning_the_command(tmp_path: Path, project: Repo, point: str, agent: str) -> None:
    python = os.path.realpath(sys.executable) if agent == "forked" else separate_python(tmp_path)
    cfg, root = _cfg(tmp_path, project, {"python": python})
    before = tree_state(root)
    bundle(cfg)
    stage = point.split(":")[0]
    kill_env = {"RELEASE_TEST_KILL_AT": point}
    if stage != "deploy":
        assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
        if stage == "rollback":  # (promoting the release current points at changes nothing: promote is killed on its first run)
            assert run_release("--config", cfg, "promote", "--force").returncode == 0
        deployed = _releases(root)
    killed = run_release(
        "--config", cfg, "--json", "-v", stage, *(["--no-plan"] if stage == "deploy" else ["--force"] if stage == "promote" else []), env=kill_env
    )
    assert killed.returncode == 1 and "outcome unknown" in killed.stderr, killed.stderr
    assert ("in a forked child" in killed.stderr) == (agent == "forked"), killed.stderr
    again = _rerun(cfg, stage, *(["--no-plan"] if stage == "deploy" else ["--force"] if stage == "promote" else []))
    if stage == "deploy":
        assert again.returncode == 0, again.stderr
        assert len(_releases(root)) == 1, "one release, whether the killed run had landed it or not"
        assert not [n for n in listing(root) + listing(root / "releases") if n.startswith(".release-") and n != ".release-parent"], "no leftovers"
        assert run_release("--config", cfg, "verify").returncode == 0
        assert run_release("--config", cfg, "rollback").returncode == 0
        assert tree_state(root) == before
    elif stage == "rollback":
        # killed after everything was removed, the rerun finds nothing left to remove (exit 3)
        assert again.returncode == 0 or (again.returncode == 3 and "does not exist" in again.stderr), again.stderr
        assert _releases(root) == [] and not (root / "current").exists()
        assert not [n for n in listing(root) if n.startswith(".release-")]
        assert run_release("--config", cfg, "rollback").returncode == 3, "the record is settled: nothing left to roll back"
    else:
        assert again.returncode == 0, again.stderr
        assert os.readlink(root / "current") == f"releases/{deployed[0]}"
        # no leftovers; the pointer the promotion replaced is the host's own record, kept until rollback
        (deploy_id,) = [json.loads(r.read_text())["deploy_id"] for r in (cfg.parent / ".release" / "deploys").glob("*.json")]
        assert [n for n in listing(root) if n.startswith(".release-")] == [f".release-promoted-{deploy_id}"]


def test_ops_in_a_forked_child_answer_as_the_agent_process_does(tmp_path: Path, project: Repo) -> None:
    """status, verify, rollback (its refusal of added files, then --discard-added) with the
    controller's own interpreter as the target's: each runs in a forked child, gives the
    same answers, and leaves the parent folder as it was."""
    cfg, root = _cfg(tmp_path, project, {"python": os.path.realpath(sys.executable)})
    before = tree_state(root)
    bundle(cfg)
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    for stage in ("status", "verify"):
        cp = run_release("--config", cfg, "-v", stage)
        assert cp.returncode == 0 and "in a forked child" in cp.stderr, cp.stderr
    (root / "releases" / _releases(root)[0] / "uploads.db").write_text("added after the deploy")
    drift = run_release("--config", cfg, "-v", "verify")
    assert drift.returncode == 1 and "uploads.db" in drift.stdout + drift.stderr
    refused = run_release("--config", cfg, "-v", "rollback")
    assert refused.returncode == 4 and "uploads.db" in refused.stderr and "in a forked child" in refused.stderr, refused.stderr
    assert len(_releases(root)) == 1, "nothing was removed"
    done = run_release("--config", cfg, "--json", "rollback", "--discard-added")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parent_restored"] is True
    assert tree_state(root) == before
