"""Deploy, rollback, status, verify and promote over both transports (local and real sshd)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from ..support import Repo, bundle, deploy, listing, need, popen_release, run_release, tree_state, write_config


@pytest.fixture
def setup(project: Repo, tmp_path: Path, transport: dict[str, object]):  # type: ignore[no-untyped-def]
    root = tmp_path / "opt" / "incomex" / "dot"
    old = root / "demo-app"  # the v0.4 that runs today
    (old / "pkg").mkdir(parents=True)
    (old / "pkg" / "__init__.py").write_text('__version__ = "0.4.2"\n')
    (old / "run.sh").write_text("#!/bin/sh\n")
    (old / "run.sh").chmod(0o755)
    (root / "notes.txt").write_text("operator notes\n")
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "create_root": False, **transport})
    return cfg, root, old


def test_deploy_and_rollback_round_trip(setup, cli) -> None:  # type: ignore[no-untyped-def]
    cfg, root, old = setup
    before_old = tree_state(old)
    before_listing = listing(root)
    bundle(cfg)
    cp = deploy(cfg)
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    target = Path(res["target"])
    assert target == root / "demo-app-v0.6.0" and target.is_dir()
    manifest = dict(line.split(": ", 1) for line in (target / "DEPLOY-MANIFEST.txt").read_text().splitlines())
    for key in (
        "name",
        "version",
        "head",
        "release_stamp",
        "deploy_id",
        "bundle",
        "bundle_sha256",
        "target",
        "strategy",
        "pre_existed",
        "parent_listing_sha256_before",
        "files",
        "tree_sha256",
        "rollback",
    ):
        assert key in manifest, key
    assert manifest["pre_existed"] == "false" and manifest["deploy_id"] == res["deploy_id"]
    assert manifest["rollback"] == f"rm -rf -- {target}"
    assert (target / "demo_app" / "core.py").read_text() == "def answer():\n    return 42\n"
    assert os.access(target / "bin" / "run.sh", os.X_OK)
    assert tree_state(old) == before_old, "the running version must be untouched"
    assert not [n for n in listing(root) if n.startswith(".release-")], "no lock or staging left behind"

    st = run_release("--config", cfg, "--json", "status")
    assert st.returncode == 0, st.stderr
    releases = json.loads(st.stdout)["releases"]
    assert [r["deploy_id"] for r in releases] == [res["deploy_id"]] and releases[0]["version"] == "0.6.0"

    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 0 and json.loads(v.stdout)["clean"] is True

    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0, rb.stderr
    out = json.loads(rb.stdout)
    assert out["parent_restored"] is True
    assert out["added_check"] == "names", "nothing was added: the walk matched the names the deploy recorded"
    assert out["parent_listing_sha256_after"] == out["parent_listing_sha256_before"] == manifest["parent_listing_sha256_before"]
    assert listing(root) == before_listing
    assert tree_state(old) == before_old
    again = run_release("--config", cfg, "rollback")
    assert again.returncode == 3
    audit = (cfg.parent / ".release" / "audit.log").read_text().splitlines()
    assert [json.loads(x)["op"] for x in audit] == ["deploy", "deploy", "rollback"]


def test_verify_reports_every_drift(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    (target / "demo_app" / "core.py").write_text("tampered\n")
    (target / "tests" / "test_core.py").unlink()
    (target / "extra.py").write_text("x\n")
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 1
    res = json.loads(v.stdout)
    assert res["changed"] == ["demo_app/core.py"]
    assert res["removed"] == ["tests/test_core.py"]
    assert res["added"] == ["extra.py"]


@pytest.mark.parametrize("kind", ["directory", "file", "symlink"])
def test_existing_target_is_refused_and_nothing_changes(setup, kind: str) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    target = root / "demo-app-v0.6.0"
    if kind == "directory":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif kind == "file":
        target.write_text("mine")
    else:
        target.symlink_to(root / "demo-app")
    before = tree_state(root)
    bundle(cfg)
    cp = deploy(cfg)
    assert cp.returncode == 4
    assert str(target) in cp.stderr and "already exists" in cp.stderr
    assert tree_state(root) == before


def test_checksum_mismatch_is_refused_and_leaves_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    path = bundle(cfg)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    before = tree_state(root)
    cp = deploy(cfg)
    assert cp.returncode == 4 and "checksum mismatch" in cp.stderr
    assert tree_state(root) == before


def test_connection_failure_names_the_host(project: Repo, tmp_path: Path) -> None:
    cfgfile = tmp_path / "ssh_config"
    cfgfile.write_text("Host nowhere\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 3\n")
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": "/srv/x", "host": "nowhere", "ssh_config": str(cfgfile)})
    bundle(cfg)
    cp = deploy(cfg)
    assert cp.returncode == 1
    assert "cannot connect to SSH host nowhere" in cp.stderr
    assert "Connection refused" in cp.stderr  # OpenSSH's own reason, from the connection opened ahead


# ----------------------------------------------------------------------------- hostile bundles


def hostile_bundle(out: Path, sha: str, build: str) -> Path:
    """A bundle named like a real one, with a manifest, holding a hostile member."""
    top = f"demo-app-0.6.0-{sha[:7]}-20260101T000000Z"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:

        def add(name: str, data: bytes = b"x", **attrs: object) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
            for k, v in attrs.items():
                setattr(ti, k, v)
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)

        add(top + "/", type=tarfile.DIRTYPE, mode=0o755)
        add(top + "/ok.txt")
        if build == "dotdot":
            add(top + "/../../escaped.txt")
        elif build == "absolute":
            add("/tmp/absolute-escape.txt")
        elif build == "symlink":
            add(top + "/evil", type=tarfile.SYMTYPE, linkname="../../../../etc")
        elif build == "hardlink":
            add(top + "/hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif build == "device":
            add(top + "/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif build == "fifo":
            add(top + "/fifo", type=tarfile.FIFOTYPE)
        elif build == "setuid":
            add(top + "/suid", mode=0o4755)
        elif build == "duplicate":
            add(top + "/ok.txt", b"y")
        elif build == "under-symlink":
            add(top + "/inner", type=tarfile.SYMTYPE, linkname=".")
            add(top + "/inner/ok2.txt")
        elif build == "file-over-folder":  # x/y makes the folder x as it is written; then a file x
            add(top + "/x/y")
            add(top + "/x")
        elif build == "tampered":
            pass
        files = [{"path": "ok.txt", "size": 1, "sha256": hashlib.sha256(b"x" if build != "tampered" else b"z").hexdigest()}]
        manifest = json.dumps({"name": "demo-app", "version": "0.6.0", "commit": sha, "files": files}).encode()
        add(top + "/BUNDLE-MANIFEST.json", manifest)
    path = out / f"{top}.tar.gz"
    out.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    (out / f"{top}.tar.gz.sha256").write_text(f"{hashlib.sha256(buf.getvalue()).hexdigest()}  {path.name}\n")
    return path


@pytest.mark.parametrize(
    "build", ["dotdot", "absolute", "symlink", "hardlink", "device", "fifo", "setuid", "duplicate", "under-symlink", "file-over-folder", "tampered"]
)
def test_hostile_bundles_are_refused_and_leave_nothing(setup, project: Repo, tmp_path: Path, build: str) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    before = tree_state(root)
    path = hostile_bundle(tmp_path / "hostile", project.git("rev-parse", "HEAD"), build)
    cp = deploy(cfg, "--bundle", str(path))
    assert cp.returncode == 4, cp.stderr
    assert "refused" in cp.stderr or "does not match" in cp.stderr
    assert tree_state(root) == before
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute-escape.txt").exists()


# ----------------------------------------------------------------------------- lock


def test_lock_held_by_live_process_refuses_and_stale_lock_needs_flag(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    bundle(cfg)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        lock = {"host": socket.gethostname(), "pid": sleeper.pid, "time": time.time(), "deploy_id": "other-deploy", "op": "deploy"}
        (root / ".release-lock").write_text(json.dumps(lock))
        cp = deploy(cfg, "--break-lock")
        assert cp.returncode == 4 and "locked" in cp.stderr and "other-deploy" in cp.stderr and str(sleeper.pid) in cp.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    cp = deploy(cfg)
    assert cp.returncode == 4 and "stale lock" in cp.stderr and "--break-lock" in cp.stderr
    assert not (root / "demo-app-v0.6.0").exists()
    cp = deploy(cfg, "--break-lock")
    assert cp.returncode == 0, cp.stderr
    assert not (root / ".release-lock").exists()


def test_two_deploys_race_for_the_lock(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The first deploy is held inside the lock at a named point (no race): the second is refused."""
    cfg, root, _ = setup
    bundle(cfg)
    flag = tmp_path / "paused"
    first = popen_release("--config", cfg, "deploy", "--no-plan", env={"RELEASE_TEST_PAUSE_AT": f"deploy:staged@{flag}"})
    end = time.time() + 60
    while not flag.exists() and first.poll() is None and time.time() < end:
        time.sleep(0.01)
    assert flag.exists(), first.stderr.read() if first.stderr else ""
    second = deploy(cfg)
    assert second.returncode == 4, second.stderr
    assert "locked" in second.stderr and "held by deploy" in second.stderr
    flag.unlink()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert not (root / ".release-lock").exists(), "the lock never outlives its command"
    assert len([d for d in root.iterdir() if d.name.startswith("demo-app-v")]) == 1


# ----------------------------------------------------------------------------- killed deploy


def test_deploy_killed_during_unpack_leaves_no_target_and_rerun_cleans_up(setup, project: Repo) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of the agent after it unpacked (its test hook, no timing): no target, a marked
    leftover, a stale lock that --break-lock breaks, and the rerun cleans up."""
    cfg, root, old = setup
    for i in range(200):
        project.write(f"many/d{i % 10:02d}/f{i:05d}.py", f"x = {i}\n")
    project.commit("many files")
    bundle(cfg)
    before_old = tree_state(old)
    killed = run_release("--config", cfg, "deploy", "--no-plan", env={"RELEASE_TEST_KILL_AT": "deploy:extracted"})
    assert killed.returncode == 1 and "outcome unknown" in killed.stderr
    target = root / "demo-app-v0.6.0"
    assert not target.exists(), "a killed deploy leaves no target folder"
    leftovers = list(root.glob(".release-tmp-*"))
    assert leftovers and (leftovers[0] / ".release-partial").is_file() and list((leftovers[0] / "tree" / "many").rglob("*.py"))
    # a folder that merely looks like ours, without the marker, must never be cleaned
    foreign = root / ".release-tmp-notours"
    foreign.mkdir()
    (foreign / "data").write_text("keep")
    cp = deploy(cfg)
    assert cp.returncode == 4 and "stale lock" in cp.stderr
    cp = deploy(cfg, "--break-lock")
    assert cp.returncode == 0, cp.stderr
    assert target.is_dir() and (target / "DEPLOY-MANIFEST.txt").is_file()
    assert not [x for x in root.glob(".release-tmp-*") if x != foreign]
    assert (foreign / "data").read_text() == "keep"
    assert tree_state(old) == before_old
    assert run_release("--config", cfg, "verify").returncode == 0


# ----------------------------------------------------------------------------- rollback refusals


def test_rollback_refuses_a_folder_it_did_not_create(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    # someone replaced the release with their own folder
    import shutil

    shutil.rmtree(target)
    target.mkdir()
    (target / "precious.txt").write_text("not the tool's")
    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 4 and "DEPLOY-MANIFEST" in cp.stderr
    assert (target / "precious.txt").read_text() == "not the tool's"
    # a manifest naming another deploy id is refused too
    (target / "DEPLOY-MANIFEST.txt").write_text("deploy_id: somebody-else\npre_existed: false\n")
    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 4 and "somebody-else" in cp.stderr
    assert (target / "precious.txt").exists()


def test_rollback_does_not_follow_symlinks_out(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (target / "link-out").symlink_to(outside)
    cp = run_release("--config", cfg, "rollback")
    assert cp.returncode == 4 and "link-out" in cp.stderr and "--discard-added" in cp.stderr, "an added entry is never deleted unasked"
    assert (target / "link-out").is_symlink()
    cp = run_release("--config", cfg, "rollback", "--discard-added")
    assert cp.returncode == 0, cp.stderr
    assert not target.exists()
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_tree_deeper_than_pythons_recursion_is_verified_and_rolled_back(setup) -> None:  # type: ignore[no-untyped-def]
    """An app made a folder 1,500 deep inside its release (a 3,000-byte path, well under
    PATH_MAX): verify names it (abridged, not a megabyte of text), rollback refuses it as
    added, then removes it with --discard-added; the parent is as it was. (Every walk is
    iterative: it was a RecursionError traceback.)"""
    cfg, root, _ = setup
    before = listing(root)
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    fd = os.open(str(target), os.O_RDONLY)
    try:
        for _level in range(1500):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    try:
        v = run_release("--config", cfg, "verify")
        assert v.returncode == 1 and "DRIFT" in v.stdout and "Traceback" not in v.stderr, v.stderr[-2000:]
        assert "added:   d/" in v.stdout and "and 1451 more (--json lists them all)" in v.stdout and len(v.stdout) < 60_000
        j = run_release("--config", cfg, "--json", "verify")
        assert len(json.loads(j.stdout)["added"]) == 1501
        r = run_release("--config", cfg, "rollback")
        assert r.returncode == 4 and "1501 entries the deploy did not create" in r.stderr and len(r.stderr) < 5_000, r.stderr[-2000:]
        assert (target / "DEPLOY-MANIFEST.txt").exists()
        r = run_release("--config", cfg, "rollback", "--discard-added")
        assert r.returncode == 0, r.stderr[-2000:]
        assert not target.exists() and listing(root) == before
    finally:
        subprocess.run(["rm", "-rf", "--", str(target)], check=False)  # a failure leaves nothing pytest's recursive clean-up trips on


def test_a_mount_inside_a_release_is_never_deleted(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A volume bind-mounted into a release (a data folder an operator mounted there) is
    another filesystem's: rollback refuses, --discard-added included, naming the mount
    point, and nothing is removed; once unmounted, the release goes and the volume's data
    stays."""
    cfg, root, _ = setup
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data.db").write_text("precious")
    (target / "data").mkdir()
    cp = subprocess.run(["mount", "--bind", str(volume), str(target / "data")], capture_output=True, text=True)
    need(cp.returncode == 0, f"cannot bind-mount (needs root): {cp.stderr.strip()}")
    try:
        for extra in ([], ["--discard-added"]):
            r = run_release("--config", cfg, "rollback", *extra)
            assert r.returncode == 4 and f"{target / 'data'} inside it is a mount point" in r.stderr and "unmount" in r.stderr, r.stderr
            assert (volume / "data.db").read_text() == "precious" and (target / "DEPLOY-MANIFEST.txt").exists()
    finally:
        subprocess.run(["umount", str(target / "data")], check=False)
    r = run_release("--config", cfg, "rollback", "--discard-added")
    assert r.returncode == 0, r.stderr
    assert not target.exists() and (volume / "data.db").read_text() == "precious"


def test_a_name_that_is_not_utf8_is_named_and_rolled_back(setup) -> None:  # type: ignore[no-untyped-def]
    """An app wrote a file whose name is not UTF-8 into its release: verify names it, rollback
    refuses it as added, then removes it with --discard-added (it was a UnicodeEncodeError
    traceback: the names digest encoded strictly)."""
    cfg, root, _ = setup
    before = listing(root)
    bundle(cfg)
    target = Path(json.loads(deploy(cfg).stdout)["target"])
    with open(os.fsencode(str(target)) + b"/bad\xff\xfename", "w") as f:
        f.write("x")
    v = run_release("--config", cfg, "verify")
    assert v.returncode == 1 and "DRIFT" in v.stdout and "Traceback" not in v.stderr, v.stderr[-2000:]
    assert "added:   bad\\xff\\xfename" in v.stdout, "the bytes shown as escapes: never raw to a terminal"
    r = run_release("--config", cfg, "rollback")
    assert r.returncode == 4 and "1 entries the deploy did not create: bad\\xff\\xfename" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = run_release("--config", cfg, "rollback", "--discard-added")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not target.exists() and listing(root) == before


# ----------------------------------------------------------------------------- timestamped + promote


def test_timestamped_strategy_promote_and_rollback_restore_pointer(setup, project: Repo) -> None:  # type: ignore[no-untyped-def]
    cfg, root, old = setup
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    bundle(cfg)
    first = json.loads(deploy(cfg).stdout)
    assert Path(first["target"]).parent == root / "releases"
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    assert os.readlink(root / "current") == f"releases/{Path(first['target']).name}"
    time.sleep(1.1)  # a new stamp
    second = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    assert os.readlink(root / "current") == f"releases/{Path(second['target']).name}"
    st = json.loads(run_release("--config", cfg, "--json", "status").stdout)
    assert [r["promoted"] for r in st["releases"]] == [False, True]
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0, rb.stderr
    assert os.readlink(root / "current") == f"releases/{Path(first['target']).name}"
    assert not Path(second["target"]).exists()
    rb = run_release("--config", cfg, "--json", "rollback", "--deploy-id", first["deploy_id"])
    assert rb.returncode == 0, rb.stderr
    assert not os.path.lexists(root / "current")
    assert not (root / "releases").exists(), "the releases folder the first deploy created is gone"
    assert listing(root) == ["demo-app", "notes.txt"]


def test_promoting_the_current_release_again_keeps_its_previous_and_rollback_restores_it(setup, project: Repo) -> None:  # type: ignore[no-untyped-def]
    """Promote A, deploy and promote B, promote B again: the second promote of B is a no-op
    that keeps A as B's previous, so rolling B back points `current` at A (it once deleted
    `current`, with exit 0 and "root restored"). The host's own record of the pointer wins
    over a controller record that lost it."""
    cfg, root, _ = setup
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    bundle(cfg)
    first = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    time.sleep(1.1)
    second = json.loads(deploy(cfg).stdout)
    assert run_release("--config", cfg, "promote", "--force").returncode == 0
    again = run_release("--config", cfg, "--json", "promote", "--force")
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] is True, again.stdout
    # the controller's record of B's promotion is lost (a kill before it was saved)
    record_path = next(p for p in (cfg.parent / ".release").rglob("*.json") if second["deploy_id"] in p.name and "fleet" not in str(p))
    record = json.loads(record_path.read_text())
    record.pop("promotion", None)
    record_path.write_text(json.dumps(record))
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert os.readlink(root / "current") == f"releases/{Path(first['target']).name}", "current is back on A"
    assert json.loads(rb.stdout)["pointer_restored"] is True
    assert not [n for n in os.listdir(root) if n.startswith(".release-promoted-" + second["deploy_id"])]


def test_promote_refused_for_side_by_side(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, _, _ = setup
    bundle(cfg)
    deploy(cfg)
    cp = run_release("--config", cfg, "promote", "--force")
    assert cp.returncode == 2 and "timestamped" in cp.stderr


def test_failed_timestamped_deploy_leaves_no_releases_folder(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, root, _ = setup
    cfg.write_text(cfg.read_text().replace("[target]", '[target]\nstrategy = "timestamped"'))
    path = bundle(cfg)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    before = tree_state(root)
    cp = deploy(cfg)
    assert cp.returncode == 4 and "checksum mismatch" in cp.stderr
    assert tree_state(root) == before and not (root / "releases").exists()


def test_rollback_names_check_bytecode_aside_and_anything_else_added_is_caught(setup) -> None:  # type: ignore[no-untyped-def]
    """Rollback compares a walk of the release with the names the deploy recorded: bytecode
    caches written since do not count (fast path), any other entry added since sends it to
    the manifests, which name it, and nothing is removed."""
    cfg, root, _ = setup
    bundle(cfg)
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    record = json.loads(next((cfg.parent / ".release" / "deploys").glob("*.json")).read_text())
    assert len(record["names_sha256"]) == 64
    (target / "demo_app" / "__pycache__").mkdir()
    (target / "demo_app" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"bytecode")
    (target / "demo_app" / "later").mkdir()
    refused = run_release("--config", cfg, "rollback")
    assert refused.returncode == 4 and "demo_app/later/" in refused.stderr, refused.stderr
    assert target.is_dir() and (target / "demo_app" / "__pycache__").is_dir(), "nothing was removed"
    (target / "demo_app" / "later").rmdir()
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0, rb.stderr
    assert json.loads(rb.stdout)["added_check"] == "names" and not target.exists()


def test_the_agent_starts_light_for_deploy_status_and_rollback(project: Repo, tmp_path: Path) -> None:
    """Every host pays the agent's start: a deploy, status and rollback import none of the
    heavy stdlib modules (json's package with re and enum, typing, signal, shlex, importlib).
    Seen with ``-X importtime`` through an interpreter shim, the agent run as its own process."""
    shim = tmp_path / "python-importtime"
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(tmp_path / "srv"), "python": str(shim)})
    bundle(cfg)
    heavy = {"json", "json.decoder", "re", "enum", "typing", "signal", "shlex", "importlib", "importlib.machinery"}
    for stage in ("deploy", "status", "rollback"):
        log = tmp_path / f"{stage}.log"
        shim.write_text(f'#!/bin/sh\nexec {os.path.realpath(sys.executable)} -X importtime "$@" 2>>{log}\n')
        shim.chmod(0o755)
        cp = run_release("--config", cfg, "--json", stage) if stage != "deploy" else deploy(cfg)
        assert cp.returncode == 0, cp.stderr
        imported = {line.split("|")[-1].strip() for line in log.read_text().splitlines() if line.startswith("import time:")}
        assert {"release_agent.ops", f"release_agent.{stage}_ops", "_json"} <= imported, " ".join(sorted(imported))  # each op imports its own module
        assert imported & heavy == set(), stage
        if stage != "rollback":  # rollback deletes with threads: threading brings functools and collections
            assert imported & {"threading", "functools", "collections"} == set(), stage


def test_lock_wait_waits_for_a_live_holder_and_no_longer(setup) -> None:  # type: ignore[no-untyped-def]
    """`--lock-wait SECONDS` (#23 item 7): a live holder is waited for instead of refused at
    once; when it lets go the deploy proceeds; past the wait it is refused as before."""
    import socket
    import threading

    cfg, root, _ = setup
    bundle(cfg)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock_file = root / ".release-lock"
    try:
        lock = {"host": socket.gethostname(), "pid": sleeper.pid, "time": time.time(), "deploy_id": "other-deploy", "op": "deploy"}
        lock_file.write_text(json.dumps(lock))
        cp = deploy(cfg)
        assert cp.returncode == 4 and "--lock-wait" in cp.stderr, cp.stderr
        t0 = time.monotonic()
        cp = deploy(cfg, "--lock-wait", "1")
        assert cp.returncode == 4 and "locked" in cp.stderr and time.monotonic() - t0 >= 1.0, cp.stderr
        release = threading.Timer(1.5, lock_file.unlink)
        release.start()
        t0 = time.monotonic()
        cp = deploy(cfg, "--lock-wait", "30")
        release.join()
        assert cp.returncode == 0, cp.stderr
        assert 1.4 <= time.monotonic() - t0 < 30, "it waited for the holder, and no longer"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_release("--config", cfg, "rollback", "--lock-wait", "abc").returncode == 2
