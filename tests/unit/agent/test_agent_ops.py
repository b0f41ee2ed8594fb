"""The agent's op table is the only list of ops: what changes a target, what ignores a
hangup, what may run in a forked child and the controller's typed client all follow it."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from release.agent import ops
from release.remote import client, inprocess, payload, transport

pytestmark = pytest.mark.unit
RELEASE = Path(__file__).resolve().parents[3] / "release"


def test_every_list_of_ops_is_the_tables() -> None:
    assert transport.CHANGING_OPS == ops.CHANGING == {n for n, o in ops.OPS.items() if o.changes}
    assert inprocess.NEUTRAL_OPS == ops.FORKABLE
    assert "repoint" in ops.CHANGING, "a revert changes the target: its lost answer is an unknown outcome, and it ignores a hangup"
    for name, op in ops.OPS.items():
        assert callable(ops.handler(name)), f"{name}: {op.module}.{op.function} is missing"


def test_the_client_has_one_method_per_op_and_no_other() -> None:
    methods = {n for n in vars(client.Agent) if not n.startswith("_") and callable(getattr(client.Agent, n))}
    assert methods == set(ops.OPS)


def test_no_stage_names_an_op_by_a_string() -> None:
    """Only the client calls the generic ``agent(op, ...)``."""
    offenders = []
    for path in sorted(RELEASE.glob("*.py")):
        if path.name in ("client.py", "transport.py"):
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
        for call in calls:
            named = isinstance(call.func, ast.Attribute) and call.func.attr == "agent" and bool(call.args)
            if named and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
                offenders.append(f"{path.name}:{call.lineno}")
    assert not offenders


def test_a_revert_survives_a_hangup(tmp_path: Path) -> None:
    """The defect the four lists hid: the controller took `repoint` for a changing op, the
    agent did not ignore a hangup during it. A SIGHUP in the middle of a repoint no longer
    kills it: it finishes and answers."""
    root = tmp_path / "root"
    release = root / "releases" / "app-1"
    release.mkdir(parents=True)
    (release / "DEPLOY-MANIFEST.txt").write_text("deploy_id: d1\n")
    flag = tmp_path / "paused"
    local = transport.LocalTransport(sys.executable)
    req = {"root": str(root), "deploy_id": "d1", "to": "releases/app-1", "from_host": False}
    env = {**os.environ, "RELEASE_TEST_PAUSE_AT": f"repoint:switching@{flag}"}
    p = subprocess.Popen(local.argv("repoint", req), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdin is not None
    p.stdin.write(payload.agent_program()[1])
    p.stdin.close()
    p.stdin = None  # fed whole: communicate() has nothing left to send
    end = time.time() + 30
    while not flag.exists() and time.time() < end:
        time.sleep(0.02)
    assert flag.exists(), "the agent reached the switch"
    p.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    flag.unlink()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    answer = json.loads(out.decode().strip().splitlines()[-1])
    assert answer["ok"] and os.readlink(root / "current") == "releases/app-1"


@pytest.mark.parametrize("previous", ["../outside/app-0", "/abs/outside/app-0", "releases/../../outside/app-0", "releases/escape"])
def test_a_pointer_is_never_restored_outside_the_root(tmp_path: Path, previous: str) -> None:
    """The pointer a promotion replaced is read from the host's own record on rollback: a
    hostile record naming a release outside the root (by '..', an absolute path, or a link
    inside the root that leaves it) is never followed; `current` is removed and the
    rollback says the pointer could not be restored."""
    from release.agent import pointer_ops

    root = tmp_path / "root"
    outside = tmp_path / "outside" / "app-0"
    outside.mkdir(parents=True)
    (outside / "DEPLOY-MANIFEST.txt").write_text("deploy_id: old\n")
    release = root / "releases" / "app-1"
    release.mkdir(parents=True)
    (release / "DEPLOY-MANIFEST.txt").write_text("deploy_id: d1\n")
    (root / "releases" / "escape").symlink_to(outside)
    (root / "current").symlink_to("releases/app-1")
    said, back = pointer_ops.restore_pointer(str(root), str(release), previous.replace("/abs", str(tmp_path)))
    assert said.startswith("removed (the previous release") and back is None and not (root / "current").is_symlink(), said


@pytest.mark.parametrize(
    "record",
    [
        '{"previous": ["releases/app-0"], "release": "releases/app-1"}',
        '{"previous": 7}',
        "[1, 2]",
        '{"release": 3, "previous": null}',
        '{"release": "releases/app-1", "previous": null, "prior_previous": {"x": 1}}',
        "not json",
    ],
)
def test_a_promotion_record_that_is_not_the_tools_is_ignored_not_a_crash(tmp_path: Path, record: str) -> None:
    """A host's .release-promoted-<id> of the wrong shape is read as no record (the
    controller's own record then decides), never a traceback."""
    from release.agent import pointer_ops

    root = tmp_path / "root"
    root.mkdir()
    (root / ".release-promoted-d1").write_text(record)
    assert pointer_ops.read_promoted(str(root), "d1") is None


@pytest.mark.parametrize("to", ["../outside/app-0", "releases/escape", "releases/missing", None])
def test_a_step_back_to_anything_but_a_release_of_the_root_changes_nothing(tmp_path: Path, to: str | None) -> None:
    """`rollback --to-previous` names the release from the host's journal, which a hand may
    have written: a target outside the root, a link leaving it, a missing one or none is
    refused (exit 4) and `current` stays where it was."""
    from release.agent import pointer_ops
    from release.agent.protocol import AgentError

    root = tmp_path / "root"
    outside = tmp_path / "outside" / "app-0"
    outside.mkdir(parents=True)
    (outside / "DEPLOY-MANIFEST.txt").write_text("deploy_id: old\n")
    release = root / "releases" / "app-1"
    release.mkdir(parents=True)
    (release / "DEPLOY-MANIFEST.txt").write_text("deploy_id: d1\n")
    (root / "releases" / "escape").symlink_to(outside)
    (root / "current").symlink_to("releases/app-1")
    with pytest.raises(AgentError) as err:
        pointer_ops.op_repoint({"root": str(root), "deploy_id": "d1", "to": to, "from_host": False})
    assert err.value.code == 4 and "is not a release under" in err.value.message
    assert os.readlink(root / "current") == "releases/app-1"
