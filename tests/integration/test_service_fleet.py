"""Restart and health checks on a fleet (#23 item 3), on namespace hosts: the demo app served
by gunicorn carried in the release's own environment, started and restarted on each host by
the app's restart script (a signal to the master through its pidfile in the shared run/
folder), probed over HTTP from each host itself. A release that answers 500 on one host of
a wave is reverted on every host switched so far, each restarted on its old release and
serving it again; no later wave is touched."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..netns import NsFleet, available
from ..support import Repo, make_project, need, run_release, write_config
from ..webserve import add_web

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

HOSTS = ["h0", "h1", "h2", "h3"]
PROBE = "import urllib.request as u; print(u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/version', timeout=5).read().decode())"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsFleet]:
    why = available()
    need(not why, why)
    base = tmp_path_factory.mktemp("svcfleet")
    f = NsFleet(base, base / "srv")
    try:
        f.start(len(HOSTS))
        yield f
    finally:
        f.close()  # every process of every host goes with it: the servers the restarts started too


def served(fleet: NsFleet, name: str) -> str:
    """What the host's own application answers, asked from inside that host."""
    ns = fleet.hosts[int(name[1:])].ns
    cp = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", PROBE], capture_output=True, text=True, timeout=30)
    return cp.stdout.strip() if cp.returncode == 0 else f"no answer: {cp.stderr.strip()[-200:]}"


def gunicorn_app(path: Path) -> Repo:
    repo = make_project(path)
    text = (repo.path / "pyproject.toml").read_text().replace('requires-python = ">=3.9"\n', 'requires-python = ">=3.9"\ndependencies = ["gunicorn>=22"]\n')
    repo.write("pyproject.toml", text)
    add_web(repo, version="0.6.0")
    return repo


def ship_and_promote(cfg: Path, fleet: NsFleet, version: str) -> None:
    """bundle, deploy and promote the commit on every host; each then serves ``version``."""
    assert run_release("--config", cfg, "bundle").returncode == 0
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    cp = run_release("--config", cfg, "promote")
    assert cp.returncode == 0, cp.stdout + cp.stderr[-3000:]
    assert all(served(fleet, h).startswith(f"demo-app {version} ") for h in HOSTS)


def test_a_wave_whose_release_is_unhealthy_on_one_host_is_reverted_on_every_switched_host(tmp_path: Path, fleet: NsFleet) -> None:
    repo = gunicorn_app(tmp_path / "app")
    root = str(fleet.root / tmp_path.name)
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        bundle={"artifacts": ["wheel"]},
        target={
            "root": root,
            "create_root": True,
            "strategy": "timestamped",
            "hosts": HOSTS,
            "ssh_config": str(fleet.ssh_config),
            "python": "python3",
            "shared": ["run"],
        },
        environment={},
        fleet={"forks": 4, "serial": [1, "100%"]},
        service={"restart": ["{python}", "restart.py", "0.0.0.0", "8000", "gunicorn"], "timeout": 60},
        checks=[{"kind": "import", "modules": ["demo_app.web", "gunicorn"]}],
        health=[
            {
                "kind": "http",
                "name": "version",
                "url": "http://127.0.0.1:8000/version",
                "contains": "demo-app {version} ",
                "retries": 20,
                "interval": 0.25,
                "timeout": 3,
            }
        ],
    )
    bundled = run_release("--config", cfg, "bundle")
    assert bundled.returncode == 0, bundled.stderr[-3000:]
    dep = run_release("--config", cfg, "deploy", "--no-plan")
    assert dep.returncode == 0, dep.stdout + dep.stderr[-3000:]
    first = run_release("--config", cfg, "promote")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    for h in HOSTS:
        assert served(fleet, h).startswith("demo-app 0.6.0 pid "), (h, served(fleet, h))
    before = {h: os.readlink(fleet.hosts[int(h[1:])].folder / tmp_path.name / "current") for h in HOSTS}

    time.sleep(1.05)
    web = (repo.path / "demo_app" / "web.py").read_text()
    add_web(repo, version="0.7.0", message="0.7.0")
    # 0.7.0 answers 500 on a host that holds run/BREAK (a host-specific fault: h2's only)
    repo.write("demo_app/web.py", web.replace("BROKEN = False", "BROKEN = os.path.exists('run/BREAK')"))
    repo.commit("0.7.0 breaks where run/BREAK is")
    (fleet.hosts[2].folder / tmp_path.name / "shared" / "run" / "BREAK").write_text("")
    assert run_release("--config", cfg, "bundle").returncode == 0
    dep = run_release("--config", cfg, "deploy", "--no-plan")
    assert dep.returncode == 0, dep.stderr[-3000:]
    cp = run_release("--config", cfg, "--json", "promote")
    assert cp.returncode == 1, cp.stdout + cp.stderr[-3000:]
    out = json.loads(cp.stdout)
    assert set(out["reverted"]) == {"h0", "h1", "h3"}, out  # h2 went back by itself
    assert all("(healthy)" in v for v in out["reverted"].values()), out["reverted"]
    assert re.search(r"wave 2 failed on h2", cp.stderr), cp.stderr[-2000:]
    for h in HOSTS:
        assert os.readlink(fleet.hosts[int(h[1:])].folder / tmp_path.name / "current") == before[h], h
        assert served(fleet, h).startswith("demo-app 0.6.0 pid "), (h, served(fleet, h))
    events = [json.loads(line)["event"] for line in (fleet.hosts[2].folder / tmp_path.name / ".release-journal").read_text().splitlines()]
    assert events[-6:] == ["promoted", "restart ok", "health failed", "reverted", "restart ok", "health passed"], events

    # a good release goes everywhere; `rollback --to-previous` restarts every host on 0.6.0
    time.sleep(1.05)
    repo.write("demo_app/web.py", web)
    add_web(repo, version="0.8.0", message="0.8.0")
    ship_and_promote(cfg, fleet, "0.8.0")
    back = run_release("--config", cfg, "rollback", "--to-previous")
    assert back.returncode == 0, back.stdout + back.stderr[-3000:]
    for h in HOSTS:
        assert os.readlink(fleet.hosts[int(h[1:])].folder / tmp_path.name / "current") == before[h], h
        assert served(fleet, h).startswith("demo-app 0.6.0 "), (h, served(fleet, h))

    # prune on the fleet: each host's journal decides; 0.7.0 failed its health on h2 only, so
    # only there it is kept (the newest failed one, for diagnosis)
    def count(h: str) -> int:
        return sum(1 for p in (fleet.hosts[int(h[1:])].folder / tmp_path.name / "releases").iterdir() if not p.name.startswith(".release-"))

    dry = run_release("--config", cfg, "--json", "prune", "--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr[-2000:]
    plan = json.loads(dry.stdout)["hosts"]
    assert [len(plan[h]["would_remove"]) for h in HOSTS] == [1, 1, 0, 1], plan
    assert [count(h) for h in HOSTS] == [3, 3, 3, 3]
    done = run_release("--config", cfg, "prune", "--keep", "1")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert [count(h) for h in HOSTS] == [2, 2, 3, 2]
    for h in HOSTS:
        assert served(fleet, h).startswith("demo-app 0.6.0 "), "the current release was never touched"
        assert (fleet.hosts[int(h[1:])].folder / tmp_path.name / "shared" / "run").is_dir(), "the shared folder survives prune"

    # a fleet rollback of the promoted release: every host's `current` goes back to 0.6.0,
    # and each host restarts it and proves it healthy before 0.9.0's files are removed
    time.sleep(1.05)
    add_web(repo, version="0.9.0", message="0.9.0")
    ship_and_promote(cfg, fleet, "0.9.0")
    undo = run_release("--config", cfg, "--json", "rollback")
    assert undo.returncode == 0, undo.stdout + undo.stderr[-3000:]
    per_host = json.loads(undo.stdout)["hosts"]
    for h in HOSTS:
        assert os.readlink(fleet.hosts[int(h[1:])].folder / tmp_path.name / "current") == before[h], h
        assert per_host[h]["service"]["ok"] is True, per_host[h]
        assert served(fleet, h).startswith("demo-app 0.6.0 "), (h, served(fleet, h))
