"""Restart and health checks (#23 items 2, 3, 5): a real HTTP application (the standard
library's WSGI server, started by the app's own restart script through a pidfile in a shared
folder) is restarted after `current` switches and probed from the target; a release whose
endpoint answers 500 goes back by itself, the old release serving again; a restart that
hangs and a URL that never answers are bounded and reverted; `rollback --to-previous`
restarts and health-checks the release it goes back to. Over both transports."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..servers import free_port
from ..support import Repo, run_release, write_config
from ..webserve import add_web, stop


def fetch(port: int) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/version", timeout=5) as resp:
        return str(resp.read().decode())


def journal(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / ".release-journal").read_text().splitlines() if line.strip()]


@pytest.fixture
def web(project: Repo, tmp_path: Path) -> Iterator[tuple[Repo, Path, int]]:
    """The demo app with its web endpoint, a timestamped root with a shared run/ folder, a
    free port; the server the restarts started is stopped at the end."""
    add_web(project, version="0.6.0")
    root = tmp_path / "srv"
    (root / "shared" / "run").mkdir(parents=True)
    port = free_port()
    try:
        yield project, root, port
    finally:
        stop(root / "shared" / "run" / "app.pid")


def web_config(tmp_path: Path, repo: Repo, root: Path, port: int, transport: dict[str, object], **overrides: Any) -> Path:
    health = overrides.pop(
        "health",
        [
            {
                "kind": "http",
                "name": "version",
                "url": f"http://127.0.0.1:{port}/version",
                "contains": "demo-app {version} ",
                "retries": 10,
                "interval": 0.2,
                "timeout": 2,
            },
            {"kind": "tcp", "address": f"127.0.0.1:{port}", "retries": 0, "timeout": 2},
            {"kind": "command", "name": "imports", "argv": ["{python}", "-c", "import demo_app.web, sys; print(sys.argv[1])", "{version}"], "timeout": 20},
        ],
    )
    return write_config(
        tmp_path / "release.toml",
        repo.path,
        target={"root": str(root), "strategy": "timestamped", "shared": ["run"], **transport},
        service=overrides.pop("service", {"restart": ["{python}", "restart.py", "127.0.0.1", str(port)], "timeout": 30}),
        checks=[{"kind": "import", "modules": ["demo_app.web"]}],
        health=health,
    )


def release(cfg: Path) -> tuple[str, Any]:
    """bundle, deploy and smoke; then promote: the deploy id and the promote's answer."""
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    deploy_id = json.loads(cp.stdout)["deploy_id"]
    sm = run_release("--config", cfg, "smoke")
    assert sm.returncode == 0, sm.stdout + sm.stderr
    return deploy_id, run_release("--config", cfg, "promote")


def two_releases(cfg: Path, repo: Repo, root: Path) -> tuple[str, str]:
    """0.6.0 promoted, then 0.7.0 promoted over it: `current`'s link to 0.6.0 and 0.7.0's deploy id."""
    _first, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    first_link = os.readlink(root / "current")
    time.sleep(1.05)  # a release folder is named to the second
    add_web(repo, version="0.7.0", message="0.7.0")
    second, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return first_link, second


def test_a_broken_release_goes_back_by_itself_and_the_old_one_serves_again(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    first, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "restarted releases/" in cp.stdout and "healthy" in cp.stdout and "health version (http): passed" in cp.stdout
    served = fetch(port)
    assert served.startswith("demo-app 0.6.0 pid ")
    server = int(served.rsplit(" ", 1)[1])
    ignored = next(line for line in Path(f"/proc/{server}/status").read_text().splitlines() if line.startswith("SigIgn:"))
    assert not int(ignored.split()[1], 16) & 1, "the application the restart started hears SIGHUP (the agent's own ignore is not inherited)"
    first_link = os.readlink(root / "current")

    time.sleep(1.05)  # a release folder is named to the second
    add_web(repo, version="0.7.0", broken=True, message="0.7.0 answers 500")
    second, cp = release(cfg)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "REVERTED" in cp.stdout and "health check version failed" in cp.stderr and "status 500, expected 200" in cp.stdout, cp.stdout + cp.stderr
    assert "restarted again" in cp.stdout and f"current -> {first_link}" in cp.stdout
    assert os.readlink(root / "current") == first_link, "current is back at the release it replaced"
    again = fetch(port)
    assert again.startswith("demo-app 0.6.0 pid ") and again != served, "the old release serves again, restarted (another process)"
    events = [(e["event"], e["deploy_id"], e.get("phase", "")) for e in journal(root)]
    assert events[-6:] == [
        ("promoted", second, ""),
        ("restart ok", second, ""),
        ("health failed", second, ""),
        ("reverted", second, ""),
        ("restart ok", first, "revert"),
        ("health passed", first, "revert"),
    ]
    reverted = next(e for e in journal(root) if e["event"] == "reverted")
    assert reverted["previous"] is None and reverted["reason"] == "health failed", "the failed release is never the previous one"
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    assert st["previous"] is None and {r["deploy_id"]: r["journal"] for r in st["releases"]}[second] == "reverted"

    # a good release promotes; --to-previous goes back to 0.6.0, restarting it and proving it healthy
    time.sleep(1.05)
    add_web(repo, version="0.8.0", message="0.8.0")
    third, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert fetch(port).startswith("demo-app 0.8.0 ")
    back = run_release("--config", cfg, "rollback", "--to-previous")
    assert back.returncode == 0, back.stdout + back.stderr
    assert os.readlink(root / "current") == first_link and "healthy" in back.stdout
    assert fetch(port).startswith("demo-app 0.6.0 "), "the release gone back to was restarted"
    assert [e["event"] for e in journal(root)][-3:] == ["reverted", "restart ok", "health passed"]
    assert third != first


def test_a_restart_that_hangs_is_killed_and_the_promote_reverted(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    repo, root, port = web
    hang = ["{python}", "-c", "import os, time; open('run/hang.pid', 'w').write(str(os.getpid())); time.sleep(60)"]
    cfg = web_config(tmp_path, repo, root, port, transport, service={"restart": hang, "timeout": 1})
    t0 = time.monotonic()
    _, cp = release(cfg)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "the restart timed out" in cp.stderr and "TIMED OUT (killed)" in cp.stdout, cp.stdout + cp.stderr
    assert not (root / "current").exists() and not (root / "current").is_symlink(), "no release before it: no pointer at all"
    pid = int((root / "shared" / "run" / "hang.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed with its process group
    assert time.monotonic() - t0 < 40
    assert [e["event"] for e in journal(root)][-3:] == ["promoted", "restart failed", "reverted"]
    assert journal(root)[-2]["status"] == "timeout"


def test_a_url_that_never_answers_fails_in_bounded_time(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    repo, root, _ = web
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does), never answers
    port = silent.getsockname()[1]
    try:
        cfg = web_config(
            tmp_path,
            repo,
            root,
            port,
            transport,
            service={},
            health=[{"kind": "http", "url": f"http://127.0.0.1:{port}/", "retries": 1, "interval": 0.1, "timeout": 0.5}],
        )
        t0 = time.monotonic()
        _, cp = release(cfg)
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "after 2 attempt(s)" in cp.stdout and ("no complete answer within 0.5s" in cp.stdout or "timed out" in cp.stdout), cp.stdout
    assert not (root / "current").is_symlink()
    assert took < 60
    assert [e["event"] for e in journal(root)][-3:] == ["promoted", "health failed", "reverted"]


def test_a_restart_command_that_does_not_exist_is_a_failed_restart(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport, service={"restart": ["no-such-restart-command", "now"], "timeout": 5})
    _, cp = release(cfg)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "cannot run no-such-restart-command" in cp.stdout and "the restart failed" in cp.stderr, cp.stdout + cp.stderr
    assert not (root / "current").is_symlink()


def test_a_version_check_is_never_judged_without_the_version(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    """A release whose DEPLOY-MANIFEST no longer names a version (an app or a hand edited it):
    a check with ``{version}`` would degrade to matching any release (an empty ``contains``
    is in every answer), so it fails, named, and the promote goes back."""
    repo, root, port = web
    check = {
        "kind": "http",
        "name": "version",
        "url": f"http://127.0.0.1:{port}/version",
        "contains": "{version}",
        "retries": 10,
        "interval": 0.2,
        "timeout": 2,
    }
    cfg = web_config(tmp_path, repo, root, port, transport, health=[check])
    _first, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    first_link = os.readlink(root / "current")
    time.sleep(1.05)  # a release folder is named to the second
    add_web(repo, version="0.7.0", message="0.7.0")
    assert run_release("--config", cfg, "bundle").returncode == 0
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    assert run_release("--config", cfg, "smoke").returncode == 0
    manifest = target / "DEPLOY-MANIFEST.txt"
    text = manifest.read_text()
    assert "version: 0.7.0\n" in text
    manifest.write_text(text.replace("version: 0.7.0\n", ""))
    cp = run_release("--config", cfg, "promote", "--force")
    assert cp.returncode == 1 and "REVERTED" in cp.stdout, cp.stdout + cp.stderr
    assert "a check with {version} cannot be judged" in cp.stdout, cp.stdout
    assert os.readlink(root / "current") == first_link
    assert fetch(port).startswith("demo-app 0.6.0 "), "the old release serves again"


def test_rolling_back_the_current_release_restarts_the_one_current_goes_back_to(
    web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]
) -> None:
    """`release rollback` of the release `current` points at: `current` goes back to the release
    it replaced, the application is restarted there and health-checked before the files it
    ran from are removed (it served 0.7.0 from a folder that no longer exists), and the
    journal's previous follows the pointer: a later --to-previous never steps back to the
    release that is current."""
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    first, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    first_link = os.readlink(root / "current")
    time.sleep(1.05)  # a release folder is named to the second
    add_web(repo, version="0.7.0", message="0.7.0")
    second, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert fetch(port).startswith("demo-app 0.7.0 ")
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    assert st["previous"] == first_link

    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"pointer: restored to {first_link}" in cp.stdout and f"restarted {first_link}: healthy" in cp.stdout, cp.stdout
    assert os.readlink(root / "current") == first_link
    assert fetch(port).startswith("demo-app 0.6.0 "), "the release gone back to serves: it was restarted"
    events = [(e["event"], e["deploy_id"], e.get("phase", "")) for e in journal(root)]
    assert events[-4:] == [("reverted", second, ""), ("restart ok", first, "rollback"), ("health passed", first, "rollback"), ("rolled back", second, "")]
    assert [e for e in journal(root) if e["event"] == "reverted"][-1]["reason"] == "rollback"
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    assert st["previous"] is None, "the previous release is the one of before 0.7.0's promotion: none"
    back = run_release("--config", cfg, "rollback", "--to-previous")
    assert back.returncode == 3 and "names no previous release" in back.stderr, back.stdout + back.stderr
    assert os.readlink(root / "current") == first_link


def test_a_rollback_whose_release_gone_back_to_does_not_serve_fails(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    """The release `current` goes back to fails its health check (the operator's config now
    asks for an answer it never gives): the rollback still removes what it was asked to
    remove, and says, exit 1, that the release now current is not healthy."""
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    first_link, second = two_releases(cfg, repo, root)
    never = {
        "kind": "http",
        "name": "never",
        "url": f"http://127.0.0.1:{port}/version",
        "contains": "no such answer",
        "retries": 1,
        "interval": 0.1,
        "timeout": 2,
    }
    web_config(tmp_path, repo, root, port, transport, health=[never])
    cp = run_release("--config", cfg, "rollback", "--deploy-id", second)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert f"restarted {first_link}: NOT healthy" in cp.stdout and "the release `current` went back to is not healthy" in cp.stderr, cp.stdout + cp.stderr
    assert os.readlink(root / "current") == first_link
    assert sorted(p.name for p in (root / "releases").iterdir() if not p.name.startswith(".")) == [first_link.split("/")[-1]], (
        "the release is removed all the same"
    )
    assert [e["event"] for e in journal(root)][-3:] == ["restart ok", "health failed", "rolled back"]


def test_a_rollback_whose_release_is_written_into_while_the_app_restarts_removes_nothing(
    web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]
) -> None:
    """The release being rolled back gets a new file while the application restarts on the one
    `current` went back to (its old process logging on its way out): the names are listed
    again after the restart, and a change means nothing is removed (exit 4, naming it), with
    `current` left where the restart put it; a rollback with --discard-added then finishes."""
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    first_link, second = two_releases(cfg, repo, root)
    code = (
        "import glob, runpy, sys; [open(p + '/late.log', 'w').close() for p in glob.glob('../*-0.7.0-*')]; "
        f"sys.argv = ['restart.py', '127.0.0.1', '{port}']; runpy.run_path('restart.py')"
    )
    late = ["{python}", "-c", code]
    web_config(tmp_path, repo, root, port, transport, service={"restart": late, "timeout": 30})
    cp = run_release("--config", cfg, "rollback", "--deploy-id", second)
    assert cp.returncode == 4 and "entries were added to it or removed while the application restarted" in cp.stderr, cp.stdout + cp.stderr
    assert os.readlink(root / "current") == first_link and fetch(port).startswith("demo-app 0.6.0 ")
    kept = [p for p in (root / "releases").iterdir() if "-0.7.0-" in p.name]
    assert len(kept) == 1 and (kept[0] / "late.log").exists(), "nothing was removed"
    cp = run_release("--config", cfg, "rollback", "--deploy-id", second, "--discard-added")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not kept[0].exists() and os.readlink(root / "current") == first_link


def test_rolling_back_the_only_release_says_nothing_was_restarted(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    """The release `current` points at has no release before it: `current` goes with it,
    nothing is restarted, and the rollback says the application may still run what it removed."""
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    _first, cp = release(cfg)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "nothing was restarted, and the application may still run the removed release" in cp.stdout, cp.stdout
    assert not (root / "current").is_symlink()
    assert [e["event"] for e in journal(root)][-2:] == ["reverted", "rolled back"]


def test_a_rollback_killed_after_the_restart_is_finished_by_the_next(web: tuple[Repo, Path, int], tmp_path: Path, transport: dict[str, object]) -> None:
    """The agent is killed (SIGKILL) once the app restarted on the release `current` went
    back to, before anything was removed: the old release is still whole, `current` is where
    the restart put it, and the next rollback (breaking the dead agent's lock) removes the release without restarting again."""
    repo, root, port = web
    cfg = web_config(tmp_path, repo, root, port, transport)
    first_link, second = two_releases(cfg, repo, root)
    killed = run_release("--config", cfg, "rollback", env={**os.environ, "RELEASE_TEST_KILL_AT": "rollback:restarted"})
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert os.readlink(root / "current") == first_link and fetch(port).startswith("demo-app 0.6.0 ")
    assert [p for p in (root / "releases").iterdir() if "-0.7.0-" in p.name], "nothing was removed before the kill"
    restarts = [e for e in journal(root) if e["event"] == "restart ok"]
    again = run_release("--config", cfg, "rollback", "--deploy-id", second, "--break-lock")  # the killed agent's lock: stale
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [p for p in (root / "releases").iterdir() if "-0.7.0-" in p.name]
    assert os.readlink(root / "current") == first_link and fetch(port).startswith("demo-app 0.6.0 ")
    assert [e for e in journal(root) if e["event"] == "restart ok"] == restarts, "current did not move again: no second restart"
