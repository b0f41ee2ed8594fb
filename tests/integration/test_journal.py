"""The journal on each target (#23 item 4): deploy, smoke, promote and rollback append one
fsync'd line each to `<root>/.release-journal`, naming the operator and the controller;
`status` shows each release's journal state and the previous release as the journal says;
a torn or corrupt line is skipped, never fatal; a journal replaced by a link is refused."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from pathlib import Path

from ..support import Repo, bundle, deploy, run_release, write_config


def journal(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / ".release-journal").read_text().splitlines() if line.strip()]


def timestamped(project: Repo, tmp_path: Path, transport: dict[str, object]) -> tuple[Path, Path]:
    """A timestamped target with an import check, its bundle built."""
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped", **transport},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    bundle(cfg)
    return cfg, root


def test_every_change_is_journalled_on_the_host(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, root = timestamped(project, tmp_path, transport)
    first = json.loads(deploy(cfg).stdout)["deploy_id"]
    refused = run_release("--config", cfg, "promote")
    assert refused.returncode == 4 and "never smoked on this host" in refused.stderr and "--force" in refused.stderr
    assert run_release("--config", cfg, "smoke").returncode == 0
    assert run_release("--config", cfg, "promote").returncode == 0  # by evidence: its smoke passed here
    time.sleep(1.05)  # a release folder is named to the second
    second = json.loads(deploy(cfg).stdout)["deploy_id"]
    assert run_release("--config", cfg, "promote", "--force").returncode == 0  # journalled as forced
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert {r["deploy_id"]: r["journal"] for r in status["releases"]} == {first: "promoted", second: "promoted"}
    first_path = next(r["path"] for r in status["releases"] if r["deploy_id"] == first)
    assert status["previous"] == os.path.relpath(first_path, root), "the release current before, as the journal says"
    assert run_release("--config", cfg, "rollback").returncode == 0  # the newest
    events = [(e["event"], e["deploy_id"]) for e in journal(root)]
    assert events == [
        ("deployed", first),
        ("smoke passed", first),
        ("promoted", first),
        ("deployed", second),
        ("promoted", second),
        ("reverted", second),  # `current` went back to the first release with it: the journal follows the pointer
        ("rolled back", second),
    ]
    back = [e for e in journal(root) if e["event"] == "reverted"][-1]
    assert back["reason"] == "rollback" and back["current"] == os.path.relpath(first_path, root) and back["previous"] is None
    for e in journal(root):
        assert e["operator"] == getpass.getuser() and e["controller"] == socket.gethostname() and str(e["time"]).endswith("Z")
    assert next(e for e in journal(root) if e["event"] == "smoke passed")["results_sha256"]
    promoted = [e for e in journal(root) if e["event"] == "promoted"]
    assert "forced" not in promoted[0] and promoted[1]["forced"] is True and promoted[1]["smoke"] == "none"


def test_a_torn_line_is_skipped_and_a_linked_journal_is_refused(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root)})
    bundle(cfg)
    deployed = json.loads(deploy(cfg).stdout)["deploy_id"]
    with (root / ".release-journal").open("a") as f:
        f.write('{"event": "deployed", "deploy_id": "x", "ti')  # a write cut short by a crash
    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["journal_skipped_lines"] == 1 and status["releases"][0]["journal"] == "deployed"
    rb = run_release("--config", cfg, "rollback")
    assert rb.returncode == 0, rb.stderr
    assert journal_events(root)[-1] == ("rolled back", deployed), "the next append starts on a line of its own"

    elsewhere = tmp_path / "elsewhere.log"
    elsewhere.write_text("")
    (root / ".release-journal").unlink()
    os.symlink(elsewhere, root / ".release-journal")
    d = deploy(cfg)
    assert d.returncode == 4 and "is a link" in d.stderr, d.stderr
    assert elsewhere.read_text() == "", "nothing is written through the link"


def journal_events(root: Path) -> list[tuple[str, str]]:
    out = []
    for line in (root / ".release-journal").read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        out.append((e["event"], e["deploy_id"]))
    return out


def test_a_release_whose_last_smoke_failed_is_not_promoted(project: Repo, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    cfg = write_config(
        tmp_path / "release.toml",
        project.path,
        target={"root": str(root), "strategy": "timestamped"},
        checks=[{"kind": "import", "modules": ["no_such_module"]}],
    )
    bundle(cfg)
    assert deploy(cfg).returncode == 0
    assert run_release("--config", cfg, "smoke").returncode == 1
    cp = run_release("--config", cfg, "promote")
    assert cp.returncode == 4 and "last smoke on this host failed" in cp.stderr
    assert not (root / "current").exists()


def test_rollback_to_previous_follows_the_journal_not_folder_names(project: Repo, tmp_path: Path, transport: dict[str, object]) -> None:
    """`rollback --to-previous`: `current` goes back to the release that was current before, as
    the host's journal says; a release whose folder sorts or was made later is not chosen
    by that; nothing is removed."""
    cfg, root = timestamped(project, tmp_path, transport)
    ids = []
    for _ in range(3):
        time.sleep(1.05)  # a release folder is named to the second: one deploy per second
        d = deploy(cfg)
        assert d.returncode == 0, d.stderr
        ids.append(json.loads(d.stdout)["deploy_id"])
        assert run_release("--config", cfg, "smoke").returncode == 0
    # promote the third, then the first: the previous (by the journal) is the third, though
    # the second sorts between them and the first is older by folder name
    assert run_release("--config", cfg, "promote", "--deploy-id", ids[2]).returncode == 0
    assert run_release("--config", cfg, "promote", "--deploy-id", ids[0]).returncode == 0
    paths = {r["deploy_id"]: r["path"] for r in json.loads(run_release("--config", cfg, "--json", "status").stdout)["releases"]}
    back = run_release("--config", cfg, "--json", "rollback", "--to-previous")
    assert back.returncode == 0, back.stdout + back.stderr
    assert os.path.realpath(root / "current") == os.path.realpath(paths[ids[2]])
    assert sorted(paths.values()) == sorted(str(p) for p in (root / "releases").iterdir() if not p.name.startswith(".release-")), "nothing removed"
    assert json_events_tail(root) == ("reverted", ids[0])


def json_events_tail(root: Path) -> tuple[str, str]:
    last = json.loads((root / ".release-journal").read_text().splitlines()[-1])
    return last["event"], last["deploy_id"]
